"""A SIGTERM while a fault is in place heals it before the drill stops (haven.drill.faults_run): a `kill`
or a CI job's time limit must not leave a SIGSTOPped service or a drill's iptables rule behind. Run in a
child process (the signal is real), with a fault whose injection and heal write marks, a lab whose proof
always passes and a canary round that either never ends (the fault stays in place until the signal)
or ends at once (on to the heal and the proof)."""

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
    inject_s = {"fast": 0.0, "slow": 2.0, "hang": 3600.0}[sys.argv[2]]
    heal_s = float(sys.argv[3])
    hold = sys.argv[4] == "hold"  # the round holds the fault in place until the signal
    proofs = []

    class Lab:
        flavor, image_id, clouds_yaml = "tiny", "image-1", "/nonexistent"
        def whole(self): return []

    def inject(lab):
        (marks / "injecting").touch()
        time.sleep(inject_s)  # a SIGTERM may come while the injection is still running in its thread
        (marks / "injected").touch()

        def heal():
            (marks / "healing").touch()
            time.sleep(max(heal_s, 0.0))
            if heal_s < 0:
                raise RuntimeError("the rule could not be deleted")
            (marks / "healed").touch()

        return heal

    class Run(FaultRun):
        async def prove_whole(self):
            proofs.append(1)
            if len(proofs) > 1:  # the proof after the heal
                (marks / "proving").touch()
                await asyncio.sleep(20)
            return []
        async def round(self):
            if hold:
                await asyncio.sleep(3600)
            raise TimeoutError  # a round that ended with nothing found: on to the heal

    run = Run(Lab(), Store.open("sqlite://"), RunSettings(), lambda line: print(line, flush=True))
    asyncio.run(run.inject(Fault("test-fault", "hung", "keystone", "a test fault", inject, 0.0)))
    """
)


def _run(tmp_path: Path, inject: str = "fast", heal_s: float = 0.0, when: str = "injecting",
         signals: int = 1) -> tuple[int, str, float]:  # fmt: skip
    """The child's exit code, output, and seconds from the (last) SIGTERM to its end."""
    hold = "hold" if when == "injecting" else "go"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), inject, str(heal_s), hold],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / when).exists():
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()[0]
            time.sleep(0.05)
        if inject == "fast" and when == "injecting":
            time.sleep(0.5)  # in the round now
        for _ in range(signals):
            os.kill(child.pid, signal.SIGTERM)
            time.sleep(0.3)
        sent = time.monotonic()
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, out, time.monotonic() - sent


def test_a_sigterm_while_the_fault_is_in_place_heals_it_then_stops_with_143(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path)
    assert (tmp_path / "healed").exists(), out
    assert code == 143, out
    assert "SIGTERM: healing the fault in place" in out and "Traceback" not in out
    assert not (tmp_path / "proving").exists(), "the lab's proof is skipped after a SIGTERM"


def test_a_sigterm_during_the_injection_waits_for_it_and_heals_what_it_did(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, inject="slow")
    assert (tmp_path / "injected").exists() and (tmp_path / "healed").exists(), out
    assert code == 143, out


def test_a_sigterm_during_the_heal_lets_it_end_and_skips_the_proof(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, heal_s=2.0, when="healing")
    assert (tmp_path / "healed").exists(), out
    assert not (tmp_path / "proving").exists(), out
    assert code == 143, out


def test_a_sigterm_during_the_proof_stops_it(tmp_path: Path) -> None:
    code, out, after_s = _run(tmp_path, when="proving")
    assert code == 143 and after_s < 10, (code, after_s, out)  # the proof would take 20 s
    assert "Traceback" not in out


def test_a_second_sigterm_stops_a_drill_whose_injection_hangs(tmp_path: Path) -> None:
    code, out, after_s = _run(tmp_path, inject="hang", signals=2)
    assert code == -signal.SIGTERM and after_s < 10, (code, after_s, out)


def test_a_heal_that_fails_after_a_sigterm_is_said_not_healed(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, heal_s=-1.0)
    assert code == 143, out
    assert "NOT healed" in out and "the rule could not be deleted" in out, out
    assert "healed after SIGTERM" not in out, out
