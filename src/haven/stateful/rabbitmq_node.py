"""One real RabbitMQ node on this machine: read its state, start it, restart its app.

Who calls it: haven.stateful.rabbitmq_recovery (through the RabbitNode port below) and
haven.stateful.rabbitmq_cluster (which lays out and starts a loopback cluster for tests and drills).

A node is Debian's rabbitmq-server run directly (not Debian's wrapper, which switches to the rabbitmq
user and its system folders), with its own environment: ``RABBITMQ_NODENAME`` (rabbit-1@localhost),
its AMQP and distribution ports, ``RABBITMQ_MNESIA_BASE`` and ``RABBITMQ_LOG_BASE`` in its folder, the
cluster's Erlang port mapper (``ERL_EPMD_PORT``) and ``HOME`` (where the shared ``.erlang.cookie`` is).
What haven reads of it:
- whether its Erlang VM runs: the pid in its pid file (``RABBITMQ_PID_FILE``), checked against /proc
  (a stale pid file after a kill -9 names a dead or reused pid: the process must be a beam.smp whose
  environment names this node), else a server this object started that still runs (booting, before
  the pid file);
- its running nodes, the cluster's partitions and its alarms, as ``rabbitmqctl cluster_status`` reads
  them (``rabbit_mnesia:status()``, ``rabbit_alarm:get_alarms()`` on the node), asked through
  ``erl_call`` (Erlang/OTP's small C client of the distribution protocol: a hidden node for one call,
  connected straight to the node's distribution port) when it is installed: a ``rabbitmqctl`` call
  starts an Erlang VM and loads the CLI, 2 s on a quiet machine and 6-12 s at load 15-45 here, while
  ``erl_call`` answers in tens of milliseconds (measured 13-41 ms at load ~15). Without it, or when
  erl_call cannot connect to a node that listens (a cookie, name or TLS distribution it cannot use:
  ``CONNECT_FAILED`` below says how that is told from a node that is down),
  ``rabbitmqctl -n NODE cluster_status --formatter json`` run with the node's environment. (The Debian
  ``/usr/sbin/rabbitmqctl`` wrapper runs as the rabbitmq user with that user's cookie: haven calls
  /usr/lib/rabbitmq/bin/rabbitmqctl.)
What haven does to it: start the server (it rejoins from its Mnesia folder); restart its app
(``stop_app`` then ``start_app``: it rejoins the nodes it reaches and takes their state).
Every failure crosses as a haven.domain.errors.TemporaryError.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from haven.domain.errors import TemporaryError
from haven.stateful.rabbitmq import ClusterStatus
from haven.stateful.rabbitmq_queues import QUEUES_EXPR, QueueRead, parse_queues

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQCTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
EPMD = Path("/usr/bin/epmd")
ERL_CALL = Path("/usr/bin/erl_call")  # Debian's erlang-base ships it (erl_interface)
APP_STOPPED = "requires the 'rabbit' app to be running"  # rabbitmqctl's words when the app is stopped
# What the node answers erl_call for its status: cluster_status's own sources, as one JSON line.
STATUS_EXPR = (
    "case rabbit:is_running() of "  # rabbit_mnesia:status() fails while the app is stopped: asked first
    'false -> io:put_chars("{\\"running\\":false}"); '
    "true -> S = rabbit_mnesia:status(), io:put_chars(rabbit_json:encode(#{"
    "running => true, "
    "running_nodes => proplists:get_value(running_nodes, S, []), "
    "partitions => maps:from_list(proplists:get_value(partitions, S, [])), "
    "alarms => [case A of {resource_limit, R, N} -> #{resource => R, node => N}; "
    '_ -> #{type => iolist_to_binary(io_lib:format("~0p", [A]))} end '
    "|| {A, _} <- rabbit_alarm:get_alarms()]})) end."
)
CLI_TIMEOUT_S = 30.0
# A drill judge's rabbitmqctl reads (three at once, after the heal): measured here, three
# `cluster_status` calls at once took 13.0-13.6 s each at load ~29 (0.58 s of CPU each, 2.4 s alone at
# load 14), and calls ran past 30 s at load 27-32 while no RPC of theirs was on any node (the CLI's
# own VM starting, niced, on a loaded machine); the judge's time is not the heal's (recover_s ends
# before), so it waits longer.
JUDGE_CLI_TIMEOUT_S = 90.0
WRONG_NODE = "haven-wrong-node:"  # what guarded() prints instead when another node answered
APP_TIMEOUT_S = 120.0
# erl_call's words when it gets no distribution connection (OTP 25, /usr/bin/erl_call here, exit 1):
#   erl_call: failed to connect to node with address "127.0.0.1:PORT"
#   <ERROR> get_cookie: can't open cookie fileerl_call: can't create C node c17@vm; 0   (no cookie file)
# The first is the same, word for word, for a port nothing listens on (a node down, or booting before
# its listener opens: 10-16 ms), a wrong cookie (the node logs "Invalid challenge reply": 27-54 ms), a
# port that is not a node's (epmd's), a listener that closes at once, and a second erl_call to a node
# while another of the same name is connected (see ``client_name``). So erl_call's output cannot tell
# "down" from "cannot use this node": haven then tries a TCP connection to the distribution port itself
# (``listens``). Refused: nothing listens, the node is down or not up yet, and rabbitmqctl would fail the
# same way after seconds of starting its VM: reported at once, no fallback. Accepted: a node listens and
# refused erl_call's handshake (a cookie only rabbitmqctl has, in RABBITMQ_ERLANG_COOKIE or
# --erlang-cookie; TLS distribution; a name erl_call cannot use): ask rabbitmqctl. A timeout (erl_call's
# own -timeout ends it by SIGALRM, a node that accepted and did not answer) is no connect failure: a hung
# node would hang rabbitmqctl too.
CONNECT_FAILED = ("erl_call: failed to connect to node", "can't create C node", "get_cookie:")
# Once a node that listens refused erl_call, erl_call is not tried on it again for this long: each try
# is a handshake the node refuses (a wrong cookie's "Invalid challenge reply" in its log; an overloaded
# node's dropped handshake), then the same rabbitmqctl VM. Only the port is checked meanwhile (a node
# that does not listen is still reported at once, without a VM).
ERL_CALL_RETRY_S = 60.0
# Through rabbitmqctl (erl_call unusable), the queues are read at most this often: each read is a CLI
# VM (1-3 s here at load ~10-15, more under load) beside the status reads, and a backlog's windows are
# minutes long. Between two reads ``queues`` says so and the loop keeps the backlogs as they were.
QUEUES_CLI_EVERY_S = 60.0


_SLOTS: dict[int, set[int]] = {}  # distribution port -> erl_call name slots this process uses now
_SLOTS_LOCK = threading.Lock()


@contextlib.contextmanager
def client_name(port: int) -> Iterator[str]:
    """erl_call's own node name for one call to the node at ``port``. erl_call's default name is fixed
    (``c17``; ``-r`` draws the same one within a second): two calls to one node at once, from one
    process or two (a haven serve and a drill), then clash and the second prints "failed to connect"
    (recorded here). A name of this pid and a slot free now is unique, and the slots are reused, so the
    node's atom table (names are atoms, never freed) grows with processes, not with calls."""
    with _SLOTS_LOCK:
        busy = _SLOTS.setdefault(port, set())
        slot = next(i for i in itertools.count() if i not in busy)
        busy.add(slot)
    try:
        yield f"haven{os.getpid()}s{slot}"
    finally:
        with _SLOTS_LOCK:
            busy.discard(slot)


