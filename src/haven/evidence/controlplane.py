"""The control plane's observations as the explainer's evidence: failed probes, stopped units, new processes.

Called by haven.controlplane.reconciler after each pass's unit reads and probes (it stays the one that
observes; this only words what it saw). Pure and stateful per replica: it turns *transitions* into
ranker events keyed for ``Store.keep_evidence``, so a pass where nothing changed keeps nothing.

- A probe that fails (the first failure after a pass, or the first result seen) is an ERROR of the
  service in the scope ``cp:<kind>:<host>`` (its own check on that replica). It is dated at the
  replica's last passing result when there is one (the fault began after it): a hung server's probe
  ends by its timeout seconds after the fault began, later than the first symptoms of the same fault.
  Only the current process's passes count (the reconciler runs no probe while a unit is down or
  unreadable): a unit seen not running, or a new invocation, forgets them, and the date is never before
  the process's start (``active_since``); without a pass of its own, the failed probe's start.
  A failure that goes on is kept again every ``repeat_s``, so it stays in the ranker's window.
- The same probe passing again is HEALTHY in that scope: it ends the failure for later symptoms.
- A unit seen running, then not (killed, failed, stopped) is a DOWN of the service in the scope
  ``cp:unit:<host>``; running again is HEALTHY there.
- The first passing probe and the first running unit seen (a new reconciler: a new term, haven started
  again) are HEALTHY too: they end what an earlier term kept and did not see end.
- A new process (its unit's invocation changed, or found at the first look started less than
  ``settle_s`` ago) is a RESTART dated at its start time (``active_since``), scope ``cp:start:<host>``;
  once the process has run ``settle_s`` with its probe passing (or with no probe), a HEALTHY in that
  scope ends it: a restart disturbs what happens around it, not every symptom of the next ten minutes.

A probe's failure also ends when another check does the same work through the cloud's endpoint and
passes after it (``same_work_seen``), but only while that probe failed on every replica at once: the
canary's token probe issuing a token is the Keystone probe's work, so a Keystone probe that timed out on
a loaded host (the only replica, or all of them: the prober's side) while the canary got its token is no
cause of what fails later (bench/explain.py, hosts-powered-off, 2026-12-06: Keystone ranked over every
compute down). One hung replica among healthy ones is not vouched for: HAProxy sent the canary to another.
For a kind in SAME_WORK, a pass whose probes of that kind all fail keeps an ERROR in the scope
``cp:<kind>:*`` (EVERY; kept again every ``repeat_s``), and a HEALTHY there once one passes again.

Restarts haven made, and systemd's own that haven counted (NRestarts), are also its actions, read by
haven.explain.own; the same kind on the same node counts once in the ranking.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from haven.diagnosis import EvidenceKind, NodeEvent
from haven.diagnosis.words import clock
from haven.domain.controlplane import ProbeResult, ServiceName, UnitActive, UnitStatus
from haven.domain.ids import HostName

_RUNNING = (UnitActive.ACTIVE, UnitActive.RELOADING, UnitActive.ACTIVATING)
_SCOPE_LENGTH = 64  # the evidence table's scope column
_SCOPE_HASH = 8  # hex characters of the full scope's sha1 that end a scope cut to the column


@dataclass(frozen=True, slots=True)
class Probed:
    """One probe the reconciler ran this pass: which replica, which kind of check, when it began."""

    service: str
    host: str
    kind: str  # haven.domain.controlplane.ProbeKind's value: "sql", "amqp", "keystone", "http"...
    started_at: float
    result: ProbeResult


@dataclass(slots=True)
class _Replica:
    last_ok_at: float | None = None  # the current process's last passing probe's finish
    failing_since: float | None = None  # the kept failure's date (None: not failing)
    failure_kept_at: float = 0.0
    running: bool | None = None  # None: never seen
    invocation: str = ""
    started_at: float | None = None  # the current process's start, while its RESTART is not ended
    active_since: float | None = None  # the current process's start as last read (a date's floor)


# Another check that does a control-plane probe's work, as (node, that check's scope) -> the probe's kind:
# its pass (a HEALTHY in its own scope) shows the node doing that work, whichever replica answered.
SAME_WORK: Mapping[tuple[str, str], str] = {("keystone", "probe:token"): "keystone"}
EVERY = "*"  # the host of ``cp:<kind>:*``: that kind's probes failing on every replica probed


def same_work_seen(events: Iterable[NodeEvent]) -> list[NodeEvent]:
    """For each pass of a check in SAME_WORK at a time the probe of that kind was failing on every
    replica (its ``cp:<kind>:*`` scope's last event before then an ERROR), a HEALTHY in every
    ``cp:<kind>:...`` scope of that node among ``events``, at the pass's time: what ends those probes'
    earlier failures in the ranking. A replica failing alone is not ended: the pass came from another."""
    events = list(events)
    scopes: dict[tuple[str, str], set[str]] = {}
    for event in events:
        for (node, _), kind in SAME_WORK.items():
            if event.node == node and event.scope.startswith(f"cp:{kind}:"):
                scopes.setdefault((node, kind), set()).add(event.scope)
    found = []
    for event in events:
        work = SAME_WORK.get((event.node, event.scope))
        if event.kind is not EvidenceKind.HEALTHY or work is None:
            continue
        if not _failing_at(events, event.node, scope(work, EVERY), event.at):
            continue
        for where in sorted(scopes.get((event.node, work), ())):
            said = f"{event.detail} (the {work} probe's work, done)"
            found.append(NodeEvent(event.node, EvidenceKind.HEALTHY, event.at, said, where))
    return found


def _failing_at(events: Sequence[NodeEvent], node: str, where: str, at: float) -> bool:
    """Whether the last event of ``node`` in scope ``where`` at or before ``at`` is hard evidence."""
    before = [e for e in events if e.node == node and e.scope == where and e.at <= at]
    return bool(before) and max(before, key=lambda e: e.at).kind is not EvidenceKind.HEALTHY


def scope(what: str, host: str) -> str:
    """``cp:<what>:<host>``; one longer than the column keeps a prefix and a hash of the whole (stable,
    so two long host names sharing their first characters never end each other's evidence)."""
    full = f"cp:{what}:{host}"
    if len(full) <= _SCOPE_LENGTH:
        return full
    digest = hashlib.sha1(full.encode(), usedforsecurity=False).hexdigest()[:_SCOPE_HASH]
    return f"{full[: _SCOPE_LENGTH - _SCOPE_HASH - 1]}~{digest}"


class ControlPlaneEvidence:
    """Per replica, what was last seen; ``observe`` returns the new events of one pass, keyed."""

    def __init__(self, repeat_s: float = 300.0, settle_s: float = 30.0) -> None:
        if repeat_s <= 0 or settle_s < 0:
            raise ValueError("repeat_s must be positive and settle_s not negative")
        self._repeat_s = repeat_s
        self._settle_s = settle_s
        self._replicas: dict[tuple[str, str], _Replica] = {}
        self._every: dict[tuple[str, str], float] = {}  # (service, kind) failing on every replica: kept at

    def observe(
        self,
        units: Mapping[tuple[ServiceName, HostName], UnitStatus | None],
        probed: Sequence[Probed],
        now: float,
    ) -> dict[str, NodeEvent]:
        """The events of one pass: ``units`` keyed (service, host) (None: unreadable this pass)."""
        events: dict[str, NodeEvent] = {}
        for (service, host), status in sorted(units.items()):
            if status is not None and status.loaded:
                self._unit(service, host, status, now, events)
        for one in sorted(probed, key=lambda p: (p.result.at, p.service, p.host)):
            self._probe(one, now, events)
        self._every_replica(probed, now, events)
        for (name, where), replica in sorted(self._replicas.items()):
            self._settled(name, where, replica, now, events)
        return events

    def _unit(
        self, service: str, host: str, status: UnitStatus, now: float, events: dict[str, NodeEvent]
    ) -> None:
        replica = self._replicas.setdefault((service, host), _Replica())
        running = status.active in _RUNNING
        where = scope("unit", host)
        if replica.running is True and not running:
            said = f"its unit on {host} is {status.active.value}" + (
                f" ({status.sub_state})" if status.sub_state else ""
            )
            _put(events, NodeEvent(service, EvidenceKind.DOWN, now, said, where))
        elif replica.running is not True and running:  # again, or at first sight (after a new term)
            _put(events, NodeEvent(service, EvidenceKind.HEALTHY, now, f"running on {host}", where))
        first = replica.running is None
        replica.running = running
        if not running:
            _forget_probes(replica)  # no probe runs while it is down: its next process starts afresh
            return
        replica.active_since = status.active_since
        if not status.invocation_id or status.invocation_id == replica.invocation:
            return
        replica.invocation = status.invocation_id
        _forget_probes(replica)  # a new process: the old one's passes say nothing about it
        started = status.active_since if status.active_since is not None else now
        if first and now - started >= self._settle_s:
            return  # running since before haven looked: no news
        replica.started_at = started
        how = "a new process" if not first else "a process started shortly before haven looked"
        said = f"{how} on {host}, started at {clock(started)}"
        _put(events, NodeEvent(service, EvidenceKind.RESTART, started, said, scope("start", host)))

    def _probe(self, one: Probed, now: float, events: dict[str, NodeEvent]) -> None:
        replica = self._replicas.setdefault((one.service, one.host), _Replica())
        where = scope(one.kind, one.host)
        result = one.result
        if result.ok:
            if replica.failing_since is not None or replica.last_ok_at is None:
                said = f"its {one.kind} probe on {one.host} passes: {result.detail}"
                _put(events, NodeEvent(one.service, EvidenceKind.HEALTHY, result.at, said, where))
            replica.failing_since = None
            replica.last_ok_at = result.at
            return
        if replica.failing_since is None:
            since = replica.last_ok_at if replica.last_ok_at is not None else one.started_at
            if replica.active_since is not None:
                since = max(since, replica.active_since)  # never before this process started
            since = min(since, one.started_at)
            replica.failing_since = since
            replica.failure_kept_at = now
            passed = f", last passed at {clock(since)}" if since == replica.last_ok_at else ""
            said = (
                f"its {one.kind} probe on {one.host} failed at {clock(one.started_at)}{passed}: "
                f"{result.detail}"
            )
            _put(events, NodeEvent(one.service, EvidenceKind.ERROR, since, said, where))
        elif now - replica.failure_kept_at >= self._repeat_s:
            replica.failure_kept_at = now
            said = (
                f"its {one.kind} probe on {one.host} still fails (since {clock(replica.failing_since)}): "
                f"{result.detail}"
            )
            _put(events, NodeEvent(one.service, EvidenceKind.ERROR, now, said, where))

    def _every_replica(self, probed: Sequence[Probed], now: float, events: dict[str, NodeEvent]) -> None:
        """For a kind in SAME_WORK: its probes failing on every replica probed this pass and every replica
        of the service seen running (the only one, or all: the prober's side) is an ERROR in
        ``cp:<kind>:*``; one passing again, a HEALTHY there."""
        groups: dict[tuple[str, str], list[Probed]] = {}
        for one in probed:
            if one.kind in SAME_WORK.values():
                groups.setdefault((one.service, one.kind), []).append(one)
        for (service, kind), ones in sorted(groups.items()):
            where = scope(kind, EVERY)
            running = {h for (name, h), r in self._replicas.items() if name == service and r.running}
            replicas = sorted({p.host for p in ones} | running)  # one running but not probed: not "every"
            since = [self._replicas[(service, h)].failing_since for h in replicas]
            kept = self._every.get((service, kind))
            if all(s is not None for s in since):
                if kept is None or now - kept >= self._repeat_s:
                    hosts = ", ".join(replicas)
                    at = max(s for s in since if s is not None) if kept is None else now
                    said = f"its {kind} probes fail on every replica probed ({hosts})"
                    _put(events, NodeEvent(service, EvidenceKind.ERROR, at, said, where))
                    self._every[(service, kind)] = now
            elif kept is not None:
                del self._every[(service, kind)]
                at = min(p.result.at for p in ones if p.result.ok) if any(p.result.ok for p in ones) else now
                said = f"its {kind} probe passes on a replica again"
                _put(events, NodeEvent(service, EvidenceKind.HEALTHY, at, said, where))

    def _settled(
        self, service: str, host: str, replica: _Replica, now: float, events: dict[str, NodeEvent]
    ) -> None:
        started = replica.started_at
        if started is None or now - started < self._settle_s:
            return
        if replica.failing_since is not None or replica.running is False:
            return  # not settled: the restart's disturbance goes on
        replica.started_at = None
        said = f"running {now - started:.0f} s since its start on {host}"
        _put(events, NodeEvent(service, EvidenceKind.HEALTHY, now, said, scope("start", host)))


def _forget_probes(replica: _Replica) -> None:
    replica.last_ok_at = None
    replica.failing_since = None


def _put(events: dict[str, NodeEvent], event: NodeEvent) -> None:
    events[f"cp:{event.node}:{event.scope}:{event.kind.value}:{event.at:.6f}"] = event
