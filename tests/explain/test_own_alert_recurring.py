"""A control-plane alert that clears and comes back is one lasting alert (haven.explain.incidents), pure.

Review R1-R3: haven's control-plane alert (the PROCESS gate's hold: many nova-computes silent while their
hosts beat) waits ``own_hold_s`` after its raise for a cause before it is sent. The detector raises a new
alert (a new id) each time the gate holds again, so a gate holding for 60 s, releasing for 10 s, holding
again... was never sent: each raise cleared before its own hold ended. A raise within ``own_recur_s`` of
the last one's clear continues it: its first raise is its raise, the hold ends 90 s after it, and the one
raised then is paged (or muted under the cause found by then, or under the cause its predecessor was sent
with: a recurrence never pages what was muted). It is one alert to Alertmanager (review of 13c168b): sent
under its first sent raise's ``alert_id``, and firing through its clears until it has stayed clear
``own_recur_s``, so a gate flapping every 70 s pages once, not at every ``group_interval``.
"""

from __future__ import annotations

import dataclasses

from haven.domain.clock import VirtualClock
from haven.domain.incidents import Alert, AlertKind
from haven.explain.alerting import AlertingSettings, AlertmanagerNotifier
from haven.explain.incidents import incident_alerts
from haven.notify.alertmanager import AmAlert

from .test_own_alert_cause import MQ_DOWN, OWN, SETTINGS, SETTLE, WORDS, T, control_plane, explained


def flapping(*spans: tuple[float, float | None]) -> list[Alert]:
    """One alert per (raise, clear) after T, as the detector raises them (each with its own id)."""
    return [
        Alert(f"cp{i}", AlertKind.CONTROL_PLANE, WORDS, T + up, cleared_at=None if down is None else T + down)
        for i, (up, down) in enumerate(spans, 1)
    ]


def test_a_gate_holding_again_soon_is_paged_once_its_first_raise_held_own_hold_s() -> None:
    alerts = flapping((0, 60), (70, 130), (140, None))
    assert control_plane(incident_alerts([], alerts[:1], T + 30, SETTINGS)) is None  # waits for a cause
    # the second raise at T + 70: 90 s after the first raise it is paged (before: only at T + 160, and it
    # cleared at T + 130 — never)
    second = [dataclasses.replace(alerts[1], cleared_at=None)]
    assert control_plane(incident_alerts([], alerts[:1] + second, T + 85, SETTINGS)) is None
    paged = control_plane(incident_alerts([], alerts[:1] + second, T + 95, SETTINGS))
    assert paged is not None and paged.labels["alert_id"] == "cp2" and "cause" not in paged.labels
    assert paged.annotations["recurring"].startswith("raised 2 times since ")
    # cleared at T + 130 after it was sent: still firing, under the same labels, while it may come back
    cleared = [alerts[0], alerts[1]]
    kept = control_plane(incident_alerts([], cleared, T + 135, SETTINGS, kept={"cp2": ""}))
    assert kept is not None and kept.labels == paged.labels and kept.ends_at > T + 135
    assert kept.annotations["cleared"].startswith("clear since ")
    third = control_plane(incident_alerts([], alerts, T + 141, SETTINGS, kept={"cp2": ""}))
    assert third is not None and third.labels == paged.labels  # cp3 is cp2 to Alertmanager: one alert
    assert third.annotations["recurring"].startswith("raised 3 times since ")
    assert "cleared" not in third.annotations
    # without the memory (a restarted haven) it is decided again: under its own id
    again = control_plane(incident_alerts([], alerts, T + 141, SETTINGS))
    assert again is not None and again.labels["alert_id"] == "cp3"
    # clear own_recur_s: it is resolved (no longer sent; the notifier sends it ended)
    over = T + 130 + SETTINGS.own_recur_s
    assert control_plane(incident_alerts([], cleared, over, SETTINGS, kept={"cp2": ""})) is not None
    assert control_plane(incident_alerts([], cleared, over + 1, SETTINGS, kept={"cp2": ""})) is None


def test_a_single_short_raise_is_not_paged_and_a_late_one_starts_anew() -> None:
    # Like a Prometheus rule's ``for``: held less than own_hold_s and not back, nothing is paged (its
    # evidence still ranks, haven.explain.own); back after own_recur_s it is a new alert with its own hold.
    short = flapping((0, 60))
    assert all(control_plane(incident_alerts([], short, at, SETTINGS)) is None for at in (T + 30, T + 95))
    late = flapping((0, 60), (60 + SETTINGS.own_recur_s + 1, None))
    at = T + 60 + SETTINGS.own_recur_s + 30
    assert control_plane(incident_alerts([], late, at, SETTINGS)) is None  # its own hold: not over yet
    assert control_plane(incident_alerts([], late, at + 61, SETTINGS)) is not None


