"""Galera's and RabbitMQ's recovery loops in ``haven serve``: leader-only runnables over ``[stateful.*]``.

Who calls it: haven.cli.serve, which builds it before anything is opened (a node whose my.cnf is
missing, or no mariadbd, stops serve with a ConfigError and nothing touched) and runs ``run`` only
while this engine leads (haven.cli.serve._while_leading), as the control plane's reconciler.

Each term gets a new GaleraRecovery (its ``--wsrep-recover`` reads, kept while each node's grastate.dat
is unchanged, start empty) on the store's journal and alerts, fenced by the term's leader epoch: a
deposed leader's writes are refused by the store, so its loop makes no effect and writes nothing. The
first pass of a term finishes any step the previous leader left ``issued`` from the node's state now,
never making that step's effect, and decides afresh (haven.stateful.galera_recovery). A pass that fails
unexpectedly is logged; the next runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from haven.domain.clock import Clock
from haven.domain.errors import ConfigError, HavenError
from haven.domain.waiting import within
from haven.stateful.config import (
    GaleraConfig,
    GaleraNodeConfig,
    RabbitConfig,
    RabbitNodeConfig,
    StatefulConfig,
)
from haven.stateful.galera import GaleraSettings
from haven.stateful.galera_node import MARIADBD, PROVIDER, GaleraNode, LocalGaleraNode, NodeLayout
from haven.stateful.galera_recovery import GaleraRecovery
from haven.stateful.galera_systemd import SystemdGaleraNode, bootstrap_problems, read_unit_exec
from haven.stateful.rabbitmq import RabbitSettings, partition_handling_of_files
from haven.stateful.rabbitmq_node import (
    RABBITMQ_SERVER,
    RABBITMQCTL,
    LocalRabbitNode,
    RabbitLayout,
    RabbitNode,
)
from haven.stateful.rabbitmq_recovery import RabbitRecovery
from haven.stateful.rabbitmq_systemd import SystemdRabbitNode
from haven.store import Store

log = logging.getLogger(__name__)


def refuse_local_nodes_with_coordination(stateful: StatefulConfig, coordination_url: str | None) -> None:
    """A ConfigError when several engines could lead while a cluster's nodes are driven locally.

    The ``local`` drivers read whether a node runs from this machine's /proc and start it here: an
    engine elected on another machine (``--coordination``) would see every node stopped and start the
    whole cluster again on its own machine. Until a driver reaches the nodes where they run (systemd
    over SSH, the nodes' own agents), ``[stateful.*]`` runs with one engine only.
    """
    if coordination_url is None:
        return
    sections = []
    if stateful.galera is not None:  # systemd too: grastate.dat and --wsrep-recover are read here
        sections.append(f"[stateful.galera] (driver {stateful.galera.driver})")
    if stateful.rabbitmq is not None:  # systemd too: the nodes' VMs are also looked for in this /proc
        sections.append(f"[stateful.rabbitmq] (driver {stateful.rabbitmq.driver})")
    if sections:
        raise ConfigError(
            f"{' and '.join(sections)} cannot run with --coordination / [coordination] url "
            f"{coordination_url}: its nodes are read and started on this machine only, and an engine "
            "elected on another machine would start every node again there",
            "run haven serve without coordination (one engine) for [stateful.*], or set enabled = false "
            "in the section",
        )


class GaleraService:
    def __init__(self, config: GaleraConfig, clock: Clock) -> None:
        """Checks what a start needs: the files exist and, with driver systemd, each node's unit reads
        FOLDER/wsrep.env and passes $_WSREP_NEW_CLUSTER (read over its D-Bus; else a ConfigError)."""
        for path in (MARIADBD, PROVIDER):
            if not path.exists():
                raise ConfigError(
                    f"[stateful.galera]: {path} is missing", "install mariadb-server and galera-4"
                )
        for node in config.nodes:
            if not node.cnf.is_file():
                raise ConfigError(
                    f"[stateful.galera] node {node.name}: its my.cnf {node.cnf} does not exist",
                    "set nodes.cnf to the file mariadbd is started with (--defaults-file)",
                )
        if config.driver == "systemd":
            for node in config.nodes:
                _check_galera_unit(node)
        self.config, self._clock = config, clock
        self.nodes: list[GaleraNode] = [_galera_node(n, config) for n in config.nodes]
        self.settings = GaleraSettings(unreadable_hold_s=config.unreadable_hold_s)

    def describe(self) -> str:
        names = ", ".join(n.name for n in self.nodes)
        return (
            f"galera: cluster {self.config.cluster!r} ({names}, driver {self.config.driver}) recovered while "
            f"leading, a pass every {self.config.interval_s:g} s; holds are galera_hold alerts"
        )

    async def run(
        self, store: Store, leader_epoch: Callable[[], int | None] | None, stop: asyncio.Event
    ) -> None:
        """One term: passes until ``stop`` (the term is over, or haven stops)."""
        epoch = leader_epoch() if leader_epoch is not None else None
        recovery = GaleraRecovery.on_store(
            self.nodes, store, self.config.cluster, self._clock, epoch=epoch, settings=self.settings
        )
        while not stop.is_set():
            try:
                decision = await recovery.run_pass()
                log.debug("galera %s: %s: %s", self.config.cluster, decision.kind.value, decision.reason)
            except Exception:  # a bug or the store gone: this pass only
                log.exception("galera %s: pass failed", self.config.cluster)
            with contextlib.suppress(TimeoutError):
                await within(stop.wait(), self.config.interval_s)
        # The servers haven started keep running when haven stops: they are the database, not haven's.


def unit_exec(unit: str, bus: str | None) -> tuple[list[str], list[list[str]]]:
    """``read_unit_exec`` from synchronous code, whether or not an event loop runs in this thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read_unit_exec(unit, bus)).result()


