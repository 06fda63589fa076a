"""haven.toml's ``[stateful.galera]`` and ``[stateful.rabbitmq]``: the clusters haven serve recovers.

Called by haven.service.config (which reads the file); pure. One pydantic schema validates it (unknown
keys refused, types and ranges checked, node names unique, a RabbitMQ cluster's ports unique); every
mistake becomes a ConfigError naming the key and how to fix it.

    [stateful.galera]
    cluster = "openstack"              # its name: the journal's and the galera_hold alert's key
    driver = "local"                   # each node a mariadbd on this machine, started with its my.cnf
    interval_s = 5.0                   # one pass (observe every node, decide, act) this often
    unreadable_hold_s = 120.0          # a running node whose SQL is mute this long: hold and alert
    sql_timeout_s = 2.0
    [[stateful.galera.nodes]]
    name = "g1"
    folder = "/var/lib/haven/galera/g1"  # haven's files for it (logs); the defaults of the keys below
    cnf = "/etc/mysql/g1.cnf"            # --defaults-file: how haven starts it (default FOLDER/my.cnf)
    data = "/var/lib/mysql-g1"           # its datadir, where grastate.dat is (default FOLDER/data)
    socket = "/run/mysqld/g1.sock"       # its SQL address: the unix socket (default FOLDER/mariadb.sock)
    pid_file = "/run/mysqld/g1.pid"      # default FOLDER/mariadb.pid
    unit = "mariadb-g1.service"          # driver "systemd" only (required there): the node's unit
    bus = "unix:path=/run/dbus/system_bus_socket"  # driver "systemd": its systemd's D-Bus (default: system)

    [stateful.rabbitmq]
    cluster = "openstack"              # its name: the journal's key (rabbitmq:NAME) and the alert's host
    driver = "local"                   # or "systemd": each node a unit (haven.stateful.rabbitmq_systemd)
    interval_s = 5.0                   # one pass (read every node's cluster_status, decide, act) this often
    partition_grace_s = 10.0           # a partition reported this long before haven restarts a node
    unreadable_hold_s = 120.0          # a running node whose CLI is mute this long: hold and alert
    cli_timeout_s = 30.0               # one rabbitmqctl call
    home = "/var/lib/haven/rabbitmq"   # HOME of the servers and rabbitmqctl: where .erlang.cookie is
    epmd_port = 4369                   # the Erlang port mapper every node registers with
    watch_queues = true                # read the queues each pass: backlogs alerted, never acted on
    backlog_unacked_min = 1000         # unacknowledged messages in one queue (1..100,000,000) ...
    backlog_unacked_window_s = 300.0   # ... held this long (0..86,400): a backlog
    backlog_idle_ready_min = 100       # ready messages in a queue with no consumer (1..100,000,000) ...
    backlog_idle_window_s = 600.0      # ... held this long (0..86,400) and grown: a backlog
    backlog_report_worst = 10          # the fullest queues shown beside the totals (1..1,000)
    queues_timeout_s = 10.0            # the whole queues' read (1..60): past it the read fails, alerts kept
    [[stateful.rabbitmq.nodes]]
    name = "rabbit-1@localhost"        # RABBITMQ_NODENAME
    folder = "/var/lib/haven/rabbitmq/n1"  # its Mnesia, logs, pid file, enabled_plugins
    amqp_port = 5672
    dist_port = 25672
    config = "/etc/rabbitmq/n1.conf"   # RABBITMQ_CONFIG_FILE (default FOLDER/rabbitmq.conf)
    unit = "rabbitmq-1.service"        # driver "systemd" only (required there), as for Galera
    bus = "unix:path=/run/dbus/system_bus_socket"

The ``local`` driver (haven.stateful.galera_node.LocalGaleraNode): haven runs ``mariadbd
--defaults-file=CNF`` itself (with ``--wsrep-new-cluster`` to bootstrap). The ``systemd`` driver
(haven.stateful.galera_systemd.SystemdGaleraNode): each node is a unit started and stopped over its
systemd's D-Bus, bootstrapped through the unit's own ``_WSREP_NEW_CLUSTER`` environment file; its files
(grastate.dat, --wsrep-recover) are still read on this machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from haven.domain.errors import ConfigError
from haven.stateful.rabbitmq_queues import QueueSettings

HINT = "see docs/stateful.md for each key of [stateful.galera] and [stateful.rabbitmq]"
DRIVERS = ("local", "systemd")


class _Named(Protocol):
    name: str
    unit: str


def _names_once(nodes: Sequence[_Named]) -> None:
    names = [n.name for n in nodes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"node name(s) {', '.join(twice)} given twice")


def _units_for(driver: str, nodes: Sequence[_Named]) -> None:
    without = [n.name for n in nodes if not n.unit]
    if driver == "systemd" and without:
        raise ValueError(f"driver systemd needs each node's unit (none for {', '.join(without)})")


def _known_driver(value: str) -> str:
    if value not in DRIVERS:
        raise ValueError(f"driver {value!r} is not known (use one of: {', '.join(DRIVERS)})")
    return value


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=255)
    folder: str = Field(min_length=1)
    cnf: str = ""
    data: str = ""
    socket: str = ""
    pid_file: str = ""
    unit: str = ""  # driver systemd: the node's unit (mariadb-g1.service)
    bus: str = ""  # driver systemd: its systemd's D-Bus address (empty: this machine's system bus)


class _Galera(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    enabled: bool = True
    cluster: str = Field(default="galera", min_length=1, max_length=255)
    driver: str = "local"
    interval_s: float = Field(default=5.0, gt=0)
    unreadable_hold_s: float = Field(default=120.0, gt=0)
    sql_timeout_s: float = Field(default=2.0, gt=0)
    nodes: list[_Node] = Field(min_length=2)

    @field_validator("driver")
    @classmethod
    def _driver(cls, value: str) -> str:
        return _known_driver(value)

    @field_validator("nodes")
    @classmethod
    def _unique(cls, nodes: list[_Node]) -> list[_Node]:
        _names_once(nodes)
        return nodes

    @model_validator(mode="after")
    def _units(self) -> _Galera:
        _units_for(self.driver, self.nodes)
        return self


class _RabbitNode(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+$")
    folder: str = Field(min_length=1)
    amqp_port: int = Field(ge=1, le=65535)
    dist_port: int = Field(ge=1, le=65535)
    config: str = ""
    unit: str = ""  # driver systemd: the node's unit (rabbitmq-1.service)
    bus: str = ""  # driver systemd: its systemd's D-Bus address (empty: this machine's system bus)


class _Rabbit(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    enabled: bool = True
    cluster: str = Field(default="rabbitmq", min_length=1, max_length=255)
    driver: str = "local"
    interval_s: float = Field(default=5.0, gt=0)
    partition_grace_s: float = Field(default=10.0, gt=0)
    unreadable_hold_s: float = Field(default=120.0, gt=0)
    cli_timeout_s: float = Field(default=30.0, gt=0)
    home: str = Field(min_length=1)
    epmd_port: int = Field(default=4369, ge=1, le=65535)
    watch_queues: bool = True
    backlog_unacked_min: int = Field(default=1000, ge=1, le=100_000_000)
    backlog_unacked_window_s: float = Field(default=300.0, ge=0, le=86_400)
    backlog_idle_ready_min: int = Field(default=100, ge=1, le=100_000_000)
    backlog_idle_window_s: float = Field(default=600.0, ge=0, le=86_400)
    backlog_report_worst: int = Field(default=10, ge=1, le=1000)
    queues_timeout_s: float = Field(default=10.0, ge=1, le=60)
    nodes: list[_RabbitNode] = Field(min_length=2)

    @field_validator("nodes")
    @classmethod
    def _unique(cls, nodes: list[_RabbitNode]) -> list[_RabbitNode]:
        _names_once(nodes)
        ports = [p for n in nodes for p in (n.amqp_port, n.dist_port)]  # one loopback address: all differ
        taken = sorted({p for p in ports if ports.count(p) > 1})
        if taken:
            raise ValueError(
                f"port(s) {', '.join(map(str, taken))} given twice (each node's amqp_port and dist_port "
                "must differ from every other port of the cluster)"
            )
        return nodes

    @field_validator("driver")
    @classmethod
    def _driver(cls, value: str) -> str:
        return _known_driver(value)

    @model_validator(mode="after")
    def _units(self) -> _Rabbit:
        _units_for(self.driver, self.nodes)
        return self


class _Stateful(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    galera: _Galera | None = None
    rabbitmq: _Rabbit | None = None


@dataclass(frozen=True, slots=True)
class GaleraNodeConfig:
    name: str
    folder: Path
    cnf: Path
    data: Path
    socket: Path
    pid_file: Path
    unit: str = ""  # driver systemd
    bus: str = ""  # driver systemd; empty: the system bus


@dataclass(frozen=True, slots=True)
class GaleraConfig:
    cluster: str
    nodes: tuple[GaleraNodeConfig, ...]
    driver: str = "local"
    interval_s: float = 5.0
    unreadable_hold_s: float = 120.0
    sql_timeout_s: float = 2.0


@dataclass(frozen=True, slots=True)
class RabbitNodeConfig:
    name: str  # the Erlang node name, rabbit-1@localhost
    folder: Path
    amqp_port: int
    dist_port: int
    config: Path
    unit: str = ""  # driver systemd
    bus: str = ""  # driver systemd; empty: the system bus


@dataclass(frozen=True, slots=True)
class RabbitConfig:
    cluster: str
    home: Path
    nodes: tuple[RabbitNodeConfig, ...]
    epmd_port: int = 4369
    interval_s: float = 5.0
    partition_grace_s: float = 10.0
    unreadable_hold_s: float = 120.0
    cli_timeout_s: float = 30.0
    driver: str = "local"
    queues: QueueSettings | None = field(default_factory=QueueSettings)  # None: watch_queues = false


@dataclass(frozen=True, slots=True)
class StatefulConfig:
    galera: GaleraConfig | None = None  # None: no [stateful.galera], or enabled = false
    rabbitmq: RabbitConfig | None = None  # None: no [stateful.rabbitmq], or enabled = false


def parse_stateful(section: object, where: str) -> StatefulConfig:
    """``section`` is the raw ``[stateful]`` table (None when absent: nothing watched)."""
    if section is None:
        return StatefulConfig()
    where = f"{where} [stateful]"
    try:
        raw = _Stateful.model_validate(section)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "the section"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}: {key}: {message}", HINT) from None
    return StatefulConfig(_galera(raw.galera), _rabbitmq(raw.rabbitmq))


def _galera(g: _Galera | None) -> GaleraConfig | None:
    if g is None or not g.enabled:
        return None
    nodes = tuple(
        GaleraNodeConfig(
            n.name, Path(n.folder), Path(n.cnf or f"{n.folder}/my.cnf"), Path(n.data or f"{n.folder}/data"),
            Path(n.socket or f"{n.folder}/mariadb.sock"), Path(n.pid_file or f"{n.folder}/mariadb.pid"),
            n.unit, n.bus,
        )
        for n in g.nodes
    )  # fmt: skip
    return GaleraConfig(g.cluster, nodes, g.driver, g.interval_s, g.unreadable_hold_s, g.sql_timeout_s)


def _rabbitmq(r: _Rabbit | None) -> RabbitConfig | None:
    if r is None or not r.enabled:
        return None
    nodes = tuple(
        RabbitNodeConfig(
            n.name,
            Path(n.folder),
            n.amqp_port,
            n.dist_port,
            Path(n.config or f"{n.folder}/rabbitmq.conf"),
            n.unit,
            n.bus,
        )
        for n in r.nodes
    )
    return RabbitConfig(
        r.cluster, Path(r.home), nodes, r.epmd_port, r.interval_s, r.partition_grace_s, r.unreadable_hold_s,
        r.cli_timeout_s, r.driver, _queues(r),
    )  # fmt: skip


def _queues(r: _Rabbit) -> QueueSettings | None:
    if not r.watch_queues:
        return None
    return QueueSettings(
        r.backlog_unacked_min, r.backlog_unacked_window_s, r.backlog_idle_ready_min, r.backlog_idle_window_s,
        r.backlog_report_worst, r.queues_timeout_s,
    )  # fmt: skip