def test_its_cause_is_the_first_raise_incident() -> None:
    # the boot failed at T + 26 (RabbitMQ down): the hold at T + 70 is still RabbitMQ's symptom
    boot = explained("canary:1", T + 26, T + 27, [MQ_DOWN, OWN])
    alerts = flapping((0, 60), (70, None))
    again = control_plane(incident_alerts([boot], alerts, T + 75, SETTINGS, SETTLE))
    assert again is not None and again.labels["haven_role"] == "symptom"
    assert again.labels["cause"] == "rabbitmq"


def test_a_recurrence_keeps_the_labels_its_predecessor_was_sent_with() -> None:
    # the first raise was sent muted under rabbitmq; its incident was ranked again since (no cause now):
    # decided afresh, the second raise would be paged as itself (a page for what was muted)
    moved = explained("canary:1", T + 26, T + 140, [OWN])
    alerts = flapping((0, 150), (160, None))
    kept = {"cp1": "rabbitmq"}
    again = control_plane(incident_alerts([moved], alerts, T + 165, SETTINGS, SETTLE, kept))
    assert again is not None and again.labels["haven_role"] == "symptom"
    assert again.labels["cause"] == "rabbitmq"
    alone = control_plane(incident_alerts([moved], alerts, T + 165, SETTINGS, SETTLE, {"cp1": ""}))
    assert alone is not None and "cause" not in alone.labels


class _Store:
    def __init__(self, alerts: list[Alert]) -> None:
        self.alerts = alerts
        self.records: list[object] = []

    def list_explanations(self, limit: int) -> list[object]:
        return self.records

    def list_alerts(self, active_only: bool, cleared_since: float | None = None) -> list[Alert]:
        since = float("inf") if cleared_since is None else cleared_since
        return [a for a in self.alerts if not active_only or a.cleared_at is None or a.cleared_at >= since]


class _Alertmanager:
    """What Alertmanager knows of the alerts posted: an alert is its labels; each time one starts firing
    (new, or again after it resolved) its group notifies again at the next group_interval."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.firing: list[AmAlert] = []
        self.ends: dict[tuple[tuple[str, str], ...], float] = {}  # those firing -> their endsAt
        self.fired: list[tuple[float, dict[str, str]]] = []  # (when, labels) each time one starts firing
        self.resolved: list[tuple[float, dict[str, str]]] = []

    async def post(self, batch: list[AmAlert]) -> None:
        self.lapsed()
        now = self.clock.now()
        self.firing += [a for a in batch if a.ends_at > now]
        for alert in batch:
            key = tuple(sorted(alert.labels.items()))
            if alert.ends_at > now:
                if key not in self.ends:
                    self.fired.append((now, alert.labels))
                self.ends[key] = alert.ends_at
            elif self.ends.pop(key, None) is not None:
                self.resolved.append((now, alert.labels))

    def lapsed(self) -> None:
        """Alerts not posted again before their endsAt resolve by themselves (none should here)."""
        now = self.clock.now()
        for key in [k for k, ends in self.ends.items() if ends <= now]:
            del self.ends[key]
            self.resolved.append((now, dict(key)))


def _as_at(at: float, spans: list[tuple[float, float | None]]) -> list[Alert]:
    """The store's alerts at ``at``: those raised by then, cleared only once their clear has come."""
    raised = [a for a in flapping(*spans) if a.raised_at <= at]
    return [a if (a.cleared_at or 0.0) <= at else dataclasses.replace(a, cleared_at=None) for a in raised]


def _notifier(store: _Store, am: _Alertmanager, clock: VirtualClock) -> AlertmanagerNotifier:
    settings = AlertingSettings("http://am", 60.0, SETTINGS, SETTLE)
    return AlertmanagerNotifier(store, clock, settings, am)  # type: ignore[arg-type]


async def test_the_notifier_pages_a_flapping_gate() -> None:
    clock = VirtualClock(T)
    spans: list[tuple[float, float | None]] = [(0.0, 60.0), (70.0, 130.0), (140.0, 200.0), (210.0, 270.0)]
    store, am = _Store([]), _Alertmanager(clock)
    notifier = _notifier(store, am, clock)
    for step in range(0, 400, 5):
        at = T + step
        store.alerts = _as_at(at, spans)
        clock.advance_to(at)
        await notifier.tick()
    paged = {a.labels["alert_id"] for a in am.firing if a.labels["alertname"] == "HavenControlPlane"}
    assert paged == {"cp2"}  # before 13c168b: none of the four was ever sent; at 13c168b cp2, cp3, cp4


