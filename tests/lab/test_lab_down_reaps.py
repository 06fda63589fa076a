"""An in-process ``lab.down`` reaps every child it started for that lab, also one a fault drill killed
and replaced (its record names the new process): left un-waited, it stayed a zombie and Popen warned
"subprocess N is still running" when collected (at the test session's exit: CI's log). No lab runs:
``sleep`` processes stand in for the services, judged by their exit status having been read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from haven.lab import lab
from haven.lab.process import LabProcess
from haven.lab.state import LabState, record

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_down_reaps_a_child_killed_and_replaced_by_a_fault(tmp_path: Path) -> None:
    killed = LabProcess("keystone", SLEEP, tmp_path / "keystone" / "keystone.log").start()
    other = LabProcess("keystone", SLEEP, tmp_path.parent / f"{tmp_path.name}-other.log").start()
    replacement = subprocess.Popen(SLEEP, start_new_session=True)  # the heal's new Keystone
    assert killed.process is not None and other.process is not None
    lab._CHILDREN.extend([killed, other])
    try:
        os.killpg(killed.process.pid, signal.SIGKILL)  # the fault
        time.sleep(0.2)
        state = LabState(folder=str(tmp_path), computes=[], urls={})
        state.processes.append(record("keystone", replacement.pid, killed.log))  # FaultLab.restarted
        state.save()
        assert lab.down(tmp_path) == ["keystone"]
        assert killed.process.returncode == -signal.SIGKILL and killed not in lab._CHILDREN
        assert replacement.wait(10) is not None
        assert other.running and other in lab._CHILDREN  # another lab's child is left alone
    finally:
        for process in (killed, other):
            process.stop(grace_s=1)
            if process in lab._CHILDREN:
                lab._CHILDREN.remove(process)
        replacement.kill()
        replacement.wait()