def _check_galera_unit(node: GaleraNodeConfig) -> None:
    """Refuse a unit haven's bootstrap would silently turn into a plain start (it must read
    FOLDER/wsrep.env and pass $_WSREP_NEW_CLUSTER, as haven's own unit file does)."""
    where = f"[stateful.galera] node {node.name}: unit {node.unit}"
    try:
        env_files, exec_start = unit_exec(node.unit, node.bus or None)
    except HavenError as exc:
        raise ConfigError(
            f"{where}: its EnvironmentFile and ExecStart cannot be read over D-Bus: {exc}",
            "check nodes.unit and nodes.bus, and that its systemd runs",
        ) from exc
    problems = bootstrap_problems(env_files, exec_start, node.folder)
    if problems:
        raise ConfigError(
            f"{where} cannot be bootstrapped by haven: {'; '.join(problems)} (a unit such as Debian's "
            "mariadb.service reads _WSREP_NEW_CLUSTER from systemd's manager environment, and haven's "
            "bootstrap would silently be a plain start)",
            f"give the unit `EnvironmentFile=-{node.folder}/wsrep.env` and an ExecStart passing "
            "$_WSREP_NEW_CLUSTER $_WSREP_START_POSITION to mariadbd (a drop-in, or the unit haven.stateful"
            ".galera_systemd.unit_file writes; docs/stateful.md), then systemctl daemon-reload",
        )


def _galera_node(n: GaleraNodeConfig, config: GaleraConfig) -> GaleraNode:
    layout = NodeLayout(
        n.name, n.folder, cnf_path=n.cnf, data_path=n.data, socket_path=n.socket, pid_path=n.pid_file
    )
    if config.driver == "systemd":
        return SystemdGaleraNode(layout, n.unit, n.bus or None, sql_timeout_s=config.sql_timeout_s)
    return LocalGaleraNode(layout, sql_timeout_s=config.sql_timeout_s)


