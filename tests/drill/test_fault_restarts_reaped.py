"""What a fault drill starts again is held while it runs and reaped once it has ended
(haven.drill.faults_process.keep_started): a crash loop's killed starts and the services `haven lab
down` stopped no longer stay zombies whose Popen warns "subprocess N is still running" at exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from haven.drill import faults_process
from haven.drill.faults_process import keep_started, reap_ended

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_an_ended_start_is_reaped_and_a_running_one_kept() -> None:
    killed = subprocess.Popen(SLEEP, start_new_session=True)
    running = subprocess.Popen(SLEEP, start_new_session=True)
    try:
        keep_started(killed)
        os.killpg(killed.pid, signal.SIGKILL)  # a crash loop's kill, or `haven lab down`
        time.sleep(0.2)
        keep_started(running)  # the next start reaps what ended
        assert killed.returncode == -signal.SIGKILL and killed not in faults_process._STARTED
        assert running in faults_process._STARTED and running.returncode is None
        running.kill()
        time.sleep(0.2)
        reap_ended()  # as at exit
        assert running.returncode == -signal.SIGKILL and running not in faults_process._STARTED
    finally:
        for process in (killed, running):
            process.kill()
            process.wait()
