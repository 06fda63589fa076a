"""The control plane's vocabulary: declared service specs, what was observed of each replica, and actions.

Read by haven.controlplane (the catalogue, the pure planner, the reconciler and its drivers), by
haven.safety (the mass-action gate) and by haven.store (actions are persisted). Frozen dataclasses and
enums only: no I/O.

A *service* (keystone, nova-api, mariadb...) is declared by a ServiceSpec. A *replica* is that service's
systemd unit on one controller host; hosts belong to failure domains (racks, rooms). An *action* is one
effect on one replica (take it out of the load balancer, restart its unit, return it...), persisted with
its intent before the effect and its outcome after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NewType

from haven.domain.ids import HostName

ServiceName = NewType("ServiceName", str)
DomainName = NewType("DomainName", str)  # a failure domain: a rack, a room, a power feed


# ---- the declared spec -------------------------------------------------------------------------


class ProbeKind(StrEnum):
    HTTP = "http"  # GET a path (a version document, oslo.middleware's /healthcheck); status decides
    TCP = "tcp"  # connect, then close
    KEYSTONE = "keystone"  # issue a token from this replica with the probe's account, then validate it
    SQL = "sql"  # connect to this replica's database and run ``query``
    AMQP = "amqp"  # connect to this broker, publish to a private queue and get the message back
    NOVA_SERVICES = "nova_services"  # GET /v2.1/os-services on this nova-api with a Keystone token
    # An RPC call to this host's nova-conductor or nova-scheduler (``topic``, server = the controller's
    # host name) on Nova's bus: any answer from its dispatcher (NoSuchMethod included) is alive; no
    # answer within ``timeout_s`` (a hung worker, its queue filling) is a failure. Seconds, not minutes.
    NOVA_RPC = "nova_rpc"
    # memcached's text-protocol ``version`` on this replica, answered within ``timeout_s``: a SIGSTOPped
    # memcached (the kernel still accepts its connections, so ``tcp`` passes) fails by timeout.
    MEMCACHED = "memcached"


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """How a replica's own health is read; a timeout is a failure."""

    kind: ProbeKind
    port: int
    path: str = "/"
    expect_status: tuple[int, ...] = (200,)
    timeout_s: float = 2.0
    period_s: float = 2.0
    failure_threshold: int = 3  # consecutive failures before the replica counts as unhealthy
    # A replica that has not passed its probe since its unit became active is *starting* for this long
    # (Kubernetes' startup probe): its failures do not count, so a slow start is never killed.
    startup_grace_s: float = 60.0
    # A replica whose probes time out while its unit's CPU time goes on advancing (by at least
    # ``busy_cpu_share`` of one CPU between its failed probes) is *busy*, not hung: answering late under
    # load. It leaves the load balancer as any failing replica, but is restarted only once it has failed
    # this long (a spinning loop is bounded too). 0: restarted as a hung one. Needs the unit's CPU time
    # (systemd); without it every timeout counts as hung.
    busy_grace_s: float = 30.0
    busy_cpu_share: float = 0.02  # CPU time per wall time between failed probes that makes one busy
    # The account of KEYSTONE, NOVA_SERVICES, SQL and AMQP probes; its password is read from the
    # environment variable ``password_env`` (never written in haven.toml).
    user: str = ""
    password_env: str = ""
    project: str = ""  # KEYSTONE, NOVA_SERVICES: the project scope; SQL: the database; AMQP: the vhost
    auth_url: str = ""  # NOVA_SERVICES: Keystone's URL (e.g. its HAProxy frontend), ".../v3"
    query: str = "SELECT 1"  # SQL
    topic: str = ""  # NOVA_RPC: "conductor" or "scheduler"
    # NOVA_RPC: the environment variable holding Nova's transport_url; AMQP (optional): the same, for its
    # TLS only (?ssl=1&ssl_ca_file=PATH, as oslo.messaging reads it; the account is user/password_env)
    transport_url_env: str = ""

    def secrets(self) -> tuple[str, ...]:
        """The environment variables this probe reads."""
        return tuple(v for v in (self.password_env, self.transport_url_env) if v)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """haven's restarts of one replica: exponential back-off, then a crash-loop limit.

    systemd 252 (Debian 12) restarts with a fixed RestartSec only; the back-off is haven's.
    The n-th restart within ``crash_loop_window_s`` waits ``min(backoff_initial_s * backoff_factor**(n-1),
    backoff_max_s)`` after the previous one; past ``crash_loop_max_restarts`` restarts in the window
    (haven's and systemd's own, counted from NRestarts) haven stops trying and raises an alert.
    """

    backoff_initial_s: float = 1.0
    backoff_factor: float = 2.0
    backoff_max_s: float = 300.0
    crash_loop_max_restarts: int = 5
    crash_loop_window_s: float = 600.0


