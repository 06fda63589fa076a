"""A control-plane alert that clears and comes back is one lasting alert (haven.explain.incidents), pure.

Review R1-R3: haven's control-plane alert (the PROCESS gate's hold: many nova-computes silent while their
hosts beat) waits ``own_hold_s`` after its raise for a cause before it is sent. The detector raises a new
alert (a new id) each time the gate holds again, so a gate holding for 60 s, releasing for 10 s, holding
again... was never sent: each raise cleared before its own hold ended. A raise within ``own_recur_s`` of
the last one's clear continues it: its first raise is its raise, the hold ends 90 s after it, and the one
raised then is paged (or muted under the cause found by then, or under the cause its predecessor was sent
with: a recurrence never pages what was muted).
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
    third = control_plane(incident_alerts([], alerts, T + 141, SETTINGS))
    assert third is not None and third.labels["alert_id"] == "cp3"
    assert third.annotations["recurring"].startswith("raised 3 times since ")


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
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.firing: list[AmAlert] = []

    async def post(self, batch: list[AmAlert]) -> None:
        self.firing += [a for a in batch if a.ends_at > self.clock.now()]


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
    assert paged  # before: none of the four was ever sent
    assert min(paged) == "cp2"


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
    assert {a.labels["alert_id"] for a in sent} == {"cp1", "cp2"}
    assert all(a.labels.get("cause") == "rabbitmq" for a in sent)  # never paged as itself
