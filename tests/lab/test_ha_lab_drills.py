"""Drills on the HA lab (issue 11): a whole controller lost, a re-spread, stale HAProxy members.

Shares the session's HA lab (``ha_lab``, tests/lab/conftest.py). haven's control plane runs as ``haven
serve`` runs it (haven.lab.ha_drills.Healer: systemd over each controller's D-Bus, HAProxy's runtime
API, HTTP probes, a store of its own). Judged from HAProxy's own ``show servers state``, systemd's units
over each controller's D-Bus and what client threads saw; haven's records only for what only haven has
(its alerts, and that it, not systemd, acted).

- A controller lost: every process of ctl-2's PID namespace SIGSTOPped (its systemd and D-Bus too), under
  load through HAProxy; thawed at the end.
- Re-spread and stale members: on ``ha_drills.Rig`` (a tiny service on ctl-1, ctl-2 and a third
  controller ctl-3, behind an HAProxy of its own), whose replicas start in well under a second.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from haven.domain.controlplane import ActionKind
from haven.domain.incidents import AlertKind
from haven.lab import ha, ha_drills
from servers.nova import NovaLab


def _wait(done: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.2)


def _all_up(cluster: ha.HaLab) -> bool:
    return all(
        state == ("ready", "up")
        for (backend, _host), state in ha.servers_state(cluster).items()
        if not backend.endswith("_kolla")
    )


def test_a_lost_controller_is_one_alert_its_members_leave_and_clients_see_no_failure_after(
    nova_lab: NovaLab, ha_lab: ha.HaLab, tmp_path: Path
) -> None:
    """ctl-2 frozen whole: one controller_down alert (the services left short folded in, no host to
    start them on: one unit per controller), its members out of HAProxy, no failed request sent after
    that, the survivor's replicas untouched and serving. Thawed: haven puts its members back."""
    _wait(lambda: _all_up(ha_lab), 60, "every member UP before the drill")
    lost, survivor = ha_lab.controller("ctl-2"), ha_lab.controller("ctl-1")
    units = [api.unit for api in ha_lab.apis]
    before = {unit: ha_drills.unit_status(survivor, unit) for unit in units}
    backends = [api.backend for api in ha_lab.apis]
    # Keystone's version document through its frontend: cheap and always answered by a live replica
    # (a cold nova-api's first server lists take seconds on this machine: client timeouts unrelated
    # to the drill).
    url = ha_lab.frontend_url("keystone") + "/v3"
    dropped_at: float | None = None
    with ha_drills.Healer(ha_lab, tmp_path / "haven") as healer:
        time.sleep(2.0)
        assert healer.actions() == []  # steady: nothing to do
        with ha_drills.Load(url, "", clients=4, timeout_s=10.0) as load:
            time.sleep(1.0)
            pids = ha_drills.freeze(lost)
            frozen = time.monotonic()
            try:
                while time.monotonic() - frozen < 30:
                    state = ha.servers_state(ha_lab)
                    if all(state[(b, "ctl-2")] != ("ready", "up") for b in backends):
                        dropped_at = time.monotonic()
                        break
                    time.sleep(0.2)
                assert dropped_at is not None, f"ctl-2's members still in HAProxy after 30 s: {state}"
                _wait(lambda: any(a.kind is AlertKind.CONTROLLER_DOWN for a in healer.alerts()), 20, "alert")
                _wait(
                    lambda: all(ha.servers_state(ha_lab)[(b, "ctl-2")][0] == "maint" for b in backends),
                    20,
                    "haven to put ctl-2's members in maintenance",
                )
                time.sleep(3.0)  # the load goes on through the survivor alone
                during = ha.servers_state(ha_lab)
                alerts = healer.alerts()
                after_drop = [e for e in load.errors if e[0] >= dropped_at]
                answered = load.answers
            finally:
                ha_drills.thaw(pids)
                if dropped_at is None or "answered" not in locals():  # failed: leave the lab whole
                    with contextlib.suppress(AssertionError):
                        _wait(lambda: _all_up(ha_lab), 30, "ctl-2's members back after the thaw")
        survivor_actions = healer.actions(host="ctl-1")
        # Thawed: its units answer again; haven returns the members it took out.
        _wait(lambda: _all_up(ha_lab), 30, "ctl-2's members back after the thaw")
    after = {unit: ha_drills.unit_status(survivor, unit) for unit in units}
    print(f"\nctl-2 frozen: out of HAProxy after {dropped_at - frozen:.1f} s; {answered} answers, "
          f"{len(load.errors)} errors ({len(after_drop)} sent after the drop); alerts "
          f"{[(a.kind.value, a.host) for a in alerts]}")  # fmt: skip
    assert [(a.kind, a.host) for a in alerts] == [(AlertKind.CONTROLLER_DOWN, "ctl-2")], alerts
    assert "keystone short" in alerts[0].message and "nova-api short" in alerts[0].message
    assert all(during[(b, "ctl-2")][0] == "maint" for b in backends), during  # haven's, not only checks
    assert all(during[(b, "ctl-1")] == ("ready", "up") for b in backends), during
    assert after_drop == [], after_drop[:5]
    assert answered > 0
    # The survivor: systemd's own account, the same processes throughout, haven did nothing there.
    assert all(
        after[u].active.value == "active" and after[u].invocation_id == before[u].invocation_id for u in units
    ), after
    assert survivor_actions == []


