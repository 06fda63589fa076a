"""The control plane as ``haven serve`` runs it: the simulated control plane healed in virtual time and
judged from its world (units, balancer), one alert per root event, and ``haven serve`` + ``haven
controlplane status`` + ``/metrics`` end to end on the simulated cloud."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from haven.controlplane.alerts import root_alerts
from haven.controlplane.catalogue import CATALOGUE
from haven.controlplane.config import ControlPlaneConfig, parse_controlplane
from haven.controlplane.reconciler import Reconciler
from haven.controlplane.running import ControlPlane
from haven.domain.clock import VirtualClock
from haven.domain.controlplane import (
    ControlPlanePlan,
    Hold,
    MemberAdmin,
    ReplicaHealth,
    ServiceName,
    UnitActive,
)
from haven.domain.errors import ConfigError
from haven.domain.ids import HostName
from haven.domain.incidents import AlertKind
from haven.store import Store
from servers.process import free_port

HAVEN = str(Path(sys.executable).with_name("haven"))
H = ReplicaHealth


@pytest.fixture
def store() -> Iterator[Store]:
    with Store.open("sqlite://") as opened:
        yield opened


async def _passes(reconciler: Reconciler, clock: VirtualClock, done: object, limit_s: float) -> float:
    start = clock.now()
    while not done():  # type: ignore[operator]
        assert clock.now() - start < limit_s, f"not done within {limit_s} s"
        result = await reconciler.run_pass()
        due = clock.now() + 0.5
        clock.advance_to(min(due, result.recheck_at or due))
    return clock.now() - start


async def test_a_lost_controller_is_one_alert_and_every_service_is_back_on_the_survivors(
    store: Store,
) -> None:
    clock = VirtualClock()
    cp = ControlPlane(ControlPlaneConfig(), simulated_cloud=True, clock=clock)
    assert cp.sim is not None
    sim = cp.sim
    reconciler = Reconciler(cp.config, cp.units, cp.balancer, cp.prober, store, clock)
    await reconciler.run_pass()
    assert store.list_alerts() == []
    sim.lose("ctl-1")

    def serving(service: ServiceName) -> list[str]:
        spec = sim.specs[service]
        out = []
        for host, units in sim.hosts.items():
            unit = units.units.get(spec.unit)
            member = sim.balancer.admin.get((spec.backend.name, host)) if spec.backend else MemberAdmin.READY
            running = units.reachable and unit is not None and unit.active is UnitActive.ACTIVE
            if running and unit is not None and member is MemberAdmin.READY and not unit.hung:
                out.append(host)
        return out

    took = await _passes(reconciler, clock, lambda: all(len(serving(s)) >= 2 for s in sim.specs), 60)
    assert took <= 20.0
    for service in sim.specs:
        assert sorted(serving(service)) == ["ctl-2", "ctl-3"], service
        spec = sim.specs[service]
        if spec.backend is not None:  # the lost controller's members are out of the load balancer
            assert sim.balancer.admin[(spec.backend.name, "ctl-1")] is MemberAdmin.MAINT
    alerts = store.list_alerts()
    assert [(a.kind, a.host) for a in alerts] == [(AlertKind.CONTROLLER_DOWN, "ctl-1")]
    assert "nova-api" in alerts[0].message and "keystone" in alerts[0].message
    await reconciler.run_pass()
    assert len(store.list_alerts()) == 1  # not raised again
    assert {(r.host, r.health) for r in store.list_replicas() if r.service == "keystone"} == {
        ("ctl-1", H.UNKNOWN),
        ("ctl-2", H.HEALTHY),
        ("ctl-3", H.HEALTHY),
    }
    # The controller back: its alert clears.
    sim.hosts[HostName("ctl-1")].reachable = True
    await _passes(reconciler, clock, lambda: not store.list_alerts(), 30)


async def test_a_hung_replica_is_restarted_on_the_serve_control_plane(store: Store) -> None:
    clock = VirtualClock()
    cp = ControlPlane(ControlPlaneConfig(), simulated_cloud=True, clock=clock)
    assert cp.sim is not None
    reconciler = Reconciler(cp.config, cp.units, cp.balancer, cp.prober, store, clock)
    await reconciler.run_pass()
    cp.sim.hang("nova-api", "ctl-2")
    unit = cp.sim.unit("nova-api", "ctl-2")
    took = await _passes(
        reconciler,
        clock,
        lambda: (
            unit.restarts_by_haven == 1 and cp.sim.balancer.admin[("nova_api", "ctl-2")] is MemberAdmin.READY
        ),
        60,
    )
    assert took <= 15.0
    assert [a.kind for a in store.list_alerts()] == []


def _plan(health: list[tuple[str, str, ReplicaHealth]], holds: tuple[Hold, ...] = ()) -> ControlPlanePlan:
    return ControlPlanePlan((), holds, tuple((ServiceName(s), HostName(h), x) for s, h, x in health), None)


def test_a_down_dependency_is_one_alert_with_its_dependents_folded_in() -> None:
    health = [
        ("keystone", "ctl-1", H.FAILED),
        ("keystone", "ctl-2", H.UNHEALTHY),
        ("nova-api", "ctl-1", H.UNHEALTHY),
        ("nova-api", "ctl-2", H.UNHEALTHY),
        ("glance-api", "ctl-1", H.HEALTHY),
    ]
    holds = (Hold(ServiceName("nova-api"), None, "dependency", "nova-api fails while keystone is down"),)
    alerts = root_alerts(_plan(health, holds), CATALOGUE)
    assert [(a.kind, a.subject) for a in alerts] == [(AlertKind.SERVICE_DOWN, "keystone")]
    assert "nova-api down" in alerts[0].reason and "nova-api held" in alerts[0].reason


def test_a_crash_loop_elsewhere_stays_its_own_alert() -> None:
    health = [("nova-api", "ctl-1", H.FAILED), ("nova-api", "ctl-2", H.HEALTHY)]
    holds = (Hold(ServiceName("nova-api"), HostName("ctl-1"), "crash_loop", "looping"),)
    alerts = root_alerts(_plan(health, holds), CATALOGUE)
    assert [(a.kind, a.subject) for a in alerts] == [(AlertKind.REPLICA_CRASH_LOOP, "nova-api@ctl-1")]


def test_a_bad_controlplane_driver_is_named() -> None:
    with pytest.raises(ConfigError, match="one of 'systemd', 'podman', 'docker', 'kubernetes', 'sim'"):
        parse_controlplane({"driver": "lxc"}, "haven.toml")
    with pytest.raises(ConfigError, match="bus must be a D-Bus address"):
        parse_controlplane({"controllers": [{"host": "ctl-1", "bus": 3}]}, "haven.toml")


def _haven(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HAVEN_HOME": str(home)}
    return subprocess.run([HAVEN, *argv], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow
def test_serve_runs_the_simulated_control_plane_and_status_shows_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert _haven(home, "controlplane", "status").returncode != 0  # no state yet: a clear error
    port = free_port()
    env = {**os.environ, "HAVEN_HOME": str(home)}
    proc = subprocess.Popen(
        [HAVEN, "serve", "--bind", f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    status: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not status.get("replicas"):
            time.sleep(0.5)
            shown = _haven(home, "controlplane", "status", "--json")
            if shown.returncode == 0:
                status = json.loads(shown.stdout)
        token = _haven(home, "token").stdout.strip()
        metrics = httpx.get(
            f"http://127.0.0.1:{port}/metrics", headers={"X-Auth-Token": token}, timeout=10
        ).text
        table = _haven(home, "controlplane", "status")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "control plane: 6 services on 3 controllers" in err
    services = status["services"]
    assert isinstance(services, dict) and set(services) == {
        "keystone", "nova-api", "placement-api", "glance-api", "nova-conductor", "nova-scheduler",
    }  # fmt: skip
    assert all(v == {"healthy": 2, "running": 2} for v in services.values())
    assert 'haven_controlplane_replicas{health="healthy",service="nova-api"} 2.0' in metrics
    assert (
        table.returncode == 0
        and "nova-api" in table.stdout
        and "no active control-plane alert" in table.stdout
    )