class CliFailed(TemporaryError):
    """A client (erl_call, rabbitmqctl) ran and exited non-zero; ``output``: its first lines."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


class CliCannotRun(TemporaryError):
    """A client could not be run at all (missing, not executable)."""


class ErlCallUnusable(TemporaryError):
    """erl_call cannot ask this node (not installed, cannot run, or refused by a node that listens):
    the caller asks rabbitmqctl instead."""


def connect_failed(output: str) -> bool:
    """Whether erl_call's ``output`` (its first lines, exit 1) says it got no connection to the node."""
    return any(words in output for words in CONNECT_FAILED)


def listens(port: int, timeout_s: float = 1.0) -> bool:
    """Whether a TCP connection to 127.0.0.1:``port`` is accepted (then closed, sending nothing)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:  # refused (nothing listens), or no answer within timeout_s
        return False


class RabbitNode(Protocol):
    """What the recovery loop needs of one node, wherever it runs."""

    name: str

    async def running(self) -> bool: ...

    async def status(self) -> ClusterStatus: ...

    async def queues(self, timeout_s: float | None = None) -> QueueRead:
        """The cluster's queues as this node lists them (haven.stateful.rabbitmq_queues), within
        ``timeout_s`` (None: the node's CLI timeout)."""
        ...

    async def start(self) -> None: ...

    async def restart_app(self) -> None: ...

    async def start_app(self) -> None: ...

    async def reachable(self, peers: Sequence[str]) -> tuple[str, ...]:
        """The nodes of ``peers`` this node's VM reaches (Erlang distribution), its app running or not."""
        ...


@dataclass(frozen=True, slots=True)
class RabbitLayout:
    """Where one node lives and listens. ``home``: the folder whose .erlang.cookie every node shares."""

    name: str  # the Erlang node name, e.g. rabbit-1@localhost
    folder: Path
    home: Path
    epmd_port: int
    amqp_port: int
    dist_port: int
    config_path: Path | None = None  # default FOLDER/rabbitmq.conf

    @property
    def config(self) -> Path:
        return self.config_path or self.folder / "rabbitmq.conf"

    @property
    def pid_file(self) -> Path:
        return self.folder / "rabbitmq.pid"

    def cli_env(self) -> dict[str, str]:
        """What rabbitmqctl needs to reach this node: the cookie's HOME and the port mapper."""
        return {
            **os.environ, "HOME": str(self.home), "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
        }  # fmt: skip

    def server_env(self) -> dict[str, str]:
        return {
            **self.cli_env(),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.config),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
        }