def test_two_replicas_in_one_domain_are_re_spread_start_first_then_stop(
    tmp_path: Path, ha_lab: ha.HaLab
) -> None:
    """ctl-1 and ctl-2 in domain a both run the service, ctl-3 (domain b) has it stopped: haven starts
    it on ctl-3 first, and only once HAProxy has it up does ctl-1's leave HAProxy and stop."""
    with ha_drills.Rig(ha_lab, tmp_path / "rig") as rig:
        rig.start("ctl-1")
        rig.start("ctl-2")
        _wait(lambda: rig.members()["ctl-1"] == ("ready", "up") == rig.members()["ctl-2"], 15, "both up")
        _wait(lambda: rig.members()["ctl-3"][1] == "down", 15, "ctl-3 down in HAProxy")
        config = rig.config({"ctl-1": "a", "ctl-2": "a", "ctl-3": "b"})
        timeline: list[tuple[float, dict[str, str], dict[str, tuple[str, str]]]] = []
        with ha_drills.Healer(None, tmp_path / "haven", config) as healer:
            with ha_drills.Load(rig.url(), "", clients=2, timeout_s=5.0) as load:
                began = time.monotonic()
                while time.monotonic() - began < 30:
                    units = {h: rig.unit(h).active.value for h in ("ctl-1", "ctl-2", "ctl-3")}
                    members = rig.members()
                    timeline.append((round(time.monotonic() - began, 1), units, members))
                    if units["ctl-1"] == "inactive" and members["ctl-3"] == ("ready", "up"):
                        break
                    time.sleep(0.2)
                time.sleep(1.0)
            actions = [(a.kind, a.host) for a in healer.actions()]
        final = {h: (rig.unit(h).active.value, rig.members()[h]) for h in ("ctl-1", "ctl-2", "ctl-3")}
    print(f"\nre-spread: {timeline[-1][0]} s; actions {actions}; {load.answers} answers, "
          f"{len(load.errors)} errors")  # fmt: skip
    assert final == {
        "ctl-1": ("inactive", ("maint", "down")),
        "ctl-2": ("active", ("ready", "up")),
        "ctl-3": ("active", ("ready", "up")),
    }, (final, timeline[-3:])
    # Start first: ctl-3 was up in HAProxy before ctl-1 left it.
    serving = next(t for t, _u, m in timeline if m["ctl-3"] == ("ready", "up"))
    leaving = next(t for t, _u, m in timeline if m["ctl-1"][0] != "ready")
    assert serving <= leaving, timeline
    assert (ActionKind.START, "ctl-3") in actions and (ActionKind.STOP, "ctl-1") in actions, actions
    assert actions.index((ActionKind.START, "ctl-3")) < actions.index((ActionKind.DRAIN, "ctl-1"))
    assert all(host != "ctl-2" for _kind, host in actions), actions
    assert load.errors == [], load.errors[:5]


