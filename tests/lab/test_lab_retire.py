"""haven lab up --ha retires the plain lab's nova-conductor and nova-scheduler once the replicas
answer (haven.lab.lab._retire): stopped, and forgotten by the lab state (``haven lab status`` does not
show them down), by this start's process list and by ``_CHILDREN`` (a later in-process down() never
signals their reaped process group). Three ``sleep`` processes stand in for the lab's services; no lab
is started. Judged on the processes themselves and the state file as read back."""

from __future__ import annotations

import sys
from pathlib import Path

from haven.lab import lab
from haven.lab.ha import RETIRED
from haven.lab.process import LabProcess
from haven.lab.state import LabState, load_state, record, start_time


def test_retired_services_are_stopped_and_forgotten(tmp_path: Path) -> None:
    state = LabState(folder=str(tmp_path), computes=[], urls={})
    processes: list[LabProcess] = []
    for name in ("keystone", *RETIRED):
        argv = [sys.executable, "-c", "import time; time.sleep(60)"]
        process = LabProcess(name, argv, tmp_path / f"{name}.log").start()
        assert process.pid is not None
        processes.append(process)
        lab._CHILDREN.append(process)
        state.processes.append(record(name, process.pid, process.log))
    state.save()
    keystone, conductor, scheduler = processes
    try:
        assert lab._retire(state, processes, RETIRED, grace_s=5) == list(RETIRED)
        assert not conductor.running and not scheduler.running and keystone.running
        assert conductor.pid is not None and start_time(conductor.pid) is None  # reaped, not a zombie
        saved = load_state(tmp_path)
        assert saved is not None and [e.name for e in saved.processes] == ["keystone"]
        assert [p["name"] for p in lab.status(tmp_path)["processes"]] == ["keystone"]
        assert processes == [keystone]
        assert conductor not in lab._CHILDREN and scheduler not in lab._CHILDREN
        assert keystone in lab._CHILDREN
        assert lab.down(tmp_path) == ["keystone"]
        assert not keystone.running and keystone not in lab._CHILDREN
    finally:
        for process in (keystone, conductor, scheduler):
            process.stop(grace_s=1)
            if process in lab._CHILDREN:
                lab._CHILDREN.remove(process)
