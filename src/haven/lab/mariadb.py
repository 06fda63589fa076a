"""A MariaDB on loopback for the lab's Nova and Placement: Debian's mariadbd, run without systemd.

Who calls it: haven.lab.lab (``haven lab up``). Nova and Placement need a real database
server: on SQLite they break as soon as several processes write ("database is locked",
failed heartbeats). ``start_mariadb`` creates a data folder with ``mariadb-install-db``
(once per folder), writes a ``my.cnf`` that listens on 127.0.0.1:<port> with its socket,
pid file and error log in the folder, starts ``mariadbd`` in its own process group and
creates a password user for the lab's services and the databases they need. As root,
mariadbd refuses to run unless told ``user=root``; any other user runs it as itself.
"""

from __future__ import annotations

import getpass
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from haven.lab.process import LabProcess, LabServiceError, port_open, run_checked

MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = Path("/usr/bin/mariadb-install-db")
CLIENT = Path("/usr/bin/mariadb")
USER = "lab"
_CNF = """\
[mariadbd]
datadir = {folder}/data
socket = {folder}/mariadb.sock
pid-file = {folder}/mariadb.pid
log-error = {folder}/error.log
bind-address = 127.0.0.1
port = {port}
user = {user}
skip-name-resolve
innodb_buffer_pool_size = 64M
innodb_log_file_size = 32M
performance_schema = off
# A throw-away lab: no fsync per commit and no doublewrite (Nova's schema set-up runs several times faster).
innodb_flush_log_at_trx_commit = 0
innodb_doublewrite = 0
max_connections = 400
"""


@dataclass
class MariaDB:
    port: int
    password: str
    process: LabProcess
    folder: Path

    def url(self, database: str) -> str:
        """A SQLAlchemy URL (PyMySQL driver) for ``database`` as the lab's user."""
        return f"mysql+pymysql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}?charset=utf8"

    def stop(self) -> None:
        self.process.stop(grace_s=30)


def start_mariadb(folder: Path, port: int, databases: Sequence[str], timeout_s: float = 60.0) -> MariaDB:
    """Start MariaDB in ``folder`` on 127.0.0.1:``port`` with ``databases`` created (idempotent)."""
    for binary in (MARIADBD, INSTALL_DB, CLIENT):
        if not binary.exists():
            raise LabServiceError(f"MariaDB cannot start: {binary} is missing; run `make system-deps`")
    folder.mkdir(parents=True, exist_ok=True)
    user = getpass.getuser()
    cnf = folder / "my.cnf"
    cnf.write_text(_CNF.format(folder=folder, port=port, user=user))
    if not (folder / "data" / "mysql").exists():
        run_checked(
            [str(INSTALL_DB), "--no-defaults", f"--datadir={folder / 'data'}", f"--user={user}",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            "mariadb-install-db",
        )  # fmt: skip
    password = _stored_password(folder)
    process = LabProcess("mariadb", [str(MARIADBD), f"--defaults-file={cnf}"], folder / "mariadbd.log")
    process.start()
    try:
        process.wait_until(lambda: port_open(port), timeout_s, f"MariaDB listening on port {port}")
        statements = [f"CREATE DATABASE IF NOT EXISTS {name} CHARACTER SET utf8" for name in databases]
        statements += [
            f"CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{password}'",
            f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1'",
        ]
        _sql(folder, ";\n".join(statements))
    except BaseException:
        process.stop()
        raise
    return MariaDB(port, password, process, folder)


def _sql(folder: Path, statements: str) -> None:
    # Root logs in through the socket by unix-socket authentication (we are that OS user):
    # no root password exists to leak.
    deadline = time.monotonic() + 20
    while True:
        try:
            run_checked(
                [str(CLIENT), "--no-defaults", f"--socket={folder / 'mariadb.sock'}", "-u", _socket_user(),
                 "-e", statements],
                "creating the lab's MariaDB databases",
            )  # fmt: skip
            return
        except LabServiceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _socket_user() -> str:
    return "root" if os.getuid() == 0 else getpass.getuser()


def _stored_password(folder: Path) -> str:
    stored = folder / "lab-password"
    if stored.exists():
        return stored.read_text().strip()
    password = secrets.token_hex(12)
    stored.touch(mode=0o600)
    stored.write_text(password + "\n")
    return password