@dataclass(frozen=True, slots=True)
class Backend:
    """The load-balancer backend a service's replicas are members of (HAProxy: ``backend/server``).

    A replica's server name in the backend is its host name.
    """

    name: str


class Spread(StrEnum):
    DOMAINS = "domains"  # no two replicas in one failure domain while another allowed domain has room
    NONE = "none"  # any allowed host


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: ServiceName
    unit: str  # the systemd unit on each host, e.g. "nova-api.service"
    min_replicas: int = 2
    hosts: tuple[HostName, ...] = ()  # the hosts it may run on; () means every known controller
    domains: tuple[DomainName, ...] = ()  # the failure domains it may run in; () means any
    spread: Spread = Spread.DOMAINS
    probe: ProbeSpec | None = None
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    backend: Backend | None = None
    depends_on: tuple[ServiceName, ...] = ()
    # A stateful service (Galera, RabbitMQ) has its own membership rules: haven restarts a failed
    # replica, but never starts one on another host by itself.
    stateful: bool = False
    # A quorum-based cluster (Galera's Primary Component, RabbitMQ under pause_minority, etcd's Raft)
    # serves only while a strict majority of its members is up: a minority left stops serving although
    # its units run. Its members: ``min_replicas``, or the replicas deployed when there are more.
    quorum: bool = False
    # How long a drained member keeps its open connections before it is put in maintenance.
    drain_s: float = 2.0


@dataclass(frozen=True, slots=True)
class Controller:
    """A host that runs control-plane replicas, and the failure domain it is in."""

    host: HostName
    domain: DomainName
    address: str = ""  # where its replicas are probed; "" means the host name
    # Its systemd's D-Bus address (``unix:path=...``, ``tcp:host=...,port=...``); "" means this machine's
    # system bus. Read only by the systemd driver.
    bus: str = ""
    # Its container engine's API (``unix:///run/podman/podman.sock``); "" means the driver's default.
    engine: str = ""


@dataclass(frozen=True, slots=True)
class ControlPlaneSettings:
    """The reconciler's own settings (haven.toml ``[controlplane]``)."""

    # More than this share of a service's replicas failing their probes at once (at least two) holds
    # that service's restarts: the observer, its network or a shared dependency is the likely fault.
    gate_share: float = 0.5
    max_restarts_at_once: int = 1  # per service: never restart everything at once
    pass_interval_s: float = 1.0  # how often the reconciler observes and plans
    # A replica restarted this recently (by haven or systemd), not serving yet, counts as failing for
    # gate_share (0 to 3600 s; 0: only the replicas failing now).
    gate_window_s: float = 60.0
    # The last member in a backend is kept this long for a peer back by haven's probe but not yet up in
    # HAProxy's own check (0 to 600 s).
    rise_wait_s: float = 15.0


# ---- what was observed ---------------------------------------------------------------------------


class UnitActive(StrEnum):
    """systemd's ActiveState of a unit."""

    ACTIVE = "active"
    RELOADING = "reloading"
    INACTIVE = "inactive"
    FAILED = "failed"
    ACTIVATING = "activating"
    DEACTIVATING = "deactivating"


@dataclass(frozen=True, slots=True)
class UnitStatus:
    """One unit as its systemd reports it."""

    active: UnitActive
    sub_state: str = ""
    n_restarts: int = 0  # systemd's own automatic restarts (Restart=), since the unit was loaded
    invocation_id: str = ""  # changes on every start: how a restart is known to have happened
    active_since: float | None = None  # wall-clock time the unit last entered ACTIVE (None: never)
    loaded: bool = True  # False: the unit file is not there (the service is not installed on that host)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    at: float  # when the probe finished
    detail: str = ""  # "200 OK", "timed out after 2 s", "connection refused"
    # The replica's unit's CPU time (seconds, all its processes) read just after this probe; None: not
    # known (a driver without it, its systemd not counting it, a read that failed).
    cpu_s: float | None = None
    # Keystone refused haven's own probe account (401) at its latest answer, as of this probe: an
    # operator's configuration error, never the replica's (haven.controlplane.alerts.probe_credentials).
    credentials_refused: bool = False


