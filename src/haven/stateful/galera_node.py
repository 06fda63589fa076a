"""One real MariaDB Galera node on this machine: read its state, start it, bootstrap it.

Who calls it: haven.stateful.galera_recovery (through the GaleraNode port below), haven.stateful.cluster
(which lays out and starts a loopback cluster for tests, drills and bench/galera.py).

A node is a data folder with its own ``my.cnf`` (Debian's mariadbd, galera-4's provider, its own SQL,
gcomm, IST and SST ports). What haven reads of it:
- whether its mariadbd runs: the pid in its pid file, checked against /proc (a stale pid file after a
  kill -9 names a dead or reused pid), else a process of its my.cnf found in /proc (one started by an
  earlier haven, stopped since, before the server wrote its pid file), else a server listening on its
  unix socket (one started otherwise: by systemd or by hand, with another pid file): any of these is
  "running", and a running node is never recovered nor started;
- ``grastate.dat`` (uuid, seqno, safe_to_bootstrap, and its modification time);
- its wsrep status over its unix socket (root by socket authentication: no password exists);
- the recovered position, by ``mariadbd --wsrep-recover`` (as Debian's ``galera_recovery`` does), only
  when it is stopped and its seqno is -1.
What haven does to it: start it with ``--wsrep-start-position`` (it rejoins by IST, or SST when too far
behind); bootstrap it: ``safe_to_bootstrap: 1`` written into its grastate.dat, then ``--wsrep-new-cluster``
(what ``galera_new_cluster`` does); or, on a running node left in a non-primary component,
``SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'``.
Every failure crosses as a haven.domain.errors.TemporaryError or PermanentError.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import getpass
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from haven.domain.errors import PermanentError, TemporaryError
from haven.stateful.galera import GraState, LiveStatus, Position

MARIADBD = Path("/usr/sbin/mariadbd")
PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
_RECOVERED = re.compile(r"Recovered position:\s*([0-9a-f-]{36}):(-?\d+)")


class GaleraNode(Protocol):
    """What the recovery loop needs of one node, wherever it runs."""

    name: str

    async def running(self) -> bool: ...

    async def grastate(self) -> GraState: ...

    async def live(self) -> LiveStatus: ...

    async def recover_position(self) -> Position: ...

    async def start(self, position: Position | None) -> None: ...

    async def bootstrap(self, position: Position) -> None: ...


@dataclass(frozen=True, slots=True)
class NodeLayout:
    """Where one node lives (and, for a loopback node, listens).

    ``folder`` holds haven's own files for the node (the ``--wsrep-recover`` log, the server's output);
    its my.cnf, data folder, unix socket and pid file default to files in it (the loopback layout), or
    are where haven.toml's ``[stateful.galera]`` says (the ``*_path`` fields).
    """

    name: str
    folder: Path
    port: int = 0  # SQL (loopback clusters only: written into the my.cnf they lay out)
    gcomm_port: int = 0
    ist_port: int = 0
    sst_port: int = 0
    cnf_path: Path | None = None
    data_path: Path | None = None
    socket_path: Path | None = None
    pid_path: Path | None = None

    @property
    def cnf(self) -> Path:
        return self.cnf_path or self.folder / "my.cnf"

    @property
    def data(self) -> Path:
        return self.data_path or self.folder / "data"

    @property
    def socket(self) -> Path:
        return self.socket_path or self.folder / "mariadb.sock"

    @property
    def pid_file(self) -> Path:
        return self.pid_path or self.folder / "mariadb.pid"


def server_user() -> str:
    """The OS user mariadbd runs as: ``mysql`` when haven runs as root.

    As root, the rsync SST's receiving daemon drops to ``nobody`` and cannot write the data folder;
    running the server as ``mysql`` (as Debian's unit does) keeps the whole transfer one user's.
    """
    return "mysql" if os.getuid() == 0 else getpass.getuser()


def write_config(layout: NodeLayout, peers: list[NodeLayout], cluster: str) -> None:
    members = ",".join(f"127.0.0.1:{p.gcomm_port}" for p in peers)
    options = (
        f"gmcast.listen_addr=tcp://127.0.0.1:{layout.gcomm_port};ist.recv_addr=127.0.0.1:{layout.ist_port};"
    )
    options += "gcache.size=64M;gcache.recover=yes"
    layout.cnf.write_text(
        f"""[mariadbd]
datadir = {layout.data}
socket = {layout.socket}
pid-file = {layout.pid_file}
log-error = {layout.folder}/error.log
bind-address = 127.0.0.1
port = {layout.port}
user = {server_user()}
skip-name-resolve
performance_schema = off
innodb_buffer_pool_size = 32M
innodb_log_file_size = 16M
# Every acknowledged commit is durable on the node that acknowledged it (the full-outage drill counts them).
innodb_flush_log_at_trx_commit = 1
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
wsrep_on = ON
wsrep_provider = {PROVIDER}
wsrep_cluster_name = {cluster}
wsrep_cluster_address = gcomm://{members}
wsrep_node_name = {layout.name}
wsrep_node_address = 127.0.0.1:{layout.gcomm_port}
wsrep_provider_options = "{options}"
wsrep_sst_method = rsync
wsrep_sst_receive_address = 127.0.0.1:{layout.sst_port}
"""
    )


def sql_connect(socket_path: Path, timeout_s: float, autocommit: bool = False) -> Any:
    """A PyMySQL connection as root over the node's unix socket (socket authentication: no password).

    The socket is opened here: PyMySQL leaks its own when the unix socket's connect fails (a node
    starting or down), which the tests see as an unclosed-socket warning.
    """
    import socket

    import pymysql  # type: ignore[import-untyped]

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.connect(str(socket_path))
        connection = pymysql.connect(
            unix_socket=str(socket_path), user="root" if os.getuid() == 0 else getpass.getuser(),
            connect_timeout=timeout_s, read_timeout=timeout_s, write_timeout=timeout_s,
            autocommit=autocommit, defer_connect=True,
        )  # fmt: skip
        connection.connect(sock)
    except BaseException:
        sock.close()
        raise
    return connection


def parse_grastate(text: str) -> GraState:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    try:
        return GraState(fields["uuid"], int(fields["seqno"]), fields.get("safe_to_bootstrap", "0") == "1")
    except (KeyError, ValueError) as exc:
        raise PermanentError(f"grastate.dat is not Galera's saved state ({exc})") from exc


class LocalGaleraNode:
    """A node on this machine, driven through its files and its mariadbd (started in its own session)."""

    def __init__(self, layout: NodeLayout, sql_timeout_s: float = 2.0) -> None:
        self.name = layout.name
        self.layout = layout
        self._timeout = sql_timeout_s
        self.started: list[subprocess.Popen[bytes]] = []  # every server this driver started (to stop them)

    # ---- reads -----------------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The pid of this node's running mariadbd, or None."""
        try:
            pid = int(self.layout.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return self._own_child() or self._scan(recovering=False)
        if str(self.layout.cnf).encode() in cmdline and b"--wsrep-recover" not in cmdline:
            return pid
        return self._own_child() or self._scan(recovering=False)

    def _own_child(self) -> int | None:
        # Before mariadbd writes its pid file (a start, an SST) the process this driver started still runs.
        for process in self.started:
            if process.poll() is None:
                return process.pid
        return None

    def _scan(self, recovering: bool) -> int | None:
        """A live mariadbd of this node's my.cnf, found in /proc: one an earlier haven (stopped since)
        started and that has not written its pid file yet must not be started a second time."""
        wanted = f"--defaults-file={self.layout.cnf}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if wanted in argv and (b"--wsrep-recover" in argv) == recovering:
                return int(entry.name)
        return None

    def runs(self) -> bool:
        """Whether a server runs on this node: its pid (above), or its unix socket accepting connections."""
        return self.pid() is not None or self._socket_listens()

    def _socket_listens(self) -> bool:
        """A process listens on this node's unix socket: a server runs there, whoever started it.

        A refused connection or no socket file: nothing listens (a killed server leaves its socket file
        behind). Any other failure cannot tell, and a node that cannot be read is never started.
        """
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._timeout)
            sock.connect(str(self.layout.socket))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        except TimeoutError:
            return True  # accepted into a full backlog: something listens
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
                return False
            raise TemporaryError(
                f"{self.name}: cannot tell whether {self.layout.socket} is served ({exc})"
            ) from exc
        finally:
            sock.close()
        return True

    async def running(self) -> bool:
        return await asyncio.to_thread(self.runs)

    async def grastate(self) -> GraState:
        """grastate.dat, with its modification time (a read made beside it is kept while it is unchanged)."""
        path = self.layout.data / "grastate.dat"

        def read() -> tuple[str, int]:
            for _ in range(3):
                before = path.stat().st_mtime_ns
                text = path.read_text()
                if path.stat().st_mtime_ns == before:
                    return text, before
            raise OSError(errno.EBUSY, "rewritten while it was read, three times")

        try:
            text, mtime_ns = await asyncio.to_thread(read)
        except FileNotFoundError as exc:
            raise PermanentError(f"{self.layout.data}/grastate.dat does not exist") from exc
        except OSError as exc:
            raise TemporaryError(f"{self.layout.data}/grastate.dat: {exc.strerror}") from exc
        return dataclasses.replace(parse_grastate(text), mtime_ns=mtime_ns)

    async def live(self) -> LiveStatus:
        rows = await asyncio.to_thread(self._query, "SHOW GLOBAL STATUS LIKE 'wsrep_%'")
        status = {str(name): str(value) for name, value in rows}
        try:
            return LiveStatus(
                ready=status.get("wsrep_ready") == "ON",
                cluster_status=status.get("wsrep_cluster_status", "Disconnected"),
                cluster_size=int(status.get("wsrep_cluster_size", "0")),
                local_state=status.get("wsrep_local_state_comment", ""),
                state_uuid=status.get("wsrep_cluster_state_uuid", ""),
                last_committed=int(status.get("wsrep_last_committed", "-1")),
            )
        except ValueError as exc:
            raise TemporaryError(f"{self.name}: unreadable wsrep status ({exc})") from exc

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        import pymysql

        try:
            connection = sql_connect(self.layout.socket, self._timeout)
        except (OSError, pymysql.MySQLError) as exc:
            raise TemporaryError(f"{self.name}: SQL does not answer ({exc.args[-1]})") from exc
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        except pymysql.MySQLError as exc:
            raise TemporaryError(f"{self.name}: {sql!r} failed ({exc.args[-1]})") from exc
        finally:
            connection.close()

    async def recover_position(self) -> Position:
        """``mariadbd --wsrep-recover``: InnoDB's last committed position (the server must be stopped)."""
        if await asyncio.to_thread(self.runs):
            raise PermanentError(f"{self.name} runs: its position is read live, not recovered")
        await self._recovery_finished()  # one an earlier haven started: two on one data folder fail
        log = self.layout.folder / "wsrep-recover.log"
        log.unlink(missing_ok=True)
        argv = [str(MARIADBD), f"--defaults-file={self.layout.cnf}", "--wsrep-recover", f"--log-error={log}"]
        try:
            result = await asyncio.to_thread(
                subprocess.run, argv, capture_output=True, timeout=120, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise TemporaryError(f"{self.name}: --wsrep-recover did not finish in 120 s") from exc
        text = log.read_text(errors="replace") if log.exists() else result.stderr.decode(errors="replace")
        found = _RECOVERED.findall(text)
        if result.returncode != 0 or not found:
            tail = " | ".join(text.strip().splitlines()[-3:])
            raise PermanentError(
                f"{self.name}: --wsrep-recover found no position (exit {result.returncode}): {tail}"
            )
        uuid, seqno = found[-1]
        return Position(uuid, int(seqno))

    async def _recovery_finished(self, timeout_s: float = 120.0) -> None:
        for _ in range(int(timeout_s / 0.2)):
            if await asyncio.to_thread(self._scan, True) is None:
                return
            await asyncio.sleep(0.2)
        raise TemporaryError(f"{self.name}: another --wsrep-recover still runs after {timeout_s:.0f} s")

    # ---- effects ---------------------------------------------------------------------------------

    async def start(self, position: Position | None) -> None:
        extra = [f"--wsrep-start-position={position}"] if position is not None else []
        await asyncio.to_thread(self._spawn, extra)

    async def bootstrap(self, position: Position) -> None:
        if await asyncio.to_thread(self.runs):
            # A running node in a non-primary component: Galera's own in-place bootstrap.
            await asyncio.to_thread(self._query, "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
            return
        await asyncio.to_thread(self._mark_safe)
        await asyncio.to_thread(self._spawn, ["--wsrep-new-cluster", f"--wsrep-start-position={position}"])

    async def bootstrap_new(self) -> None:
        """The very first start of a new cluster (no grastate.dat yet)."""
        await asyncio.to_thread(self._spawn, ["--wsrep-new-cluster"])

    def error_tail(self, lines: int = 5) -> str:
        log = self.layout.folder / "error.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def _mark_safe(self) -> None:
        path = self.layout.data / "grastate.dat"
        text = path.read_text()
        if "safe_to_bootstrap: 1" in text:
            return
        if "safe_to_bootstrap: 0" not in text:
            raise PermanentError(f"{path} has no safe_to_bootstrap line to set")
        temporary = path.with_suffix(".haven")
        temporary.write_text(text.replace("safe_to_bootstrap: 0", "safe_to_bootstrap: 1"))
        stat = path.stat()
        os.chown(temporary, stat.st_uid, stat.st_gid)
        os.replace(temporary, path)

    def _spawn(self, extra: list[str]) -> None:
        if self.runs():
            return  # already running: starting it again is a no-op (the step is idempotent)
        if not MARIADBD.exists() or not PROVIDER.exists():
            raise PermanentError(f"{MARIADBD} or {PROVIDER} is missing; run `make system-deps`")
        with open(self.layout.folder / "mariadbd.out", "ab") as out:
            process = subprocess.Popen(
                [str(MARIADBD), f"--defaults-file={self.layout.cnf}", *extra],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.started.append(process)
