"""The HA lab's Nova workers (issue 11): a hung nova-conductor replica found by the RPC ping and restarted.

Shares the session's HA lab (``ha_lab``, tests/lab/conftest.py): nova-conductor.service and
nova-scheduler.service on ctl-1 and ctl-2 (``host = ctl-N``), on the lab's RabbitMQ and MariaDB.
For the test, the plain lab's own conductor and scheduler are stopped (as ``haven lab up --ha`` does),
so Nova works through the replicas only; they are started again at the end (other tests share the lab).

haven's control plane runs as ``haven serve`` runs it (haven.lab.ha_drills.Healer, the lab's
``[controlplane]`` with its ``nova_rpc`` probes). Judged from systemd's own InvocationID and NRestarts
over each controller's D-Bus, from an RPC answer of the new process (the same ping, sent here), from
Nova's service list and a server booted after the heal; haven's records only for what only haven has
(that it, for a failed probe, restarted exactly the hung replica).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from haven.controlplane.drivers.service_probes import NovaRpc, ProbeFailed
from haven.domain.controlplane import ActionKind
from haven.lab import ha, ha_drills, lab
from haven.lab.process import LabProcess
from haven.lab.state import record
from servers.nova import NovaLab


def _wait(done: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not done():
        assert time.monotonic() - started < timeout_s, f"waited {timeout_s} s for {what}"
        time.sleep(0.2)
    return time.monotonic() - started


def _answers(rpc: NovaRpc, url: str, host: str, worker: ha.Worker) -> bool:
    try:
        ha.ping_worker(rpc, url, host, worker, timeout_s=3.0)
    except ProbeFailed:
        return False
    return True


@pytest.fixture
def replicas_only(nova_lab: NovaLab) -> Iterator[None]:
    """The plain lab's nova-conductor and nova-scheduler stopped for the test, started again after."""
    plain: list[LabProcess] = [p for p in lab._CHILDREN if p.name in ha.RETIRED and p.running]
    assert sorted(p.name for p in plain) == sorted(ha.RETIRED), "the session's lab runs in this process"
    for process in plain:  # both stop at once (each waits for its in-flight work)
        process.signal(signal.SIGTERM)
    for process in plain:
        process.stop(grace_s=10)
    try:
        yield
    finally:
        # The stopped processes' records go (their pids are dead: `haven lab status` would list them not
        # alive, as a CI run found), the new ones come in.
        names = {process.name for process in plain}
        nova_lab.state.processes[:] = [p for p in nova_lab.state.processes if p.name not in names]
        for process in plain:
            process.start()
            assert process.pid is not None
            nova_lab.state.processes.append(record(process.name, process.pid, process.log))
        nova_lab.state.save()  # `lab down` at the session's end stops them


def test_a_hung_nova_conductor_replica_is_found_by_the_rpc_ping_restarted_and_nova_boots_after(
    nova_lab: NovaLab, ha_lab: ha.HaLab, replicas_only: None, tmp_path: Path
) -> None:
    """SIGSTOP of nova-conductor@ctl-1 (master and worker): systemd still says active; haven's RPC
    ping gets no answer, haven restarts it within 30 s; the new process answers the ping; Nova lists
    every replica up and boots a server. No other worker replica was restarted, from the lab's start
    to the end of the test (systemd's NRestarts and InvocationID)."""
    url = ha.transport_url(nova_lab.folder)
    conductor = next(w for w in ha_lab.workers if w.service == "nova-conductor")
    victim = ha_lab.controller("ctl-1")
    units = [(c, w.unit) for c in ha_lab.controllers for w in ha_lab.workers]
    first = {(c.host, unit): ha_drills.unit_status(c, unit) for c, unit in units}
    # No false restart during the normal start: none of systemd's own since the lab started them.
    assert {key: (s.active.value, s.n_restarts) for key, s in first.items()} == dict.fromkeys(
        first, ("active", 0)
    )
    rpc = NovaRpc()
    try:
        for c in ha_lab.controllers:
            for w in ha_lab.workers:
                _wait(lambda c=c, w=w: _answers(rpc, url, c.host, w), 30, f"{w.service} on {c.host}")  # type: ignore[misc]
        with ha_drills.Healer(ha_lab, tmp_path / "haven") as healer:
            time.sleep(4.0)  # steady: every probe passes, nothing to do
            assert healer.actions() == []
            pids = ha_drills.hang(victim, conductor.unit)
            try:
                seen = ha_drills.unit_status(victim, conductor.unit)
                assert seen.active.value == "active"  # systemd cannot tell: only the ping can
                restarted_s = _wait(
                    lambda: (
                        ha_drills.unit_status(victim, conductor.unit).invocation_id
                        != first[(victim.host, conductor.unit)].invocation_id
                    ),
                    30,
                    "systemd to run a new nova-conductor on ctl-1",
                )
            finally:
                ha_drills.resume(pids)
            answered_s = restarted_s + _wait(
                lambda: _answers(rpc, url, victim.host, conductor), 60, "the new conductor to answer"
            )
            actions = [(a.kind, a.service, a.host, a.reason) for a in healer.actions()]
            closing = time.monotonic()
        stopped_in = time.monotonic() - closing
    finally:
        rpc.close(timeout_s=5.0)
    assert ha_drills.proc_states(pids) == dict.fromkeys(pids, "gone")  # the hung processes ended
    assert [a[:3] for a in actions if a[0] is ActionKind.RESTART] == [
        (ActionKind.RESTART, "nova-conductor", "ctl-1")
    ], actions
    assert all(a[1:3] == ("nova-conductor", "ctl-1") for a in actions), actions
    assert "probe" in next(a[3] for a in actions if a[0] is ActionKind.RESTART)
    assert stopped_in < 15  # nova_rpc probes once kept the control plane from stopping (eventlet)
    # Nova's own view, then a boot through the replicas (the plain conductor and scheduler are stopped).
    cloud = nova_lab.connect()
    expected = {(w.service, c.host) for c in ha_lab.controllers for w in ha_lab.workers}

    def listed_up() -> bool:
        states = {(s.binary, s.host): s.state for s in cloud.compute.services()}
        return all(states.get(key) == "up" for key in expected)

    _wait(listed_up, 30, "Nova to list every worker replica up")
    flavor = cloud.compute.find_flavor(nova_lab.flavor)
    server = cloud.compute.create_server(
        name="ha-workers", image_id=nova_lab.image_id, flavor_id=flavor.id, networks="none"
    )
    try:
        server = cloud.compute.wait_for_server(server, wait=90, interval=0.5)
        assert server.status == "ACTIVE"
    finally:
        cloud.compute.delete_server(server)
    # systemd's account over the whole test: exactly the hung replica ran a new process; no other
    # worker replica was restarted, by haven or by systemd.
    last = {(c.host, unit): ha_drills.unit_status(c, unit) for c, unit in units}
    changed = sorted(key for key in first if last[key].invocation_id != first[key].invocation_id)
    assert changed == [(victim.host, conductor.unit)], changed
    assert all(last[key].n_restarts == 0 for key in first if key != (victim.host, conductor.unit)), last
    assert last[(victim.host, conductor.unit)].n_restarts <= 1  # haven's kill may let systemd's Restart= in
    print(f"\nnova-conductor@ctl-1 hung: restarted at {restarted_s:.1f} s, answered at {answered_s:.1f} s; "
          f"control plane stopped in {stopped_in:.1f} s")  # fmt: skip