def test_stale_haproxy_members_are_corrected(tmp_path: Path, ha_lab: ha.HaLab) -> None:
    """A healthy replica an operator put in maintenance stays out while it runs, and is put back once its
    unit was restarted; a member left enabled whose unit was stopped by hand is taken out, its unit
    started again (min_replicas 2), and returned."""
    with ha_drills.Rig(ha_lab, tmp_path / "rig") as rig:
        rig.start("ctl-1")
        rig.start("ctl-2")
        _wait(lambda: rig.members()["ctl-1"] == ("ready", "up") == rig.members()["ctl-2"], 15, "both up")
        config = rig.config({"ctl-1": "a", "ctl-2": "b"})
        with ha_drills.Healer(None, tmp_path / "haven", config) as healer:
            time.sleep(1.5)
            assert healer.actions() == []
            with ha_drills.Load(rig.url(), "", clients=2, timeout_s=5.0) as load:
                # An operator's maintenance of a running replica (disable server): left alone (rule 7).
                rig.set_member("ctl-1", "maint")
                time.sleep(3.0)  # several passes
                assert rig.members()["ctl-1"][0] == "maint"
                assert [a for a in healer.actions() if a.host == "ctl-1"] == []
                # Its unit restarted since (the maintenance was for the old process): stale, back in.
                ha_drills._systemd(rig.controller("ctl-1"), "RestartUnit", "ss", rig.UNIT, "replace")
                put = time.monotonic()
                _wait(lambda: rig.members()["ctl-1"] == ("ready", "up"), 15, "ctl-1 back in HAProxy")
                readied_s = time.monotonic() - put
                # A member still enabled whose unit is stopped.
                before = rig.unit("ctl-2").invocation_id
                rig.stop("ctl-2")
                stopped = time.monotonic()
                seen: list[tuple[str, str]] = []  # (unit ActiveState, member admin), each change
                while time.monotonic() - stopped < 20:
                    sample = (rig.unit("ctl-2").active.value, rig.members()["ctl-2"][0])
                    if not seen or seen[-1] != sample:
                        seen.append(sample)
                    if sample == ("active", "ready") and rig.members()["ctl-2"][1] == "up" and len(seen) > 1:
                        break
                    time.sleep(0.1)
                back_s = time.monotonic() - stopped
            kinds = [(a.kind, a.host) for a in healer.actions()]
        after = rig.unit("ctl-2")
    print(f"\nstale: maint back after restart {readied_s:.1f} s; stopped unit back {back_s:.1f} s via "
          f"{seen}; {load.answers} answers, {len(load.errors)} errors")  # fmt: skip
    assert kinds[0] == (ActionKind.READY, "ctl-1"), kinds
    assert ("inactive", "maint") in seen, seen  # out of HAProxy while its unit was stopped
    assert seen[-1] == ("active", "ready"), seen
    assert after.active.value == "active" and after.invocation_id != before
    assert (ActionKind.START, "ctl-2") in kinds, kinds
    # The only request a client may lose is one in flight on ctl-2 when the unit was stopped by hand (the
    # fault itself: the rig's http.server ends at SIGTERM without finishing it; CI saw one such, once).
    # HAProxy redispatches the connections refused after it; haven's handling loses none.
    cut = [e for e in load.errors if abs(e[0] - stopped) < 2.0 and "closed connection" in e[1]]
    assert len(cut) <= 2 and [e for e in load.errors if e not in cut] == [], load.errors[:5]
