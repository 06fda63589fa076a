"""The control plane's observations worded as evidence (haven.evidence.controlplane), pure: which events a
pass's probes and unit reads give, their dates and scopes, and what the ranker makes of them."""

from __future__ import annotations

from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, Graph, NodeEvent, Symptom, rank
from haven.domain.controlplane import ProbeResult, ServiceName, UnitActive, UnitStatus
from haven.domain.ids import HostName
from haven.evidence.controlplane import ControlPlaneEvidence, Probed, same_work_seen, scope
from haven.topology import SERVER_BOOT, openstack_topology

DB = (ServiceName("mariadb"), HostName("ctl-1"))
MQ = (ServiceName("rabbitmq"), HostName("ctl-1"))
T0 = 1_800_000_000.0


def running(invocation: str = "a", since: float = T0 - 3600.0) -> UnitStatus:
    return UnitStatus(UnitActive.ACTIVE, "running", invocation_id=invocation, active_since=since)


def sql(at: float, ok: bool, detail: str = "") -> Probed:
    detail = detail or ("1 row(s)" if ok else "no answer within 2 s")
    return Probed("mariadb", "ctl-1", "sql", at - (0.01 if ok else 2.0), ProbeResult(ok, at, detail))


def graph() -> Graph:
    topology = openstack_topology(CATALOGUE.values())
    return Graph(topology.depends_on, topology.labels, topology.phases)


def test_a_failed_probe_is_an_error_dated_at_its_last_pass_and_its_pass_again_ends_it() -> None:
    seen = ControlPlaneEvidence()
    first = seen.observe({DB: running()}, [sql(T0, True)], T0)  # first sight: ends an earlier term's
    assert sorted((e.kind, e.scope) for e in first.values()) == [
        (EvidenceKind.HEALTHY, "cp:sql:ctl-1"), (EvidenceKind.HEALTHY, "cp:unit:ctl-1")
    ]  # fmt: skip
    assert seen.observe({DB: running()}, [sql(T0 + 1, True)], T0 + 1) == {}  # all well: nothing kept
    (failed,) = seen.observe({DB: running()}, [sql(T0 + 4, False)], T0 + 4).values()
    assert failed.kind is EvidenceKind.ERROR and failed.node == "mariadb"
    assert failed.at == T0 + 1 and failed.scope == "cp:sql:ctl-1"  # the fault began after the last pass
    assert "sql probe on ctl-1 failed" in failed.detail and "no answer within 2 s" in failed.detail
    assert seen.observe({DB: running()}, [sql(T0 + 8, False)], T0 + 8) == {}  # still failing: kept once
    (again,) = seen.observe({DB: running()}, [sql(T0 + 12, True)], T0 + 12).values()
    assert again.kind is EvidenceKind.HEALTHY and again.scope == failed.scope and again.at == T0 + 12

    # The ranker: a server list that failed at T0+1.5 names the database first (nova-api, which failed it,
    # depends on it); a boot that fails after the probe passed again does not.
    api = NodeEvent("nova-api", EvidenceKind.ERROR, T0 + 1.5, "server-list failed", "probe:server-list")
    events = [failed, again, api]
    during = rank(graph(), Symptom("nova-api", T0 + 1.5, "server list failed", "api"), events=events)
    assert [e.node for e in during.explanations][:2] == ["mariadb", "nova-api"]
    assert during.explanations[1].explained_by == ("mariadb",)
    after = rank(graph(), Symptom(SERVER_BOOT, T0 + 20, "boot failed", "scheduling"), events=[failed, again])
    assert after.explanations == ()


def test_a_failure_that_goes_on_is_kept_again_so_it_stays_in_the_window() -> None:
    seen = ControlPlaneEvidence(repeat_s=300.0)
    seen.observe({DB: running()}, [sql(T0, False)], T0)
    assert seen.observe({DB: running()}, [sql(T0 + 200, False)], T0 + 200) == {}
    (kept,) = seen.observe({DB: running()}, [sql(T0 + 301, False)], T0 + 301).values()
    assert kept.kind is EvidenceKind.ERROR and kept.at == T0 + 301 and "still fails" in kept.detail


