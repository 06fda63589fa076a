"""Store: haven's state database, the only door to it.

The engine, the detector, the API and the CLI hold one Store each and call
it with domain dataclasses; nothing SQLAlchemy-typed goes in or comes out.
Each public method is one transaction; the queries themselves live in the
segments, hosts, notifications and alerts modules. Every database failure
arrives as haven.domain.errors: Conflict or NotFound for the request,
StoreUnavailable for the database.

The methods are synchronous. Async callers run them in a worker thread; a
file or PostgreSQL store pools one connection per thread, an in-memory store
has a single connection and serialises callers on a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine

from haven.diagnosis import Diagnosis, NodeEvent
from haven.diagnosis.records import ExplanationRecord, ExplanationState
from haven.domain.backups import BackupRecord, BackupState, RestoreRecord, RestoreState
from haven.domain.controlplane import ActionKind, ActionRecord, ActionState, ReplicaState
from haven.domain.errors import StoreUnavailable
from haven.domain.galera import GaleraAction
from haven.domain.ids import HostName, NotificationId, SegmentId
from haven.domain.incidents import (
    Alert,
    AlertKind,
    Notification,
    NotificationStatus,
    NotificationType,
    Segment,
    SegmentHost,
    Step,
)
from haven.domain.listing import PageQuery
from haven.domain.publishing import Delivery, OutboxCounts, PublishedEvent
from haven.store import (
    alerts,
    backups,
    canaries,
    claims,
    controlplane,
    explanations,
    fencing,
    hosts,
    migrate,
    notification_listing,
    notifications,
    outbox,
    segments,
    stateful,
)
from haven.store.engine import WRITE_OPTION, SqliteFootprint, Target, build_engine, parse
from haven.store.translate import translate_errors


class Store:
    """Segments, hosts, notifications with their steps, and alerts, in SQLite or PostgreSQL."""

    def __init__(self, engine: Engine, target: Target, wall_clock: Callable[[], float] = time.time) -> None:
        """Use Store.open; this wraps an engine whose schema is already at head."""
        self._engine = engine
        # Stamps segments' and hosts' created_at and updated_at: record times, not the engine's
        # (possibly virtual) clock, as Masakari's rows carry the database server's time.
        self._wall_clock = wall_clock
        self._target = target
        self._driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._lock: AbstractContextManager[Any] = threading.Lock() if target.memory else nullcontext()
        self._closed = False

    @classmethod
    def open(cls, url: str, *, wall_clock: Callable[[], float] = time.time) -> Store:
        """Open (creating or upgrading its schema to head) the database at ``url``.

        ``sqlite:///relative.db``, ``sqlite:////absolute/haven.db``, ``sqlite://``
        (memory) or ``postgresql+psycopg://user:password@host:port/dbname``.
        Raises StoreUnavailable, naming the URL without its password, when the
        database cannot be used; a failed open removes any file or folder it made.
        """
        target = parse(url)
        footprint = SqliteFootprint(target.sqlite_path) if target.sqlite_path is not None else None
        if footprint is not None:
            footprint.prepare(target)
        engine: Engine | None = None
        try:
            engine = build_engine(target)
            with translate_errors(target.label, target.hint, engine.dialect.loaded_dbapi.Error):
                migrate.upgrade_to_head(engine, target.label)
        except BaseException:
            if engine is not None:
                engine.dispose()
            if footprint is not None:
                footprint.undo()
            raise
        return cls(engine, target, wall_clock)

    def close(self) -> None:
        """Close every pooled connection; the store cannot be used afterwards."""
        self._closed = True
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._target.label!r})"

    @contextmanager
    def _leader_write(self, epoch: int | None) -> Iterator[Connection]:
        """A write transaction; with ``epoch`` one that a deposed leader cannot make (``Deposed``).

        ``epoch`` is the writing engine's leader epoch (None: not a coordinated leader's write,
        such as the API storing a monitor's notification, or the one engine of a single-node set-up).
        """
        with self._transaction(write=True) as conn:
            if epoch is not None:
                fencing.fence(conn, epoch)
            yield conn

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        if self._closed:
            raise StoreUnavailable(f"database {self._target.label!r} was closed", "open the store again")
        with (
            self._lock,
            translate_errors(self._target.label, self._target.hint, self._driver_error),
            self._engine.connect() as conn,
        ):
            if write:
                conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    # segments

    def create_segment(self, segment: Segment) -> Segment:
        with self._transaction(write=True) as conn:
            return segments.create(conn, segment, self._wall_clock())

    def get_segment(self, id_or_name: str) -> Segment:
        with self._transaction(write=False) as conn:
            return segments.get(conn, id_or_name)

    def list_segments(self) -> list[Segment]:
        """Every segment, ordered by name."""
        with self._transaction(write=False) as conn:
            return segments.list_all(conn)

    def list_segments_page(self, query: PageQuery, **filters: object) -> list[Segment]:
        """One page of the segments whose ``filters`` fields (recovery_method, service_type,
        enabled) have the given values, ordered, filtered and cut in SQL; MarkerNotFound for a
        marker that names none of them."""
        with self._transaction(write=False) as conn:
            return segments.list_page(conn, filters, query)

    def update_segment(self, segment_id: SegmentId, /, **changes: object) -> Segment:
        """Change the named fields (any but ``id`` and the times); enum fields accept their values."""
        with self._transaction(write=True) as conn:
            return segments.update_one(conn, segment_id, changes, self._wall_clock())

    def delete_segment(self, segment_id: SegmentId) -> None:
        """Delete a segment and its hosts; Conflict while a notification about it is unfinished."""
        with self._transaction(write=True) as conn:
            segments.delete_one(conn, segment_id)

    # hosts

    def add_host(self, host: SegmentHost) -> SegmentHost:
        with self._transaction(write=True) as conn:
            return hosts.add(conn, host, self._wall_clock())

    def add_hosts(self, new: Sequence[SegmentHost]) -> None:
        """Add many hosts at once: all of them or, on any Conflict or NotFound, none."""
        with self._transaction(write=True) as conn:
            hosts.add_many(conn, new, self._wall_clock())

    def get_host(self, name: HostName) -> SegmentHost:
        with self._transaction(write=False) as conn:
            return hosts.get(conn, name)

    def get_host_by_uuid(self, segment_id: SegmentId, uuids: Collection[str]) -> SegmentHost:
        """The segment's host with one of ``uuids`` (forms of one uuid); NotFound otherwise."""
        with self._transaction(write=False) as conn:
            return hosts.by_uuid(conn, segment_id, uuids)

    def list_hosts(self, segment_id: SegmentId | None = None) -> list[SegmentHost]:
        """Hosts of one segment (every host when None), ordered by name."""
        with self._transaction(write=False) as conn:
            return hosts.list_some(conn, segment_id)

    def list_hosts_page(
        self, segment_id: SegmentId, query: PageQuery, **filters: object
    ) -> list[SegmentHost]:
        """One page of the segment's hosts whose ``filters`` fields (name, type, control_attributes,
        reserved, on_maintenance) have the given values, in SQL; MarkerNotFound as for segments."""
        with self._transaction(write=False) as conn:
            return hosts.list_page(conn, segment_id, filters, query)

    def update_host(self, name: HostName, /, *, epoch: int | None = None, **changes: object) -> SegmentHost:
        """Change the named fields (``name`` renames, the uuid stays); a new ``segment_id`` must exist,
        a new name be free; ``updated_at`` becomes now.

        ``epoch``: a leader's write, refused with ``Deposed`` once a newer leader wrote (so for the
        methods below that take one too).
        """
        with self._leader_write(epoch) as conn:
            return hosts.update_one(conn, name, changes, self._wall_clock())

    def set_host_conditions(self, conditions: Mapping[HostName, str], *, epoch: int | None = None) -> None:
        """Record the detector's verdicts; hosts no longer in any segment are skipped."""
        with self._leader_write(epoch) as conn:
            hosts.set_conditions(conn, conditions)

    def delete_host(self, name: HostName) -> None:
        """Remove a host from its segment; Conflict while a notification about it is unfinished."""
        with self._transaction(write=True) as conn:
            hosts.delete_one(conn, name)

    # notifications and steps

    def create_notification(
        self, notification: Notification, steps: Sequence[Step] = (), *, epoch: int | None = None
    ) -> Notification:
        with self._leader_write(epoch) as conn:
            return notifications.create(conn, notification, steps)

    def get_notification(self, notification_id: NotificationId) -> Notification:
        with self._transaction(write=False) as conn:
            return notifications.get(conn, notification_id)

    def list_notifications(
        self,
        *,
        statuses: Collection[NotificationStatus] | None = None,
        type: NotificationType | None = None,
        hostname: HostName | None = None,
        limit: int | None = None,
        created_after: float | None = None,
    ) -> list[Notification]:
        """Matching notifications, newest ``created_at`` first."""
        with self._transaction(write=False) as conn:
            return notifications.list_some(conn, statuses, type, hostname, limit, created_after)

    def list_notifications_page(
        self,
        query: PageQuery,
        *,
        statuses: Collection[NotificationStatus] | None = None,
        type: NotificationType | None = None,
        generated_since: float | None = None,
        source_host_uuids: Collection[str] | None = None,
        unheld_uuid: Callable[[str], str],
    ) -> list[tuple[Notification, str | None]]:
        """One page of the notifications matching every filter given, ordered, filtered and cut in
        SQL, each with the uuid of the host now holding its hostname (None: no segment holds it).

        ``source_host_uuids``: the forms of one uuid; a notification matches when the host holding
        its name has one of them, or, when none does, ``unheld_uuid(hostname)`` is one of them (that
        is also its ``source_host_uuid`` sort value). MarkerNotFound for a marker naming none of them.
        """
        with self._transaction(write=False) as conn:
            return notification_listing.list_page(
                conn,
                query,
                statuses=statuses,
                type_=type,
                generated_since=generated_since,
                source_host_uuids=source_host_uuids,
                unheld_uuid=unheld_uuid,
            )

    def save_progress(
        self,
        notification_id: NotificationId,
        *,
        steps: Sequence[Step] = (),
        new_steps: Sequence[Step] = (),
        status: NotificationStatus | None = None,
        payload: Mapping[str, Any] | None = None,
        now: float,
        epoch: int | None = None,
    ) -> None:
        """Commit a recovery's progress atomically: all of it, or (on any error) none of it.

        With ``epoch`` (the leader's fencing token) the commit first passes the leader fence and
        claims the notification for that epoch in the same transaction; ``Deposed`` (nothing saved)
        if a newer epoch wrote to the store or holds the notification.

        ``steps`` replace the stored steps with the same seq (every field);
        ``new_steps`` are added; ``status`` and ``payload`` are set when given;
        ``updated_at`` becomes ``now``. NotFound for an unknown notification or
        step, Conflict for a new step whose seq is taken.
        """
        with self._leader_write(epoch) as conn:
            if epoch is not None:
                fencing.claim(conn, notification_id, epoch)
            notifications.save_progress(conn, notification_id, steps, new_steps, status, payload, now)

    def claim_unfinished(self, epoch: int) -> int:
        """A new leader takes every unfinished notification for ``epoch``; returns how many.

        It raises the leader fence too: from now on an older leader's writes are refused.
        ``Deposed`` if a newer leader already wrote.
        """
        with self._leader_write(epoch) as conn:
            return fencing.claim_unfinished(conn, epoch)

    def fence(self, epoch: int) -> None:
        """Check, and record, that ``epoch`` is the newest leader's; ``Deposed`` if a newer one wrote.

        For a leader about to act outside a recovery step (returning a host to service).
        """
        with self._leader_write(epoch):
            pass

    def leader_epoch(self) -> int:
        """The newest leader epoch that wrote to the store (0: no coordinated leader ever did)."""
        with self._transaction(write=False) as conn:
            return fencing.leader_epoch(conn)

    def owner_epoch(self, notification_id: NotificationId) -> int | None:
        """The newest leader epoch that committed a step of the notification (None: none yet)."""
        with self._transaction(write=False) as conn:
            return fencing.owner_epoch(conn, notification_id)

    def list_steps(self, notification_id: NotificationId) -> list[Step]:
        """The notification's steps ordered by seq; NotFound for an unknown notification."""
        with self._transaction(write=False) as conn:
            return notifications.list_steps(conn, notification_id)

    # custom recovery: an external system claims a notify-mode notification and reports on it

    def claim_notification(
        self, notification_id: NotificationId, owner: str, entry: Mapping[str, Any], *, now: float
    ) -> Notification:
        """``owner`` takes an open notify-mode notification (status running), ``entry`` is audited.

        Claiming again as the same owner changes nothing; Conflict when another owner holds it,
        when it is not a notify-mode one, or when it is no longer open; NotFound for an unknown id.
        """
        with self._transaction(write=True) as conn:
            return claims.claim(conn, notification_id, owner, entry, now)

    def report_on_claim(
        self,
        notification_id: NotificationId,
        owner: str,
        entry: Mapping[str, Any],
        *,
        status: NotificationStatus | None = None,
        payload: Mapping[str, Any] | None = None,
        now: float,
    ) -> Notification:
        """Append ``entry`` to the audit trail of a notification ``owner`` claimed (Conflict otherwise)."""
        with self._transaction(write=True) as conn:
            return claims.report(conn, notification_id, owner, entry, status, payload, now)

    # alerts

    def raise_alert(self, alert: Alert, *, epoch: int | None = None) -> Alert:
        """Record ``alert``, or return the uncleared one about the same kind, segment and host."""
        with self._leader_write(epoch) as conn:
            return alerts.raise_one(conn, alert)

    def clear_alerts(
        self,
        *,
        now: float,
        kind: AlertKind | None = None,
        segment_id: SegmentId | None = None,
        host: HostName | None = None,
        epoch: int | None = None,
    ) -> int:
        """Clear the uncleared alerts matching every given filter; returns how many."""
        with self._leader_write(epoch) as conn:
            return alerts.clear(conn, now, kind, segment_id, host)

    def list_alerts(self, *, active_only: bool = True, cleared_since: float | None = None) -> list[Alert]:
        """Alerts, newest first; only uncleared ones (and those cleared at or after ``cleared_since``)
        unless ``active_only`` is False."""
        with self._transaction(write=False) as conn:
            return alerts.list_some(conn, active_only, cleared_since)

    # the outbox of published events (haven.notify)

    def append_event(self, event: PublishedEvent, sinks: Sequence[str]) -> bool:
        """Keep ``event`` until each of ``sinks`` has it; False (nothing changed) if its key is known."""
        with self._transaction(write=True) as conn:
            return outbox.append(conn, event, sinks)

    def due_deliveries(self, now: float, sinks: Collection[str], limit: int = 100) -> list[Delivery]:
        """Pending deliveries to ``sinks`` due by ``now``, oldest event first."""
        with self._transaction(write=False) as conn:
            return outbox.due(conn, now, sinks, limit)

    def next_delivery_at(self, sinks: Collection[str]) -> float | None:
        """When the earliest pending delivery to ``sinks`` is due; None when nothing is pending."""
        with self._transaction(write=False) as conn:
            return outbox.next_due(conn, sinks)

    def record_delivery(self, delivery: Delivery) -> None:
        """Store the outcome of an attempt: attempts, next time, delivered or abandoned, last error."""
        with self._transaction(write=True) as conn:
            outbox.record(conn, delivery)

    def abandon_deliveries(self, *, except_sinks: Collection[str], reason: str) -> int:
        """Give up pending deliveries to every sink not in ``except_sinks``; returns how many."""
        with self._transaction(write=True) as conn:
            return outbox.abandon_other_sinks(conn, except_sinks, reason)

    def prune_outbox(self, keep: int) -> int:
        """Delete events every sink has or refused, except the newest ``keep``; returns how many."""
        with self._transaction(write=True) as conn:
            return outbox.prune(conn, keep)

    def list_deliveries(self, event_type: str | None = None) -> list[Delivery]:
        """Every kept delivery (of one event type when given), oldest event first."""
        with self._transaction(write=False) as conn:
            return outbox.list_all(conn, event_type)

    def outbox_counts(self) -> OutboxCounts:
        with self._transaction(write=False) as conn:
            return outbox.counts(conn)

    # ---- the control plane's actions (haven.controlplane) -------------------------------------------

    def issue_action(self, record: ActionRecord, *, epoch: int | None = None) -> None:
        """Commit an action's intent before its effect; Conflict if the replica has an unfinished one."""
        with self._leader_write(epoch) as conn:
            controlplane.issue(conn, record)

    def finish_action(
        self, action_id: str, state: ActionState, now: float, error: str = "", *, epoch: int | None = None
    ) -> None:
        """Commit an issued action's outcome (done or failed)."""
        with self._leader_write(epoch) as conn:
            controlplane.finish(conn, action_id, state, now, error)

    def unfinished_actions(self) -> list[ActionRecord]:
        with self._transaction(write=False) as conn:
            return controlplane.unfinished(conn)

    def actions_since(self, after: float) -> list[ActionRecord]:
        """Every action created at or after ``after`` (the planner's restart history), oldest first."""
        with self._transaction(write=False) as conn:
            return controlplane.since(conn, after)

    def latest_actions(self, kinds: tuple[ActionKind, ...]) -> list[ActionRecord]:
        """The newest action of one of ``kinds`` on each replica."""
        with self._transaction(write=False) as conn:
            return controlplane.latest_per_replica(conn, kinds)

    def record_replicas(self, states: Sequence[ReplicaState], *, epoch: int | None = None) -> None:
        """Replace the replicas' latest observed states (the leader's pass) with ``states``."""
        with self._leader_write(epoch) as conn:
            controlplane.replace_replicas(conn, states)

    def list_replicas(self) -> list[ReplicaState]:
        with self._transaction(write=False) as conn:
            return controlplane.list_replicas(conn)

    # ---- diagnosis: evidence and explanations (haven.explain) ---------------------------------------

    def keep_evidence(self, events: Mapping[str, NodeEvent], received_at: float) -> int:
        """Keep each event under its key (a notification's message id); a known key is skipped."""
        with self._transaction(write=True) as conn:
            return explanations.keep_evidence(conn, events, received_at)

    def evidence_between(
        self, start: float, end: float, received_after: float | None = None
    ) -> list[NodeEvent]:
        """Kept events from ``start`` to ``end`` (inclusive), oldest first; with ``received_after``, only
        those kept after that time."""
        with self._transaction(write=False) as conn:
            return explanations.evidence_between(conn, start, end, received_after)

    def prune_evidence(self, before: float) -> int:
        with self._transaction(write=True) as conn:
            return explanations.prune_evidence(conn, before)

    def open_explanation(self, record: ExplanationRecord) -> bool:
        """Record a symptom to explain (pending); False, and nothing changed, if its key is known."""
        with self._transaction(write=True) as conn:
            return explanations.open_one(conn, record)

    def finish_explanation(self, key: str, diagnosis: Diagnosis, notes: tuple[str, ...], now: float) -> None:
        """Store a pending symptom's ranked explanations (NotFound unless it is pending)."""
        with self._transaction(write=True) as conn:
            explanations.finish(conn, key, diagnosis, notes, now)

    def refine_explanation(self, key: str, diagnosis: Diagnosis, notes: tuple[str, ...], now: float) -> None:
        """Replace an explained record's ranking with ``diagnosis``, explained at ``now`` (NotFound unless
        it is done): its symptom ranked again with evidence kept after it was first explained."""
        with self._transaction(write=True) as conn:
            explanations.refine(conn, key, diagnosis, notes, now)

    def get_explanation(self, key: str) -> ExplanationRecord:
        with self._transaction(write=False) as conn:
            return explanations.get(conn, key)

    def list_explanations(
        self, *, state: ExplanationState | None = None, limit: int = 100
    ) -> list[ExplanationRecord]:
        """Explanation records, newest first."""
        with self._transaction(write=False) as conn:
            return explanations.list_some(conn, state, limit)

    def known_explanations(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` already have a record."""
        with self._transaction(write=False) as conn:
            return explanations.known(conn, list(keys))

    # ---- synthetic checks (haven.canary) ------------------------------------------------------------

    def save_canary(self, kind: str, doc: Mapping[str, Any]) -> None:
        """Insert or replace one canary run or probe (``doc`` as haven.canary writes it, with an ``id``)."""
        with self._transaction(write=True) as conn:
            canaries.save(conn, kind, doc)

    def list_canaries(
        self, kind: str, *, states: Collection[str] | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Canary runs (or probes) of ``kind``, newest first."""
        with self._transaction(write=False) as conn:
            return canaries.list_some(conn, kind, states, limit)

    def prune_canaries(self, before: float) -> int:
        """Delete finished runs and probes started before ``before``."""
        with self._transaction(write=True) as conn:
            return canaries.prune(conn, before)

    # ---- backups, restores and restore drills (haven.backups) ---------------------------------------

    def issue_backup(self, record: BackupRecord, *, epoch: int | None = None) -> None:
        """Commit a backup's intent before its create call; Conflict if its window or server is taken."""
        with self._leader_write(epoch) as conn:
            backups.issue(conn, record)

    def save_backup(
        self, record: BackupRecord, was: Collection[BackupState], *, epoch: int | None = None
    ) -> None:
        """Commit a backup's new state (an outcome, or the intent to delete); Conflict if it moved on."""
        with self._leader_write(epoch) as conn:
            backups.save(conn, record, was)

    def get_backup(self, backup_id: str) -> BackupRecord:
        with self._transaction(write=False) as conn:
            return backups.get(conn, backup_id)

    def backups_relevant(self, deleted_since: float) -> list[BackupRecord]:
        """Backups not deleted, and those deleted or failed since ``deleted_since`` (the planner's view)."""
        with self._transaction(write=False) as conn:
            return backups.relevant(conn, deleted_since)

    def backups_of(self, server_id: str) -> list[BackupRecord]:
        with self._transaction(write=False) as conn:
            return backups.of_server(conn, server_id)

    def issue_restore(self, record: RestoreRecord, *, epoch: int | None = None) -> None:
        with self._leader_write(epoch) as conn:
            backups.issue_restore(conn, record)

    def save_restore(
        self, record: RestoreRecord, was: Collection[RestoreState], *, epoch: int | None = None
    ) -> None:
        with self._leader_write(epoch) as conn:
            backups.save_restore(conn, record, was)

    def list_restores(self, *, unfinished: bool = False, since: float | None = None) -> list[RestoreRecord]:
        with self._transaction(write=False) as conn:
            return backups.restores_list(conn, unfinished=unfinished, since=since)

    def backup_first_seen(self) -> dict[str, float]:
        """When the backup runner first saw each server it protects (server id -> time)."""
        with self._transaction(write=False) as conn:
            return backups.first_seen(conn)

    def note_backup_first_seen(
        self, seen: Mapping[str, float], gone: Collection[str], *, epoch: int | None = None
    ) -> dict[str, float]:
        """Record servers newly protected (a time already stored is kept) and forget those no longer
        protected, in one transaction; returns the stored time of each of ``seen``'s servers."""
        with self._leader_write(epoch) as conn:
            return backups.note_first_seen(conn, seen, gone)

    # ---- Galera's recovery steps (haven.stateful.galera_recovery) ------------------------------------

    def issue_galera_action(self, action: GaleraAction, *, epoch: int | None = None) -> None:
        """Commit a step's intent before its effect; Conflict if its cluster has an unfinished step."""
        with self._leader_write(epoch) as conn:
            stateful.issue(conn, action)

    def finish_galera_action(
        self,
        action_id: str,
        state: str,
        now: float,
        error: str = "",
        *,
        position: str | None = None,
        epoch: int | None = None,
    ) -> None:
        """Commit an issued step's outcome (``done`` or ``failed``, and a read's positions); NotFound if
        it is not unfinished."""
        with self._leader_write(epoch) as conn:
            stateful.finish(conn, action_id, state, now, error, position)

    def unfinished_galera_actions(self, cluster: str) -> list[GaleraAction]:
        with self._transaction(write=False) as conn:
            return stateful.unfinished(conn, cluster)

    def galera_actions_since(self, cluster: str, after: float = 0.0) -> list[GaleraAction]:
        """The cluster's steps created at or after ``after``, oldest first."""
        with self._transaction(write=False) as conn:
            return stateful.since(conn, cluster, after)
