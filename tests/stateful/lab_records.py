"""A lab's records (``lab.json``) as ``haven lab up`` writes them, for the stateful drills' ``--cloud lab``.

The HA-lab tests start only the controllers and the clusters (no OpenStack: a lab of its own would take
minutes); they record them here the way ``haven lab up --ha`` does (haven.lab.lab ``_start_ha``:
``ha.stateful`` from haven.lab.ha_stateful's ``describe``), with the controllers' PID 1s as the lab's
processes, so ``haven drill ... --cloud lab --lab-folder F`` finds them as it finds a real lab's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from haven.lab.state import LabState, record


def write_lab_state(folder: Path, pids: Sequence[int], ha: Mapping[str, object]) -> None:
    processes = [record(f"process-{pid}", pid, folder / "none.log", namespace=False) for pid in pids]
    LabState(str(folder), [], {}, processes, ha=dict(ha)).save()
