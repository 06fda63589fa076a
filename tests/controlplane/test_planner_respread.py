"""The planner's rules 6 and 7 and the lost controller's one alert (pure: no I/O).

Rule 6, re-spread: two replicas share a failure domain while another domain has a stopped replica:
haven starts that one first, and only once it serves does one of the crowded domain leave the load
balancer and stop. Rule 7: a member left stale in HAProxy is corrected from health. A lost controller
(its systemd silent) is one alert even when the services it ran are still served elsewhere.
"""

from __future__ import annotations

import dataclasses

from haven.controlplane.alerts import root_alerts
from haven.controlplane.catalogue import CATALOGUE
from haven.controlplane.planner import RESPREAD, plan
from haven.domain.controlplane import (
    ActionKind,
    Backend,
    ControlPlaneSettings,
    MemberAdmin,
    MemberStatus,
    ProbeKind,
    ProbeResult,
    ProbeSpec,
    ReplicaView,
    ServiceName,
    ServiceSpec,
    Spread,
    UnitActive,
    UnitStatus,
)
from haven.domain.ids import HostName
from haven.domain.incidents import AlertKind

NOW = 10_000.0
SETTINGS = ControlPlaneSettings()
PROBE = ProbeSpec(ProbeKind.HTTP, 8774, "/", failure_threshold=3, startup_grace_s=60.0)
API = ServiceSpec(ServiceName("nova-api"), "nova-api.service", 2, probe=PROBE, backend=Backend("nova_api"))
DOMAINS = {HostName("ctl-1"): "a", HostName("ctl-2"): "a", HostName("ctl-3"): "b"}
ACTIVE = UnitStatus(UnitActive.ACTIVE, "running", active_since=NOW - 3600)
STOPPED = UnitStatus(UnitActive.INACTIVE, "dead")
READY = MemberStatus(MemberAdmin.READY, "up")
DRAIN = MemberStatus(MemberAdmin.DRAIN, "up", sessions=3)
MAINT = MemberStatus(MemberAdmin.MAINT, "down")
PASSING = (ProbeResult(True, NOW - 1),)
MOVED = frozenset({(ServiceName("nova-api"), HostName("ctl-3"))})


def replica(host: str, unit: UnitStatus | None = ACTIVE, **kw: object) -> ReplicaView:
    base = ReplicaView(ServiceName("nova-api"), HostName(host), DOMAINS[HostName(host)], unit)
    defaults: dict[str, object] = {"probes": PASSING, "member": READY}
    defaults.update(kw)
    return dataclasses.replace(base, **defaults)  # type: ignore[arg-type]


def acts(
    views: list[ReplicaView],
    moves: frozenset[tuple[ServiceName, HostName]] = frozenset(),
    spec: ServiceSpec = API,
) -> list[tuple[str, str]]:
    p = plan([spec], views, DOMAINS, NOW, SETTINGS, moves)
    return [(a.kind.value, a.host) for a in p.actions]


def test_two_in_one_domain_while_another_has_room_starts_there_first() -> None:
    bunched = [replica("ctl-1"), replica("ctl-2"), replica("ctl-3", unit=STOPPED, member=MAINT)]
    p = plan([API], bunched, DOMAINS, NOW, SETTINGS)
    assert [(a.kind, a.host) for a in p.actions] == [(ActionKind.START, "ctl-3")]
    assert p.actions[0].reason.startswith(RESPREAD), p.actions[0].reason
    assert "domain a has 2 replicas while b has 0" in p.actions[0].reason
    # Its stale member leaves the load balancer before it is started (rule 2), as for any start.
    assert acts([replica("ctl-1"), replica("ctl-2"), replica("ctl-3", unit=STOPPED)]) == [("drain", "ctl-3")]
    # spread = "none": no move.
    assert acts(bunched, spec=dataclasses.replace(API, spread=Spread.NONE)) == []


def test_no_move_while_anything_is_in_flight() -> None:
    stopped_b = replica("ctl-3", unit=STOPPED, member=MAINT)
    starting = dataclasses.replace(ACTIVE, active_since=NOW - 5)
    assert acts([replica("ctl-1"), replica("ctl-2", unit=starting, probes=()), stopped_b]) == [
        ("drain", "ctl-2")
    ]
    assert acts([replica("ctl-1"), replica("ctl-2", busy=True), stopped_b]) == []
    assert acts([replica("ctl-1"), replica("ctl-2", member=DRAIN, held_out=True), stopped_b]) == [
        ("ready", "ctl-2")
    ]


def test_once_the_new_replica_serves_one_of_the_crowded_domain_leaves_then_stops() -> None:
    new = replica("ctl-3", held_out=True)  # started by haven to re-spread, back in the load balancer
    assert acts([replica("ctl-1"), replica("ctl-2"), new], MOVED) == [("drain", "ctl-1")]
    # Draining: not put back (rule 7 spares the leaving one); maintenance after drain_s.
    draining = replica("ctl-1", member=DRAIN, held_out=True, drained_at=NOW - 0.5)
    p = plan([API], [draining, replica("ctl-2"), new], DOMAINS, NOW, SETTINGS, MOVED)
    assert p.actions == () and p.recheck_at == NOW - 0.5 + API.drain_s
    late = replica("ctl-1", member=DRAIN, held_out=True, drained_at=NOW - 3)
    assert acts([late, replica("ctl-2"), new], MOVED) == [("maint", "ctl-1")]
    out = replica("ctl-1", member=MAINT, held_out=True)
    assert acts([out, replica("ctl-2"), new], MOVED) == [("stop", "ctl-1")]
    # Stopped: the service is at its minimum, one per domain; nothing more.
    done = [replica("ctl-1", unit=STOPPED, member=MAINT, held_out=True), replica("ctl-2"), new]
    assert acts(done, MOVED) == []