def test_a_killed_unit_is_down_and_its_new_process_a_restart_that_settles() -> None:
    seen = ControlPlaneEvidence(settle_s=30.0)
    (first,) = seen.observe({MQ: running("a")}, [], T0).values()  # running for an hour when first seen
    assert first.kind is EvidenceKind.HEALTHY  # no restart: it started long before
    killed = UnitStatus(UnitActive.FAILED, "failed", invocation_id="a", active_since=T0 - 3600)
    (down,) = seen.observe({MQ: killed}, [], T0 + 2).values()
    assert (down.kind, down.node, down.scope) == (EvidenceKind.DOWN, "rabbitmq", "cp:unit:ctl-1")
    assert "failed" in down.detail
    back = seen.observe({MQ: running("b", since=T0 + 5)}, [], T0 + 6)
    kinds = sorted((e.kind.value, e.at, e.scope) for e in back.values())
    assert kinds == [("healthy", T0 + 6, "cp:unit:ctl-1"), ("restart", T0 + 5, "cp:start:ctl-1")]
    assert seen.observe({MQ: running("b", since=T0 + 5)}, [], T0 + 20) == {}  # not settled yet
    (settled,) = seen.observe({MQ: running("b", since=T0 + 5)}, [], T0 + 36).values()
    assert (settled.kind, settled.scope) == (EvidenceKind.HEALTHY, "cp:start:ctl-1")

    # A boot failing 10 s after the restart names RabbitMQ's restart; one a minute later does not.
    events = [down, *back.values(), settled]
    soon = rank(graph(), Symptom(SERVER_BOOT, T0 + 16, "boot failed", "scheduling"), events=events)
    assert soon.explanations[0].node == "rabbitmq"
    assert {e.kind for e in soon.explanations[0].evidence} == {EvidenceKind.RESTART}  # its DOWN ended
    later = rank(graph(), Symptom(SERVER_BOOT, T0 + 60, "boot failed", "scheduling"), events=events)
    assert later.explanations == ()


def test_a_process_started_just_before_haven_looked_is_a_restart_an_old_one_is_not() -> None:
    seen = ControlPlaneEvidence(settle_s=30.0)
    events = seen.observe({MQ: running("a", since=T0 - 10), DB: running("c", since=T0 - 600)}, [], T0)
    (restart,) = [e for e in events.values() if e.kind is EvidenceKind.RESTART]
    assert (restart.node, restart.kind, restart.at) == ("rabbitmq", EvidenceKind.RESTART, T0 - 10)
    assert "shortly before haven looked" in restart.detail


def test_bad_settings_are_refused() -> None:
    for repeat_s, settle_s in ((0.0, 1.0), (1.0, -1.0)):
        try:
            ControlPlaneEvidence(repeat_s, settle_s)
        except ValueError as exc:
            assert "repeat_s" in str(exc)
        else:
            raise AssertionError("accepted")


def test_a_new_process_whose_first_probe_fails_is_never_dated_before_it_started() -> None:
    # The reconciler runs no probe while a unit is down: the last pass can be from an earlier process.
    seen = ControlPlaneEvidence()
    seen.observe({DB: running("a")}, [sql(T0, True)], T0)  # passes at T0
    stopped = UnitStatus(UnitActive.FAILED, "failed", invocation_id="a", active_since=T0 - 3600)
    seen.observe({DB: stopped}, [], T0 + 60)  # down at T0+60
    events = seen.observe({DB: running("b", since=T0 + 1200)}, [sql(T0 + 1205, False)], T0 + 1205)
    (error,) = [e for e in events.values() if e.kind is EvidenceKind.ERROR]
    assert error.at == T0 + 1203  # its probe's start: this process never passed
    assert "last passed" not in error.detail

    # Restarted between two passes (never seen down): the old process's last pass does not date it either.
    seen = ControlPlaneEvidence()
    seen.observe({DB: running("a")}, [sql(T0, True)], T0)
    events = seen.observe({DB: running("b", since=T0 + 3)}, [sql(T0 + 10, False)], T0 + 10)
    (error,) = [e for e in events.values() if e.kind is EvidenceKind.ERROR]
    assert error.at == T0 + 8 and "last passed" not in error.detail

    # Without invocation ids, a pass older than the process's start is not its last pass.
    seen = ControlPlaneEvidence()
    bare = UnitStatus(UnitActive.ACTIVE, "running", active_since=T0 - 3600)
    seen.observe({DB: bare}, [sql(T0, True)], T0)
    seen.observe({DB: bare}, [sql(T0 + 5, True)], T0 + 5)
    again = UnitStatus(UnitActive.ACTIVE, "running", active_since=T0 + 300)
    events = seen.observe({DB: again}, [sql(T0 + 400, False)], T0 + 400)
    (error,) = [e for e in events.values() if e.kind is EvidenceKind.ERROR]
    assert error.at == T0 + 300