def parse_status(text: str) -> ClusterStatus:
    """``cluster_status --formatter json``'s output (RabbitMQ 3.10)."""
    try:
        data = json.loads(text)
        partitions = {
            str(node): tuple(str(o) for o in others)
            for node, others in (data.get("partitions") or {}).items()
        }
        alarms = tuple(_alarm(a) for a in data.get("alarms") or [])
        return ClusterStatus(tuple(str(n) for n in data["running_nodes"]), partitions, alarms)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TemporaryError(f"cluster_status answered something unreadable: {text[:200]!r}") from exc


def parse_call_status(text: str, name: str) -> ClusterStatus:
    """The node's answer to ``STATUS_EXPR`` (through erl_call): its app stopped is rabbitmqctl's error."""
    try:
        running = json.loads(text).get("running")
    except (ValueError, AttributeError) as exc:
        raise TemporaryError(f"{name} answered something unreadable: {text[:200]!r}") from exc
    if running is not True:
        raise TemporaryError(f"status of {name}: this command {APP_STOPPED} (rabbit:is_running() is false)")
    return parse_status(text)


def guarded(expr: str, name: str) -> str:
    """``expr`` (one Erlang expression ending with a full stop) run only if the node that answers is
    ``name``; otherwise it prints WRONG_NODE and its own name. erl_call reaches a node by its address and
    port, with no name to compare (rabbitmqctl finds the node by name through epmd): a ``dist_port``
    that is another node's in haven's configuration would read, or stop, the wrong node."""
    body = expr.rstrip().removesuffix(".")
    wrong = f'io:put_chars(["{WRONG_NODE}", atom_to_list(node())])'
    return f"case node() =:= {erl_atom(name)} of true -> {body}; false -> {wrong} end."


def erl_atom(name: str) -> str:
    """An Erlang expression of the atom ``name`` that does not spell it out (``list_to_atom([114,...])``):
    an expression naming a node would be refused by a drill's cut, which matches nodes' names."""
    return f"list_to_atom({list(name.encode())!r})".replace(" ", "")


def parse_atoms(text: str, among: Sequence[str]) -> tuple[str, ...]:
    """The atoms of ``among`` an Erlang term printed by ``rabbitmqctl eval`` names (quoted or not)."""
    found = {q or bare for q, bare in re.findall(r"'((?:[^'\\]|\\.)*)'|([a-z][A-Za-z0-9_@.]*)", text)}
    return tuple(name for name in among if name in found)


