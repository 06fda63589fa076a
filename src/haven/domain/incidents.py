"""Masakari's vocabulary: segments, their hosts, notifications and their steps, plus alerts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from haven.domain.ids import HostName, NotificationId, SegmentId

# Keys haven itself adds to a notification's payload (the segment's mode when it opened, the recovery's
# summary when it ends); a Masakari client gets its payload back without them.
RECOVERY_MODE_KEY = "recovery_mode"
RECOVERY_SUMMARY_KEY = "recovery"
# Who opened the notification: "haven" (its own detector) or "external" (the API: a monitor, an operator).
SOURCE_KEY = "haven_source"
# When haven's detector last heard the host it found dead (its last heartbeat; epoch seconds).
SILENT_SINCE_KEY = "silent_since"
HAVEN_PAYLOAD_KEYS = frozenset({RECOVERY_MODE_KEY, RECOVERY_SUMMARY_KEY, SOURCE_KEY, SILENT_SINCE_KEY})
# The kind of step that records what an external system reported (claim, progress, finish, fail).
EXTERNAL_STEP = "external"


class RecoveryMethod(StrEnum):
    AUTO = "auto"
    RESERVED_HOST = "reserved_host"
    AUTO_PRIORITY = "auto_priority"
    RH_PRIORITY = "rh_priority"


class SegmentMode(StrEnum):
    """What haven does about a failure in a segment."""

    AUTOMATIC = "automatic"  # fence, evacuate, verify
    NOTIFY = "notify"  # record and publish the failure; an external system recovers (custom recovery)
    DRY_RUN = "dry_run"  # decide and plan, then say what would have been done, doing nothing


class NotificationType(StrEnum):
    COMPUTE_HOST = "COMPUTE_HOST"
    VM = "VM"
    PROCESS = "PROCESS"


class NotificationStatus(StrEnum):
    NEW = "new"
    RUNNING = "running"
    ERROR = "error"
    FAILED = "failed"
    IGNORED = "ignored"
    FINISHED = "finished"

    @property
    def is_terminal(self) -> bool:
        return self in {NotificationStatus.FAILED, NotificationStatus.IGNORED, NotificationStatus.FINISHED}


# A notification in one of these is still being handled: a second one for the same failure is a
# duplicate, its segment and host may not be deleted, and a restarted engine resumes it.
UNFINISHED_STATUSES = (NotificationStatus.NEW, NotificationStatus.RUNNING, NotificationStatus.ERROR)


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"  # intent committed, effect may or may not have happened
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class AlertKind(StrEnum):
    GATE_HOLD = "gate_hold"
    ISOLATED = "isolated"
    AGENT_DOWN = "agent_down"
    FENCE_FAILED = "fence_failed"
    UNPLACED = "unplaced"
    PROCESS_DOWN = "process_down"
    RECOVERY_FAILED = "recovery_failed"
    CRASH_LOOP = "crash_loop"  # a VM restarted too often in a window was left stopped
    GATE_RELEASED = "gate_released"  # an operator released the gate for this host (the audit record)
    CONTROL_PLANE = "control_plane"  # many nova-computes down while their hosts beat: nothing disabled
    SAFETY_HOLD = "safety_hold"  # the safety policy holds (or refused) a fence, evacuation or disable
    STEP_ERROR = "step_error"  # a step failed with an unexpected error (a bug): that step only
    # The control plane (haven.controlplane): the alert's host is "SERVICE@HOST" or "SERVICE".
    REPLICA_CRASH_LOOP = "replica_crash_loop"  # a replica restarted too often: haven stopped restarting it
    SERVICE_HOLD = "service_hold"  # a service's restarts or starts held (mass failure, dependency, no host)
    # Backups (haven.backups): the alert's host is the server's id.
    BACKUP_MISSED = "backup_missed"  # a window has no good backup grace_s after it was due
    RECOVERY_POINT_STALE = "recovery_point_stale"  # the newest good backup is older than the policy allows
    RESTORE_DRILL_FAILED = "restore_drill_failed"  # the latest drill's server did not reach ACTIVE
    SERVICE_DOWN = "service_down"  # no replica of a service is healthy (its dependents' holds folded in)
    CONTROLLER_DOWN = "controller_down"  # a controller's systemd unreachable: one alert for all its replicas
    # Keystone refuses haven's own probe account (401): its deep probes judge by the version document.
    # The alert's host is "USER@AUTH_URL"; cleared once Keystone issues that account a token again.
    PROBE_CREDENTIALS = "probe_credentials"
    # Galera (haven.stateful): the alert's host is the cluster's name; the message every node's state.
    GALERA_HOLD = "galera_hold"  # recovery cannot decide safely: nothing started until an operator acts
    RABBITMQ_HOLD = "rabbitmq_hold"  # RabbitMQ recovery cannot decide safely (haven.stateful.rabbitmq)
    # One per queue backlog, never acted on (haven.stateful.rabbitmq_queues): its host is
    # "CLUSTER:KIND:VHOST:QUEUE"; cleared when the queue drains.
    RABBITMQ_BACKLOG = "rabbitmq_backlog"


@dataclass(frozen=True, slots=True)
class Segment:
    id: SegmentId
    name: str
    recovery_method: RecoveryMethod = RecoveryMethod.AUTO
    service_type: str = "COMPUTE"
    enabled: bool = True
    description: str = ""
    mode: SegmentMode = SegmentMode.AUTOMATIC
    # Record times set by the store (epoch seconds): on creation, and on each change (None: never
    # changed). Not part of the value: the same segment or host read twice compares equal.
    created_at: float | None = field(default=None, compare=False)
    updated_at: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class SegmentHost:
    """A host as a member of a failover segment (Masakari's ``host`` resource)."""

    name: HostName
    segment_id: SegmentId
    type: str = "COMPUTE"
    control_attributes: str = "SSH"
    reserved: bool = False
    on_maintenance: bool = False
    condition: str = "healthy"  # the detector's last verdict, kept for restarts and `haven hosts`
    disabled_by_haven: bool = False  # haven disabled its compute service and owes an enable
    uuid: str = ""  # Masakari's host uuid, kept across renames; "" asks the store for a new one
    # Record times set by the store (epoch seconds): on creation, and on each change (None: never
    # changed). Not part of the value: the same segment or host read twice compares equal.
    created_at: float | None = field(default=None, compare=False)
    updated_at: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Notification:
    id: NotificationId
    type: NotificationType
    hostname: HostName
    status: NotificationStatus
    payload: Mapping[str, Any]
    generated_at: float
    created_at: float
    updated_at: float
    segment_id: SegmentId | None = None
    # Custom recovery: the external system that claimed this notify-mode notification, and when.
    claimed_by: str | None = None
    claimed_at: float | None = None

    @property
    def mode(self) -> SegmentMode:
        """The mode the notification was opened (or handed over) in; automatic for older ones."""
        try:
            return SegmentMode(str(self.payload.get(RECOVERY_MODE_KEY, SegmentMode.AUTOMATIC.value)))
        except ValueError:
            return SegmentMode.AUTOMATIC

    @property
    def awaits_owner(self) -> bool:
        """Custom recovery: still open, and an external system (not haven) recovers it."""
        return self.mode is SegmentMode.NOTIFY and self.status in UNFINISHED_STATUSES


@dataclass(frozen=True, slots=True)
class Step:
    """One persisted unit of a recovery; ``seq`` orders steps within a notification."""

    notification_id: NotificationId
    seq: int
    kind: str
    subject: str
    state: StepState = StepState.PENDING
    detail: Mapping[str, Any] = field(default_factory=dict)
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    kind: AlertKind
    message: str
    raised_at: float
    segment_id: SegmentId | None = None
    host: HostName | None = None
    cleared_at: float | None = None
