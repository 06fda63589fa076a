"""A spare controller on the HA lab (issue 11): a lost controller's replicas start on the standby host.

Shares the session's HA lab (``ha_lab``, tests/lab/conftest.py) and adds to it, for this test only, what
``haven lab up --ha --controllers 3`` adds (haven.lab.ha.add_spare): ctl-3, its own failure domain,
systemd as PID 1 of its own namespace with every replica's unit installed and stopped, its members in
every backend of HAProxy in maintenance; removed at the end (other tests expect two controllers).

Judged from systemd's units over each controller's D-Bus and HAProxy's own ``show servers state``;
haven's records only for what only haven has (its alert, that it, not systemd, started the units).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from haven.domain.controlplane import ActionKind
from haven.domain.incidents import AlertKind
from haven.lab import ha, ha_drills
from haven.lab.memcached import MEMCACHED_UNIT
from haven.lab.toolenv import ensure_tool_env
from servers.nova import NovaLab


def _wait(done: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not done():
        assert time.monotonic() - started < timeout_s, f"waited {timeout_s} s for {what}"
        time.sleep(0.2)
    return time.monotonic() - started


def _members(cluster: ha.HaLab, host: str) -> dict[str, tuple[str, str]]:
    return {b: s for (b, h), s in ha.servers_state(cluster).items() if h == host and not b.endswith("_kolla")}


def test_a_lost_controllers_replicas_start_on_the_spare_and_take_traffic(
    nova_lab: NovaLab, ha_lab: ha.HaLab, tmp_path: Path
) -> None:
    """ctl-1 frozen whole with a spare ctl-3 standing by: haven starts every missing replica there
    (systemd: active) and puts its members in (HAProxy: ready and up), nothing on ctl-2, one
    controller_down alert; thawed, ctl-1's members come back."""
    venvs = {tool: ensure_tool_env(tool) for tool in {api.tool for api in ha_lab.apis} | {"nova"}}
    namespaces: list[int] = []
    spare = ha.add_spare(ha_lab, nova_lab.folder, venvs, lambda _name, pid1, _log: namespaces.append(pid1))
    lost, survivor = ha_lab.controller("ctl-1"), ha_lab.controller("ctl-2")
    units = [api.unit for api in ha_lab.apis] + [worker.unit for worker in ha_lab.workers]
    # memcached is declared too (haven.toml's [controlplane]): its replica of ctl-1 starts on the spare
    caches = [MEMCACHED_UNIT] if ha_lab.memcached_port else []
    units += caches
    try:
        assert spare.host == "ctl-3" and spare.spare
        assert {u: ha_drills.unit_status(spare, u).active.value for u in units} == dict.fromkeys(
            units, "inactive"
        )
        standby = _members(ha_lab, "ctl-3")
        assert len(standby) == len(ha_lab.apis) and all(admin == "maint" for admin, _op in standby.values())
        # haproxy.cfg has them too (disabled: in maintenance), so a restarted HAProxy keeps the spare.
        assert _in_config(ha_lab, "ctl-3") == {
            f"{b} disabled" for b, _h in ha.servers_state(ha_lab) if _h == "ctl-3"
        }
        before = {u: ha_drills.unit_status(survivor, u).invocation_id for u in units}
        with ha_drills.Healer(ha_lab, tmp_path / "haven") as healer:
            time.sleep(3.0)  # steady: a spare is not started while every service has its replicas
            assert not [a for a in healer.actions() if a.host == "ctl-3"]
            pids = ha_drills.freeze(lost)
            try:
                back_s = _wait(
                    lambda: (
                        all(ha_drills.unit_status(spare, u).active.value == "active" for u in units)
                        and all(s == ("ready", "up") for s in _members(ha_lab, "ctl-3").values())
                    ),
                    90,
                    "every replica of ctl-1 active on ctl-3 and its members ready and up",
                )
                members = ha.servers_state(ha_lab)
                alerts = healer.alerts()
            finally:
                ha_drills.thaw(pids)
            _wait(lambda: all(s == ("ready", "up") for s in _members(ha_lab, "ctl-1").values()), 60,
                  "ctl-1's members back once thawed")  # fmt: skip
            actions = healer.actions()
        assert all(members[(api.backend, "ctl-1")][0] == "maint" for api in ha_lab.apis)
        assert all(members[(api.backend, "ctl-2")] == ("ready", "up") for api in ha_lab.apis)
        started = {(a.service, a.host) for a in actions if a.kind is ActionKind.START}
        declared = {api.service for api in ha_lab.apis} | {worker.service for worker in ha_lab.workers}
        declared |= {"memcached"} if caches else set()
        assert started == {(service, "ctl-3") for service in declared}
        assert not [a for a in actions if a.host == "ctl-2"]
        assert {u: ha_drills.unit_status(survivor, u).invocation_id for u in units} == before
        assert [(a.kind, a.host) for a in alerts if a.kind is AlertKind.CONTROLLER_DOWN] == [
            (AlertKind.CONTROLLER_DOWN, "ctl-1")
        ]
        print(f"every replica of ctl-1 active and in HAProxy on ctl-3 {back_s:.1f} s after the freeze")
    finally:
        ha.remove_spare(ha_lab, spare)
        for pid1 in namespaces:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid1, signal.SIGKILL)
    assert "ctl-3" not in {h for _b, h in ha.servers_state(ha_lab)}
    assert _in_config(ha_lab, "ctl-3") == set()


def _in_config(cluster: ha.HaLab, host: str) -> set[str]:
    """The backends whose ``server`` lines in the lab's haproxy.cfg name ``host`` (" disabled" appended
    when it starts in maintenance)."""
    out, backend = set(), ""
    for line in (cluster.folder / "haproxy.cfg").read_text().splitlines():
        if line.startswith("backend "):
            backend = line.split()[1]
        elif line.strip().startswith(f"server {host} "):
            out.add(backend + (" disabled" if line.endswith(" disabled") else ""))
    return out