async def _flap(am: _Alertmanager, spans: list[tuple[float, float | None]], until_s: int) -> None:
    clock = am.clock
    store = _Store([])
    notifier = _notifier(store, am, clock)
    for step in range(0, until_s, 5):
        at = T + step
        store.alerts = _as_at(at, spans)
        clock.advance_to(at)
        am.lapsed()
        await notifier.tick()


async def test_a_flapping_gate_is_one_alert_to_alertmanager_until_it_stays_clear() -> None:
    # Review of 13c168b on Debian's Alertmanager: each raise sent under its own alert_id is a new alert in
    # the group, notified again at the next group_interval (a gate flapping every ~70 s paged every minute)
    am = _Alertmanager(VirtualClock(T))
    spans: list[tuple[float, float | None]] = [(0.0, 60.0), (70.0, 130.0), (140.0, 200.0), (210.0, 270.0)]
    late = 270.0 + SETTINGS.own_recur_s + 50  # back after it stayed clear: a new alert, its own hold
    await _flap(am, [*spans, (late, None)], int(late) + 120)
    fired = [(at - T, labels["alert_id"]) for at, labels in am.fired]
    assert fired == [(90.0, "cp2"), (late + SETTINGS.own_hold_s, "cp5")]  # at 13c168b cp2, cp3, cp4 too
    resolved = [(at - T, labels["alert_id"]) for at, labels in am.resolved]
    assert resolved == [(270.0 + SETTINGS.own_recur_s + 5, "cp2")]  # not at each clear: no churn
    last = [a for a in am.firing if a.labels["alert_id"] == "cp2"][-1]
    assert last.annotations["recurring"].startswith("raised 4 times since ")


async def test_a_gate_flapping_longer_than_the_incident_window_stays_one_alert() -> None:
    # its first sent raise (cp2) is no longer listed once it cleared active_s (900 s) ago: the notifier
    # remembers the alert_id the raises it sent went under
    am = _Alertmanager(VirtualClock(T))
    spans: list[tuple[float, float | None]] = [(70.0 * i, 70.0 * i + 60) for i in range(30)]
    await _flap(am, spans, 70 * 30 + 60)
    assert [labels["alert_id"] for _, labels in am.fired] == ["cp2"]
    assert am.resolved == []


async def test_the_notifier_keeps_a_muted_alert_muted_when_it_comes_back() -> None:
    clock = VirtualClock(T)
    boot = explained("canary:1", T + 26, T + 27, [MQ_DOWN, OWN])
    store, am = _Store([]), _Alertmanager(clock)
    store.records = [boot]
    notifier = _notifier(store, am, clock)
    spans: list[tuple[float, float | None]] = [(0.0, 150.0), (160.0, None)]
    for step in range(0, 300, 5):
        at = T + step
        if step == 100:  # its incident ranked again without RabbitMQ: decided afresh, no cause
            store.records = [explained("canary:1", T + 26, T + 100, [OWN])]
        store.alerts = _as_at(at, spans)
        clock.advance_to(at)
        await notifier.tick()
    sent = [a for a in am.firing if a.labels["alertname"] == "HavenControlPlane"]
    assert {a.labels["alert_id"] for a in sent} == {"cp1"}  # cp2 continues it: one alert
    assert all(a.labels.get("cause") == "rabbitmq" for a in sent)  # never paged as itself


def test_a_cleared_alert_muted_under_a_cause_is_resolved_once_that_cause_is_no_longer_sent() -> None:
    """Review R2-D1 on 7713704: a cleared raise kept firing for own_recur_s, with the labels of the cause it
    was muted under, outlived that cause's HavenRootCause (sent while its incident has a symptom in
    active_s): nothing inhibited it and Alertmanager paged a gate hold already over."""
    boot = explained("canary:1", T + 26, T + 27, [MQ_DOWN, OWN])  # RabbitMQ's incident
    cp = Alert("cp1", AlertKind.CONTROL_PLANE, WORDS, T, cleared_at=T + 880)  # held 880 s, sent muted
    while_muted = incident_alerts([boot], [cp], T + 890, SETTINGS, SETTLE, kept={"cp1": "rabbitmq"})
    assert [a.labels["cause"] for a in while_muted if a.labels["alertname"] == "HavenControlPlane"] == [
        "rabbitmq"
    ]  # its cause still paged: kept firing under it, muted
    now = T + 26 + SETTINGS.active_s + 10  # the boot has left the window: no HavenRootCause is sent
    batch = incident_alerts([boot], [cp], now, SETTINGS, SETTLE, kept={"cp1": "rabbitmq"})
    assert not [a for a in batch if a.labels.get("haven_role") == "cause"]
    assert not [a for a in batch if a.labels["alertname"] == "HavenControlPlane"]  # resolved, not unmuted
