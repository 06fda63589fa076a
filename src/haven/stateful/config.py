"""haven.toml's ``[stateful.galera]``: the Galera cluster haven's recovery loop watches in ``haven serve``.

Called by haven.service.config (which reads the file); pure. One pydantic schema validates it (unknown
keys refused, types and ranges checked, node names unique); every mistake becomes a ConfigError naming
the key and how to fix it.

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

The ``local`` driver (haven.stateful.galera_node.LocalGaleraNode) is the only one today: haven runs
``mariadbd --defaults-file=CNF`` itself (with ``--wsrep-new-cluster`` to bootstrap). A systemd driver
(the HA lab's units, bootstrapping through ``galera_new_cluster``) is not written yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from haven.domain.errors import ConfigError

HINT = "see docs/stateful.md (or haven.stateful.config) for every key of [stateful.galera]"
DRIVERS = ("local",)


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=255)
    folder: str = Field(min_length=1)
    cnf: str = ""
    data: str = ""
    socket: str = ""
    pid_file: str = ""


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
        if value not in DRIVERS:
            raise ValueError(f"driver {value!r} is not known (use one of: {', '.join(DRIVERS)})")
        return value

    @field_validator("nodes")
    @classmethod
    def _unique(cls, nodes: list[_Node]) -> list[_Node]:
        names = [n.name for n in nodes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"node name(s) {', '.join(twice)} given twice")
        return nodes


class _Stateful(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    galera: _Galera | None = None


@dataclass(frozen=True, slots=True)
class GaleraNodeConfig:
    name: str
    folder: Path
    cnf: Path
    data: Path
    socket: Path
    pid_file: Path


@dataclass(frozen=True, slots=True)
class GaleraConfig:
    cluster: str
    nodes: tuple[GaleraNodeConfig, ...]
    driver: str = "local"
    interval_s: float = 5.0
    unreadable_hold_s: float = 120.0
    sql_timeout_s: float = 2.0


@dataclass(frozen=True, slots=True)
class StatefulConfig:
    galera: GaleraConfig | None = None  # None: no [stateful.galera], or enabled = false


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
    if raw.galera is None or not raw.galera.enabled:
        return StatefulConfig()
    g = raw.galera
    nodes = tuple(
        GaleraNodeConfig(
            n.name, Path(n.folder), Path(n.cnf or f"{n.folder}/my.cnf"), Path(n.data or f"{n.folder}/data"),
            Path(n.socket or f"{n.folder}/mariadb.sock"), Path(n.pid_file or f"{n.folder}/mariadb.pid"),
        )
        for n in g.nodes
    )  # fmt: skip
    return StatefulConfig(
        GaleraConfig(g.cluster, nodes, g.driver, g.interval_s, g.unreadable_hold_s, g.sql_timeout_s)
    )