def test_nothing_leaves_before_the_new_replica_serves() -> None:
    still_out = replica("ctl-3", member=MAINT, held_out=True)
    starting = replica(
        "ctl-3", unit=dataclasses.replace(ACTIVE, active_since=NOW - 2), probes=(), member=MAINT
    )
    assert acts([replica("ctl-1"), replica("ctl-2"), still_out], MOVED) == [("ready", "ctl-3")]
    assert acts([replica("ctl-1"), replica("ctl-2"), starting], MOVED) == []


def test_replicas_an_operator_runs_beyond_the_minimum_are_not_stopped() -> None:
    # a, a, b all running (3 controllers in 2 racks, min 2): no domain has room, haven began no move.
    assert acts([replica("ctl-1"), replica("ctl-2"), replica("ctl-3")]) == []


def test_no_replica_leaves_while_another_is_failing() -> None:
    failing = replica("ctl-2", unit=UnitStatus(UnitActive.FAILED, "failed"), member=MAINT, held_out=True)
    assert ("drain", "ctl-1") not in acts([replica("ctl-1"), failing, replica("ctl-3", held_out=True)], MOVED)


def test_stale_members_are_corrected_from_health() -> None:
    # A healthy replica left in maintenance or drain by someone else since before its unit was
    # restarted (stale): back in. Its process unchanged: the operator's maintenance, left alone.
    stale = frozenset({(ServiceName("nova-api"), HostName("ctl-1"))})
    for admin in (MAINT, DRAIN):
        views = [replica("ctl-1", member=admin), replica("ctl-3")]
        p = plan([API], views, DOMAINS, NOW, SETTINGS, stale=stale)
        assert [(a.kind, a.host) for a in p.actions] == [(ActionKind.READY, "ctl-1")]
        assert "stale member" in p.actions[0].reason
        assert plan([API], views, DOMAINS, NOW, SETTINGS).actions == ()
    # A member left enabled whose unit is stopped: out, then started again (min_replicas 2).
    assert acts([replica("ctl-1", unit=STOPPED), replica("ctl-3")]) == [("drain", "ctl-1")]
    gone = replica("ctl-1", unit=STOPPED, member=MemberStatus(MemberAdmin.DRAIN, "down"), held_out=True)
    assert acts([gone, replica("ctl-3")]) == [("maint", "ctl-1")]
    assert acts([replica("ctl-1", unit=STOPPED, member=MAINT, held_out=True), replica("ctl-3")]) == [
        ("start", "ctl-1")
    ]
    # A healthy replica whose latest probe failed is not put back yet.
    once = (ProbeResult(True, NOW - 2), ProbeResult(False, NOW - 1))
    assert acts([replica("ctl-1", member=MAINT, probes=once), replica("ctl-3")]) == []


def test_a_lost_controller_is_one_alert_with_the_services_left_short_folded_in() -> None:
    """ctl-1's systemd silent: keystone and nova-api still served on ctl-2, each short of a replica
    with no host to start one on (2 controllers): one controller_down alert, not one per service."""
    specs = [CATALOGUE[ServiceName("keystone")], CATALOGUE[ServiceName("nova-api")]]
    domains = {HostName("ctl-1"): "ctl-1", HostName("ctl-2"): "ctl-2"}
    views = []
    for spec in specs:
        for host, unit in (("ctl-1", None), ("ctl-2", ACTIVE)):
            view = ReplicaView(spec.name, HostName(host), host, unit, probes=PASSING, member=READY)  # type: ignore[arg-type]
            views.append(view)
    p = plan(specs, views, domains, NOW, SETTINGS)
    assert sorted(h.kind for h in p.holds) == ["no_host", "no_host"]
    assert [(a.kind.value, a.host) for a in p.actions] == [("drain", "ctl-1"), ("drain", "ctl-1")]
    alerts = root_alerts(p, CATALOGUE)
    assert [(a.kind, a.subject) for a in alerts] == [(AlertKind.CONTROLLER_DOWN, "ctl-1")]
    assert "keystone short" in alerts[0].reason and "nova-api short" in alerts[0].reason


def test_a_controller_read_partly_raises_no_alert_for_the_services_left_short() -> None:
    """Frozen mid-pass: ctl-1's keystone unread, its nova-api still read: keystone's no_host hold is no
    alert of its own (unknown is not down); the next pass, all unread, gives the one controller_down."""
    specs = [CATALOGUE[ServiceName("keystone")], CATALOGUE[ServiceName("nova-api")]]
    domains = {HostName("ctl-1"): "ctl-1", HostName("ctl-2"): "ctl-2"}
    views = [
        ReplicaView(spec.name, HostName(host), host, unit, probes=PASSING, member=READY)  # type: ignore[arg-type]
        for spec in specs
        for host, unit in (
            ("ctl-1", None if spec.name == "keystone" else ACTIVE),
            ("ctl-2", ACTIVE),
        )
    ]
    p = plan(specs, views, domains, NOW, SETTINGS)
    assert [h.kind for h in p.holds] == ["no_host"]
    assert root_alerts(p, CATALOGUE) == []
