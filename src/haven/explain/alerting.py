"""haven's incidents sent to Alertmanager: one batch, causes first, again on a timer and at every change.

Run by haven.explain.explainer's loop (every ``poll_s``) when ``[diagnosis] alertmanager_url`` is set.
Each ``tick`` reads the recent explanations and haven's active alerts from the store, words them as
haven.explain.incidents does, and posts them to Alertmanager when they changed or ``resend_s`` passed.

Alertmanager's inhibition misfires when the target (a symptom) arrives before its source (the cause),
or after Alertmanager restarts (it held the symptom, not yet the cause: the symptom is notified). haven
works around both without changing Alertmanager: the cause and its symptoms always travel in the same
request, the cause first, and the whole set is sent again every ``resend_s`` (each alert fires until
``ends_after_s`` after its send; a restarted Alertmanager has everything back within ``resend_s``). What
haven sent before and no longer has (a symptom older than the incident window, a cleared alert) is sent
once more with its end set to now: resolved.

An explanation is sent once it has held ``settle_s`` (its ``explained_at`` that long ago): the canary hands a
symptom to the explainer as soon as its check fails and ranks it again after the round's look
(haven.explain.explainer's ``refine``, which moves ``explained_at`` when the first causes change), so a
page never names the interim cause the look then corrects (a list that timed out first blamed on Nova's
API, then on the database behind it). Once sent, an explanation is not held back again when it is
refined later (its alerts would be sent resolved and fire anew: a second page for one incident); its new
ranking is sent at once. haven's own control-plane alerts keep the cause they were first sent under
while they last (``kept``), and so does a raise that continues a cleared one (the store's alerts
cleared within the incident window are read for it), sent under the ``alert_id`` the first sent raise
of it was sent under (``named``: Alertmanager sees one alert, paged once); these memories are this
process's (a restarted haven decides again).

A send that fails (Alertmanager down) is logged and retried at the next tick; it never stops the explainer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from haven.diagnosis.records import ExplanationState
from haven.domain.clock import Clock
from haven.domain.errors import HavenError
from haven.domain.incidents import AlertKind
from haven.explain.incidents import IncidentSettings, incident_alerts, own_names
from haven.notify.alertmanager import Alertmanager, AmAlert
from haven.store import Store

_log = logging.getLogger(__name__)
Fingerprint = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class AlertingSettings:
    url: str = ""  # Alertmanager's URL ("" for none)
    resend_s: float = 60.0
    incidents: IncidentSettings = field(default_factory=IncidentSettings)
    timeout_s: float = 5.0
    settle_s: float = 0.0  # an explanation this recent is not sent yet (it may still be refined)

    def __post_init__(self) -> None:
        if self.resend_s <= 0 or self.resend_s * 2 > self.incidents.ends_after_s:
            raise ValueError("resend_s must be positive and at most half of ends_after_s")
        if self.settle_s < 0:
            raise ValueError("settle_s must not be negative")


class AlertmanagerNotifier:
    def __init__(
        self, store: Store, clock: Clock, settings: AlertingSettings, alertmanager: Alertmanager | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._am = alertmanager or Alertmanager(settings.url, settings.timeout_s)
        self._sent: dict[Fingerprint, AmAlert] = {}
        self._sent_at: float | None = None
        # What a send released, kept while its incident window lasts: a record refined after it was sent
        # (``refine`` moves ``explained_at``) stays in the batch instead of settling again, which sent its
        # alerts resolved and fired them anew (a page per refine); haven's own alerts' causes as sent
        # (their labels are their identity: decided once, haven.explain.incidents).
        self._released: dict[str, float] = {}  # record id -> its symptom's time
        self._kept: dict[str, str] = {}  # haven's alert id -> the cause it was sent under ("" as itself)
        self._named: dict[str, str] = {}  # a raise sent -> the alert_id it was sent under (its first's)
        self._pending: tuple[dict[str, float], dict[str, str], dict[str, str]] = ({}, {}, {})
        self.sends = 0  # batches posted (for tests and logs)

    async def tick(self) -> list[AmAlert] | None:
        """Send when something changed or ``resend_s`` passed; the batch sent, or None."""
        now = self._clock.now()
        wanted = await self.wanted(now)
        changed = {a.fingerprint: _words(a) for a in wanted} != {f: _words(a) for f, a in self._sent.items()}
        due = self._sent_at is None or now - self._sent_at >= self._settings.resend_s
        if not changed and not due:
            return None
        return await self.send(wanted, now)

    async def wanted(self, now: float) -> list[AmAlert]:
        start = now - self._settings.incidents.active_s
        records = await asyncio.to_thread(self._store.list_explanations, limit=1000)
        # with those cleared lately: a control-plane alert raised again continues them (incident_alerts)
        incidents = self._settings.incidents
        recall = now - max(incidents.active_s, incidents.own_recur_s)
        alerts = await asyncio.to_thread(self._store.list_alerts, active_only=True, cleared_since=recall)
        settled = now - self._settings.settle_s
        recent = [
            r for r in records
            if r.symptom.at >= start
            and (r.id in self._released or r.explained_at is None or r.explained_at <= settled)
        ]  # fmt: skip
        listed = {a.id for a in alerts}
        named = {r: n for r, n in self._named.items() if r in listed}
        kept = {i: c for i, c in self._kept.items() if i in listed or i in named.values()}
        wanted = incident_alerts(recent, alerts, now, incidents, self._settings.settle_s, kept, named)
        # only what was ranked (DONE): a record still pending has sent nothing and must settle first
        released = {r.id: r.symptom.at for r in recent if r.state is ExplanationState.DONE}
        decided = {
            a.labels["alert_id"]: a.labels.get("cause", "")
            for a in wanted
            if "alert_id" in a.labels and a.labels.get("kind") == AlertKind.CONTROL_PLANE.value
        }
        # the raises sent, each under its lasting alert's first sent alert_id (a flapping gate is one alert)
        every = sorted(alerts, key=lambda a: (a.raised_at, a.id))
        names = own_names(every, incidents.own_recur_s, kept, named)
        sent_names = {**named, **{r: n for r, n in names.items() if n in decided}}
        # a cleared one's too: what continues it keeps it
        self._pending = (released, {**kept, **decided}, sent_names)
        return wanted

    async def send(self, wanted: Sequence[AmAlert], now: float) -> list[AmAlert] | None:
        keep = {a.fingerprint for a in wanted}
        gone = [replace(a, ends_at=now) for f, a in sorted(self._sent.items()) if f not in keep]
        batch = [*wanted, *gone]
        try:
            await self._am.post(batch)
        except HavenError as exc:
            _log.warning("alerts not sent to Alertmanager (again at the next tick): %s", exc)
            return None
        self._sent = {a.fingerprint: a for a in wanted}
        self._sent_at = now
        released, decided, self._named = self._pending
        start = now - self._settings.incidents.active_s
        self._released = {i: at for i, at in {**self._released, **released}.items() if at >= start}
        self._kept = decided
        self.sends += 1
        return batch


def _words(alert: AmAlert) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(alert.annotations.items()))
