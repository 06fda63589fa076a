"""A throw-away PostgreSQL server from Debian's binaries, on a free loopback port, in a folder of its own.

Who calls it: ``haven drill leader-loss`` (its engines share a PostgreSQL store) and the tests'
session fixtures (tests/store/postgres_server.py). It listens only on 127.0.0.1 with trust
authentication and durability off (a throw-away server); running as root, it runs as the
``postgres`` system user through ``runuser``, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

from haven.lab.process import LabServiceError, free_port

POSTGRES_ROOT = Path("/usr/lib/postgresql")
USER = "postgres"
START_TIMEOUT_S = 30


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    candidates = [
        path / "bin"
        for path in POSTGRES_ROOT.glob("*")
        if (path / "bin" / "initdb").exists() and (path / "bin" / "pg_ctl").exists()
    ]
    return max(candidates, key=_version, default=None)


def _version(bindir: Path) -> list[int]:
    return [int(number) for number in re.findall(r"\d+", bindir.parent.name)]


class PostgresServer:
    """One running PostgreSQL server; ``url_for(name)`` gives a haven store URL for a database."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="haven-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = free_port()
        self._as_postgres = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
        self._running = False

    def _run(self, *argv: str) -> None:
        command = [*self._as_postgres, *argv]
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise LabServiceError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{log}"
            )

    def start(self) -> None:
        if self._as_postgres:
            shutil.chown(self.folder, USER, USER)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER,
            "--auth=trust", "--no-locale", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.folder}",
                # A throw-away server: durability only costs time here.
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            ]
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", str(START_TIMEOUT_S), "start",
        )  # fmt: skip
        self._running = True

    def stop(self) -> None:
        try:
            if self._running:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
                self._running = False
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url_for(self, database: str, schema: str | None = None) -> str:
        """A haven store URL for ``database``; with ``schema``, tables live (and are looked up) there."""
        url = f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"
        return f"{url}?options=-csearch_path%3D{schema}" if schema else url

    def _connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname=database, autocommit=True)

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (named ``name`` or a random name); returns its name.

        This takes about 0.3 s; ``create_schema`` (a few ms) isolates tests just as well.
        """
        name = name or _random_name()
        with self._connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, closing connections that are still open to it."""
        with self._connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create_schema(self, database: str, name: str | None = None) -> str:
        """Create an empty schema in ``database``; returns its name (see ``url_for``)."""
        name = name or _random_name()
        with self._connect(database) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return name

    def drop_schema(self, database: str, name: str) -> None:
        with self._connect(database) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _random_name() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"