class MemberAdmin(StrEnum):
    """A load-balancer member's administrative state (HAProxy's ``set server ... state``)."""

    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """A load-balancer member as the load balancer reports it (``show servers state``)."""

    admin: MemberAdmin
    operational: str = ""  # "up", "down", "stopping", "starting"...
    sessions: int = 0
    check_passed: bool | None = None  # the load balancer's own latest health check; None: not known


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """Everything observed about one replica in one pass; None: that source could not be read."""

    service: ServiceName
    host: HostName
    domain: DomainName
    unit: UnitStatus | None
    probes: tuple[ProbeResult, ...] = ()  # recent results, oldest first
    member: MemberStatus | None = None
    # From haven's own records (the store): the times haven or systemd restarted this replica within
    # the crash-loop window, whether haven took it out of the load balancer and owes its return, when
    # its last drain began, and whether an action on it is still unfinished.
    restarts: tuple[float, ...] = ()
    held_out: bool = False
    drained_at: float | None = None
    busy: bool = False


# ---- actions ------------------------------------------------------------------------------------


class ActionKind(StrEnum):
    DRAIN = "drain"  # load balancer: no new connections
    MAINT = "maint"  # load balancer: out
    READY = "ready"  # load balancer: back in
    RESTART = "restart"  # systemd RestartUnit
    START = "start"  # systemd StartUnit (a missing replica)
    STOP = "stop"  # systemd StopUnit (the surplus replica of a re-spread, once out of the load balancer)
    SEEN_RESTART = "seen_restart"  # a record, no effect: systemd restarted the unit by itself


class ActionState(StrEnum):
    ISSUED = "issued"  # intent committed: the effect may or may not have happened
    DONE = "done"
    FAILED = "failed"


UNFINISHED_ACTIONS = (ActionState.ISSUED,)


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """What the planner asks for one replica, and why (the reason is persisted and shown)."""

    kind: ActionKind
    service: ServiceName
    host: HostName
    reason: str


@dataclass(frozen=True, slots=True)
class ActionDetail:
    """What an action's handler needs to know it already happened (its idempotency key).

    ``invocation_id``: the unit's InvocationID before a restart or start (a different one afterwards
    proves the effect). ``backend``: the load-balancer backend of a member action.
    """

    invocation_id: str = ""
    backend: str = ""
    n_restarts: int = 0  # SEEN_RESTART: systemd's NRestarts when it was seen


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One persisted action."""

    id: str
    kind: ActionKind
    service: ServiceName
    host: HostName
    state: ActionState
    reason: str
    detail: ActionDetail
    created_at: float
    finished_at: float | None = None
    error: str = ""


class ReplicaHealth(StrEnum):
    """The planner's verdict on one replica."""

    HEALTHY = "healthy"  # unit active, probe passing (or no probe)
    STARTING = "starting"  # unit activating, or active within its start-up grace without a pass yet
    UNHEALTHY = "unhealthy"  # unit active but its probe failed failure_threshold times in a row
    FAILED = "failed"  # systemd says failed (crashed, killed)
    STOPPED = "stopped"  # inactive: not running, not failed (never started, or stopped cleanly)
    UNKNOWN = "unknown"  # its systemd could not be read
    ABSENT = "absent"  # the unit is not installed on that host


@dataclass(frozen=True, slots=True)
class Hold:
    """Actions the planner (through haven.safety) withheld, and why; raised as one alert per subject."""

    service: ServiceName
    host: HostName | None  # None: the whole service
    kind: str  # "crash_loop", "mass_failure", "dependency", "last_serving", "no_host", "busy"
    reason: str


@dataclass(frozen=True, slots=True)
class ControlPlanePlan:
    actions: tuple[PlannedAction, ...]
    holds: tuple[Hold, ...]
    health: tuple[tuple[ServiceName, HostName, ReplicaHealth], ...]
    recheck_at: float | None  # the earliest time something waiting (a back-off, a drain) is due


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """One replica as the leader's latest pass saw it; persisted so that ``haven controlplane status``,
    the metrics of every engine and the API read the same thing.

    ``unit``: systemd's ActiveState ("" unknown); ``member``: the load balancer's admin state ("" none);
    ``probe``: the latest probe's words ("" none yet).
    """

    service: ServiceName
    host: HostName
    domain: DomainName
    health: ReplicaHealth
    unit: str
    member: str
    probe: str
    observed_at: float