def test_a_stopped_unit_ends_its_probes_failure_its_new_process_fails_anew() -> None:
    seen = ControlPlaneEvidence(repeat_s=300.0)
    seen.observe({DB: running("a")}, [sql(T0, True)], T0)
    seen.observe({DB: running("a")}, [sql(T0 + 5, False)], T0 + 5)  # failing since T0
    stopped = UnitStatus(UnitActive.FAILED, "failed", invocation_id="a", active_since=T0 - 3600)
    seen.observe({DB: stopped}, [], T0 + 20)
    events = seen.observe({DB: running("b", since=T0 + 40)}, [sql(T0 + 45, False)], T0 + 45)
    (error,) = [e for e in events.values() if e.kind is EvidenceKind.ERROR]
    assert error.at == T0 + 43 and "still fails" not in error.detail  # a new fact, not "since T0"


def test_long_scopes_stay_distinct_within_the_column() -> None:
    common = "controller-" + "x" * 60
    one, two = scope("sql", common + "-1"), scope("sql", common + "-2")
    assert one != two and len(one) == len(two) == 64
    assert one.startswith("cp:sql:controller-xxx")
    assert one == scope("sql", common + "-1")  # stable: its HEALTHY ends its own ERROR
    assert scope("sql", "ctl-1") == "cp:sql:ctl-1"  # short ones unchanged
    exact = "h" * (64 - len("cp:sql:"))
    assert scope("sql", exact) == "cp:sql:" + exact


def keystone(host: str, at: float, ok: bool) -> Probed:
    detail = "token issued" if ok else "no answer within 2 s"
    return Probed("keystone", host, "keystone", at - 0.5, ProbeResult(ok, at, detail))


def test_keystone_failing_on_every_replica_is_marked_one_replica_alone_is_not() -> None:
    ks = ServiceName("keystone")
    units = {(ks, HostName(h)): running() for h in ("ctl-1", "ctl-2")}
    seen = ControlPlaneEvidence(repeat_s=300.0)
    seen.observe(units, [keystone("ctl-1", T0, True), keystone("ctl-2", T0, True)], T0)
    alone = seen.observe(units, [keystone("ctl-1", T0 + 5, True), keystone("ctl-2", T0 + 5, False)], T0 + 5)
    assert [(e.kind, e.scope) for e in alone.values()] == [(EvidenceKind.ERROR, "cp:keystone:ctl-2")]
    every = seen.observe(
        units, [keystone("ctl-1", T0 + 10, False), keystone("ctl-2", T0 + 10, False)], T0 + 10
    )
    marked = [e for e in every.values() if e.scope == "cp:keystone:*"]
    assert [(e.kind, e.at) for e in marked] == [(EvidenceKind.ERROR, T0 + 5)]  # since both were failing
    assert "every replica" in marked[0].detail and "ctl-1, ctl-2" in marked[0].detail
    back = seen.observe(units, [keystone("ctl-1", T0 + 15, True), keystone("ctl-2", T0 + 15, False)], T0 + 15)
    assert sorted((e.kind, e.scope) for e in back.values()) == [
        (EvidenceKind.HEALTHY, "cp:keystone:*"), (EvidenceKind.HEALTHY, "cp:keystone:ctl-1")
    ]  # fmt: skip
    # the canary's token at T0+20 ends ctl-2's failure only while every replica failed: not now
    token = NodeEvent("keystone", EvidenceKind.HEALTHY, T0 + 20, "it answered token", "probe:token")
    events = [*alone.values(), *every.values(), *back.values(), token]
    assert same_work_seen(events) == []
    during = NodeEvent("keystone", EvidenceKind.HEALTHY, T0 + 12, "it answered token", "probe:token")
    ended = same_work_seen([*alone.values(), *every.values(), during])
    assert sorted(e.scope for e in ended) == ["cp:keystone:*", "cp:keystone:ctl-1", "cp:keystone:ctl-2"]


def test_the_only_keystone_failing_is_every_replica_failing() -> None:
    units = {(ServiceName("keystone"), HostName("lab")): running()}
    seen = ControlPlaneEvidence()
    seen.observe(units, [keystone("lab", T0, True)], T0)
    failed = seen.observe(units, [keystone("lab", T0 + 12, False)], T0 + 12)
    assert sorted((e.scope, e.at) for e in failed.values()) == [
        ("cp:keystone:*", T0),
        ("cp:keystone:lab", T0),
    ]


def test_a_replica_running_but_not_probed_this_pass_keeps_the_failure_from_being_every_replicas() -> None:
    ks = ServiceName("keystone")
    units = {(ks, HostName(h)): running() for h in ("ctl-1", "ctl-2")}
    seen = ControlPlaneEvidence()
    seen.observe(units, [keystone("ctl-1", T0, True), keystone("ctl-2", T0, True)], T0)
    only = seen.observe(units, [keystone("ctl-2", T0 + 5, False)], T0 + 5)  # ctl-1 not probed this pass
    assert [e.scope for e in only.values()] == ["cp:keystone:ctl-2"]
