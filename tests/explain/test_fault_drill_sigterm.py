"""A SIGTERM while a fault is in place heals it before the drill stops (haven.drill.faults_run): a `kill`
or a CI job's time limit must not leave a SIGSTOPped service or a drill's iptables rule behind. Run in a
child process (the signal is real), with a fault whose injection and heal write marks, a lab whose proof
always passes and a canary round that never ends (the fault stays in place until the signal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from haven.drill.faults import Fault
    from haven.drill.faults_run import FaultRun, RunSettings
    from haven.store import Store

    marks = Path(sys.argv[1])
    slow_inject = sys.argv[2] == "slow"

    class Lab:
        flavor, image_id, clouds_yaml = "tiny", "image-1", "/nonexistent"
        def whole(self): return []

    def inject(lab):
        (marks / "injecting").touch()
        if slow_inject:
            time.sleep(2.0)  # a SIGTERM comes while the injection is still running in its thread
        (marks / "injected").touch()
        return lambda: (marks / "healed").touch()

    class Run(FaultRun):
        async def prove_whole(self): return []
        async def round(self):
            await asyncio.sleep(3600)  # the fault stays in place until the signal

    run = Run(Lab(), Store.open("sqlite://"), RunSettings(), lambda line: print(line, flush=True))
    asyncio.run(run.inject(Fault("test-fault", "hung", "keystone", "a test fault", inject, 0.0)))
    """
)


def _run(tmp_path: Path, slow: bool) -> tuple[int, str]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), "slow" if slow else "fast"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "injecting").exists():
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()[0]
            time.sleep(0.05)
        if not slow:
            time.sleep(0.5)  # in the round now
        os.kill(child.pid, signal.SIGTERM)
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, out


def test_a_sigterm_while_the_fault_is_in_place_heals_it_then_stops_with_143(tmp_path: Path) -> None:
    code, out = _run(tmp_path, slow=False)
    assert (tmp_path / "healed").exists(), out
    assert code == 143, out
    assert "SIGTERM: healing the fault in place" in out and "Traceback" not in out


def test_a_sigterm_during_the_injection_waits_for_it_and_heals_what_it_did(tmp_path: Path) -> None:
    code, out = _run(tmp_path, slow=True)
    assert (tmp_path / "injected").exists() and (tmp_path / "healed").exists(), out
    assert code == 143, out