def _alarm(alarm: object) -> str:
    if isinstance(alarm, dict):  # {"node": ..., "resource": "memory"} / {"type": "resource_alarm", ...}
        return f"{alarm.get('resource') or alarm.get('type', '?')}@{alarm.get('node', '?')}"
    return str(alarm)


class LocalRabbitNode:
    """A node whose server runs on this machine, started by haven with its layout's environment."""

    def __init__(
        self,
        layout: RabbitLayout,
        cli_timeout_s: float = CLI_TIMEOUT_S,
        erl_call: Path = ERL_CALL,
        rabbitmqctl: Path = RABBITMQCTL,
    ) -> None:
        self.layout = layout
        self.name = layout.name
        self.cli_timeout_s = cli_timeout_s
        self.erl_call = erl_call  # a path of the tests' own in tests: the clients are arguments
        self.rabbitmqctl = rabbitmqctl
        self.started: list[subprocess.Popen[bytes]] = []  # servers this object started (their groups)
        self.erl_call_retry_s = ERL_CALL_RETRY_S
        self.queues_cli_every_s = QUEUES_CLI_EVERY_S
        self._refused: tuple[float, str] | None = None  # when erl_call was last refused, and its words
        self._queues_by_cli_at: float | None = None  # when the queues were last read through rabbitmqctl

    # ---- read --------------------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The running Erlang VM's pid (from the pid file, checked in /proc), else None."""
        try:
            pid = int(self.layout.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        if " Z " in stat.split(")", 1)[1][:4]:
            return None
        ours = b"\0RABBITMQ_NODENAME=" + self.name.encode() + b"\0" in b"\0" + environ
        return pid if b"beam" in cmdline and ours else None

    def runs(self) -> bool:
        return self.pid() is not None or any(p.poll() is None for p in self.started)

    async def running(self) -> bool:
        return await asyncio.to_thread(self.runs)

    async def status(self) -> ClusterStatus:
        try:
            return parse_call_status(await self.call(STATUS_EXPR), self.name)
        except ErlCallUnusable:
            pass  # rabbitmqctl may still reach it (it says why not, if not)
        return parse_status(await self.ctl("cluster_status", "--formatter", "json"))

    async def queues(self, timeout_s: float | None = None) -> QueueRead:
        """Every queue's totals and the queues holding messages (``QUEUES_EXPR``: one call whatever the
        number of queues), through erl_call, else ``rabbitmqctl eval`` of the same expression (one CLI VM
        for every vhost, where ``list_queues -p VHOST`` would take one per vhost)."""
        try:
            return parse_queues(await self.call(QUEUES_EXPR, timeout_s), self.name)
        except ErlCallUnusable as exc:
            now, last = time.monotonic(), self._queues_by_cli_at
            if last is not None and now - last < self.queues_cli_every_s:
                raise TemporaryError(
                    f"queues of {self.name} not read: {exc}; through rabbitmqctl they are read once every "
                    f"{self.queues_cli_every_s:g} s (last {now - last:.0f} s ago)"
                ) from exc
            self._queues_by_cli_at = now
        return parse_queues(await self.ctl("eval", QUEUES_EXPR, timeout_s=timeout_s), self.name)

    async def cli_status(self, timeout_s: float | None = None) -> ClusterStatus:
        """The node's status as an operator's ``rabbitmqctl cluster_status`` shows it (a drill's judge
        reads it so, not through haven's own reader)."""
        return parse_status(await self.ctl("cluster_status", "--formatter", "json", timeout_s=timeout_s))

    async def call(self, expr: str, timeout_s: float | None = None) -> str:
        """What ``expr`` (Erlang expressions, ending with a full stop) prints on the node, through
        erl_call to its distribution port. ErlCallUnusable when erl_call cannot be used for this node
        (missing, or refused by a node that listens: ask rabbitmqctl instead; once refused, not tried
        again for ``erl_call_retry_s``, only the port checked); any other TemporaryError when the node
        does not listen (down, or booting) or fails."""
        if not self.erl_call.exists():
            raise ErlCallUnusable(f"erl_call to {self.name}: {self.erl_call} is not installed")
        timeout = timeout_s or self.cli_timeout_s
        address = f"127.0.0.1:{self.layout.dist_port}"
        what = f"erl_call to {self.name}"
        if self._refused is not None and time.monotonic() - self._refused[0] < self.erl_call_retry_s:
            if not await asyncio.to_thread(listens, self.layout.dist_port):
                raise TemporaryError(f"{what}: nothing listens on {address}")
            ago = time.monotonic() - self._refused[0]
            raise ErlCallUnusable(
                f"{what}: not tried ({ago:.0f} s ago it was refused: {self._refused[1]}; tried again after "
                f"{self.erl_call_retry_s:g} s)"
            )
        try:
            with client_name(self.layout.dist_port) as me:
                argv = [
                    str(self.erl_call), "-h", me, "-address", address, "-timeout",
                    str(max(1, math.ceil(timeout))), "-fetch_stdout", "-no_result_term", "-e",
                ]  # fmt: skip
                # erl_call's own -timeout ends it by SIGALRM; the extra 5 s only catch a stuck binary
                stdout = await self._run(argv, what, timeout, timeout + 5, guarded(expr, self.name) + "\n")
        except CliFailed as exc:
            if not connect_failed(exc.output):
                raise
            if await asyncio.to_thread(listens, self.layout.dist_port):
                self._refused = (time.monotonic(), exc.output[:200])
                raise ErlCallUnusable(
                    f"{what}: {exc.output} (its distribution port {address} listens: a cookie, name or "
                    "TLS distribution erl_call cannot use)"
                ) from exc
            raise TemporaryError(f"{what}: {exc.output} (nothing listens on {address})") from exc
        except CliCannotRun as exc:
            raise ErlCallUnusable(str(exc)) from exc
        self._refused = None
        if stdout.startswith(WRONG_NODE):
            other = stdout.removeprefix(WRONG_NODE).strip()[:255]
            raise TemporaryError(
                f"erl_call to {self.name} at {address} reached node {other!r} instead ({address} is that "
                f"node's distribution port): fix {self.name}'s dist_port in haven's configuration"
            )
        return stdout

    async def ctl(self, *args: str, timeout_s: float | None = None) -> str:
        """``rabbitmqctl -n NODE ARGS``'s output; a TemporaryError with its last lines when it fails."""
        timeout = timeout_s or self.cli_timeout_s
        argv = [str(self.rabbitmqctl), "-n", self.name, *args]
        return await self._run(argv, f"rabbitmqctl {args[0]} on {self.name}", timeout, timeout)

    async def _run(self, argv: list[str], what: str, timeout_s: float, wait_s: float, stdin: str = "") -> str:
        """``argv``'s stdout, run with the node's CLI environment (its cookie's HOME, the port mapper);
        killed after ``wait_s``. CliFailed (its first lines) when it exits non-zero, CliCannotRun when it
        cannot be run, a TemporaryError when it does not answer in time: each message begins ``what``."""
        try:
            result = await asyncio.to_thread(
                subprocess.run, argv, input=stdin, env=self.layout.cli_env(), capture_output=True,
                text=True, timeout=wait_s, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise TemporaryError(f"{what}: no answer in {timeout_s:g} s") from exc
        except OSError as exc:
            raise CliCannotRun(f"{what}: {Path(argv[0]).name} cannot run: {exc}") from exc
        if result.returncode != 0:
            lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
            if result.returncode < 0:  # erl_call's own -timeout is a SIGALRM
                why = f"no answer in {timeout_s:g} s (signal {-result.returncode})"
            else:
                why = " ".join(lines[:2])[:300] or f"exit {result.returncode}"
            raise CliFailed(f"{what}: {why}", why)
        return result.stdout

    # ---- act ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the server (not waiting for its boot: the next passes watch it). Never twice."""
        if await self.running():
            return
        await asyncio.to_thread(self._spawn)

    def _spawn(self) -> None:
        layout = self.layout
        (layout.folder / "log").mkdir(parents=True, exist_ok=True)
        with open(layout.folder / "server.log", "ab") as out:
            process = subprocess.Popen(
                [str(RABBITMQ_SERVER)], stdout=out, stderr=subprocess.STDOUT, env=layout.server_env(),
                cwd=layout.folder, start_new_session=True,
            )  # fmt: skip
        self.started.append(process)

    async def restart_app(self) -> None:
        """``stop_app`` then ``start_app`` (which returns once the app runs again)."""
        await self._app("stop")
        await self.start_app()

    async def start_app(self) -> None:
        await self._app("start")

    async def _app(self, verb: str) -> None:
        """``rabbitmqctl stop_app`` / ``start_app``: what they call on the node, ``rabbit:stop()`` /
        ``rabbit:start()``, through erl_call when it can be used (no CLI VM to start), else the CLI."""
        try:
            out = await self.call(f'io:put_chars(io_lib:format("~0p", [rabbit:{verb}()])).', APP_TIMEOUT_S)
        except ErlCallUnusable:
            await self.ctl(f"{verb}_app", timeout_s=APP_TIMEOUT_S)
            return
        if out.strip() != "ok":
            raise TemporaryError(f"{verb}_app on {self.name}: rabbit:{verb}() answered {out.strip()[:300]!r}")

    async def reachable(self, peers: Sequence[str]) -> tuple[str, ...]:
        """The nodes of ``peers`` this node's VM reaches: ``net_adm:ping`` from it (``rabbitmqctl eval``
        needs only the VM, so it answers while the app is stopped or paused). It is the test RabbitMQ's
        pause_minority makes (a paused node pings the others and resumes once it reaches a majority)."""
        expr = ",".join(erl_atom(p) for p in peers)
        try:
            out = await self.call(
                f"io:put_chars(rabbit_json:encode([N || N <- [{expr}], net_adm:ping(N) =:= pong]))."
            )
        except ErlCallUnusable:
            atoms = ",".join("'" + p.replace("\\", "\\\\").replace("'", "\\'") + "'" for p in peers)
            out = await self.ctl("eval", f"[N || N <- [{atoms}], net_adm:ping(N) =:= pong].")
            return parse_atoms(out, peers)
        try:
            pinged = json.loads(out)
        except ValueError as exc:
            raise TemporaryError(f"{self.name} answered something unreadable: {out[:200]!r}") from exc
        return tuple(p for p in peers if p in pinged)

    async def remote_calls(self) -> str:
        """What the node's processes run for other nodes (a CLI's rpc, a peer's): each caller's node and
        the process's current stack, printed by the node (a drill's judge reads it when a CLI hangs)."""
        out = await self.call(
            "Me = self(), Mine = group_leader(), "
            "R = [{node(G), [{M, F, A} || {M, F, A, _} <- S]} || P <- processes(), P =/= Me, "
            "{group_leader, G} <- [erlang:process_info(P, group_leader)], G =/= Mine, node(G) =/= node(), "
            "{current_stacktrace, S} <- [erlang:process_info(P, current_stacktrace)]], "
            'io:put_chars(io_lib:format("~0p", [R])).'
        )
        return out.strip()[:1500]

    def log_tail(self, lines: int = 8) -> str:
        path = self.layout.folder / "log" / f"{self.name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def write_config(layout: RabbitLayout, peers: list[str], extra: Mapping[str, str] | None = None) -> None:
    """A rabbitmq.conf for a loopback node: classic peer discovery of ``peers``, partitions ignored.

    ``cluster_partition_handling = ignore`` leaves a partition to haven (RabbitMQ's own autoheal or
    pause_minority would act first); every node lists the same peers, so they form one cluster at boot.
    """
    layout.folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "cluster_partition_handling = ignore",
        "cluster_formation.peer_discovery_backend = classic_config",
        *(f"cluster_formation.classic_config.nodes.{i} = {peer}" for i, peer in enumerate(peers, 1)),
        *(f"{key} = {value}" for key, value in (extra or {}).items()),
    ]
    layout.config.write_text("\n".join(lines) + "\n")
    (layout.folder / "enabled_plugins").write_text("[].\n")