class RabbitService:
    """RabbitMQ's recovery loop in ``haven serve`` (``[stateful.rabbitmq]``), built like GaleraService.

    Checks at start-up that rabbitmq-server and rabbitmqctl exist and that each node's config file and
    the cookie's HOME do (a ConfigError stops serve before anything is opened). Each term gets a new
    RabbitRecovery on the store's journal (under ``rabbitmq:<cluster>``) and ``rabbitmq_hold`` alerts,
    fenced by the term's leader epoch. The servers haven started keep running when haven stops.
    """

    def __init__(self, config: RabbitConfig, clock: Clock) -> None:
        for path in (RABBITMQ_SERVER, RABBITMQCTL):
            if not path.exists():
                raise ConfigError(f"[stateful.rabbitmq]: {path} is missing", "install rabbitmq-server")
        if not (config.home / ".erlang.cookie").is_file():
            raise ConfigError(
                f"[stateful.rabbitmq]: no .erlang.cookie in home {config.home}",
                "set home to the folder holding the cluster's shared .erlang.cookie",
            )
        for node in config.nodes:
            if not node.config.is_file():
                raise ConfigError(
                    f"[stateful.rabbitmq] node {node.name}: its config file {node.config} does not exist",
                    "set nodes.config to the node's rabbitmq.conf (RABBITMQ_CONFIG_FILE)",
                )
        self.config, self._clock = config, clock
        self.nodes: list[RabbitNode] = [_rabbit_node(n, config) for n in config.nodes]
        modes = {_partition_handling(n.config) for n in config.nodes}
        if len(modes) > 1:
            raise ConfigError(
                f"[stateful.rabbitmq]: the nodes' config files set different cluster_partition_handling "
                f"({', '.join(sorted(modes))})",
                "set one cluster_partition_handling in every node's rabbitmq.conf",
            )
        self.settings = RabbitSettings(
            partition_grace_s=config.partition_grace_s, unreadable_hold_s=config.unreadable_hold_s,
            partition_handling=modes.pop(),
        )  # fmt: skip

    def describe(self) -> str:
        names = ", ".join(n.name for n in self.nodes)
        return (
            f"rabbitmq: cluster {self.config.cluster!r} ({names}) recovered while leading, a pass every "
            f"{self.config.interval_s:g} s, partitions healed after {self.config.partition_grace_s:g} s; "
            "holds are rabbitmq_hold alerts"
            + ("; queue backlogs are rabbitmq_backlog alerts" if self.config.queues else "")
        )

    async def run(
        self, store: Store, leader_epoch: Callable[[], int | None] | None, stop: asyncio.Event
    ) -> None:
        """One term: passes until ``stop`` (the term is over, or haven stops)."""
        epoch = leader_epoch() if leader_epoch is not None else None
        recovery = RabbitRecovery.on_store(
            self.nodes, store, self.config.cluster, self._clock, epoch=epoch, settings=self.settings,
            queues=self.config.queues,
        )  # fmt: skip
        while not stop.is_set():
            try:
                decision = await recovery.run_pass()
                log.debug("rabbitmq %s: %s: %s", self.config.cluster, decision.kind.value, decision.reason)
            except Exception:  # a bug or the store gone: this pass only
                log.exception("rabbitmq %s: pass failed", self.config.cluster)
            with contextlib.suppress(TimeoutError):
                await within(stop.wait(), self.config.interval_s)


def _partition_handling(conf: Path) -> str:
    """The cluster_partition_handling a node runs with: its rabbitmq.conf (or classic rabbitmq.config),
    overridden by the advanced.config (and rabbitmq.config) beside it. A ConfigError when a file cannot be
    read or parsed: a mode is never assumed (``ignore`` would let haven restart under a pausing mode)."""
    erlang = [conf] if conf.suffix == ".config" else [conf.parent / "rabbitmq.config"]
    erlang.append(conf.parent / "advanced.config")
    try:
        main = "" if conf.suffix == ".config" else conf.read_text()
        texts = [(str(p), p.read_text()) for p in dict.fromkeys(erlang) if p.is_file()]
        return partition_handling_of_files(main, texts)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"[stateful.rabbitmq]: a node's config file cannot be read: {exc}",
            "make each node's rabbitmq.conf (and the advanced.config / rabbitmq.config beside it) "
            "readable by haven",
        ) from exc
    except ValueError as exc:
        raise ConfigError(
            f"[stateful.rabbitmq]: cannot read cluster_partition_handling from {exc}",
            "fix the file's Erlang term (`[{rabbit, [{cluster_partition_handling, pause_minority}]}].`), or "
            "set cluster_partition_handling in rabbitmq.conf; haven never assumes a mode it cannot read",
        ) from exc


def _rabbit_node(n: RabbitNodeConfig, config: RabbitConfig) -> RabbitNode:
    layout = RabbitLayout(n.name, n.folder, config.home, config.epmd_port, n.amqp_port, n.dist_port, n.config)
    if config.driver == "systemd":
        return SystemdRabbitNode(layout, n.unit, n.bus or None, cli_timeout_s=config.cli_timeout_s)
    return LocalRabbitNode(layout, cli_timeout_s=config.cli_timeout_s)
