"""A client that writes to a Galera cluster and records every commit the server acknowledged.

Who calls it: the Galera tests, ``haven drill galera-*`` and bench/galera.py, to judge an outage from
the data: every id recorded here was acknowledged by a COMMIT that returned, so it must be in the table
afterwards (``missing``). A thread, because it must keep writing while the event loop drives recovery.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from haven.stateful.galera_node import sql_connect

TABLE = "haven_drill.acked"


def connect(socket_path: Path, timeout_s: float = 2.0) -> Any:
    return sql_connect(socket_path, timeout_s, autocommit=True)


def prepare(socket_path: Path) -> None:
    connection = connect(socket_path)
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE IF NOT EXISTS haven_drill")
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGINT PRIMARY KEY, at DOUBLE) ENGINE=InnoDB"
            )
    finally:
        connection.close()


class Writer:
    """Writes rows through ``sockets`` (the first that answers: one writer node at a time, as HAProxy)."""

    def __init__(self, sockets: Sequence[Path], start_id: int = 1, timeout_s: float = 15.0) -> None:
        """``timeout_s``: a client's patience; Galera pauses writes until it evicts a dead node (~5 s)."""
        self._timeout = timeout_s
        self._sockets = list(sockets)
        self._next = start_id
        self.acked: list[int] = []
        self.failed = 0
        self.last_error = ""
        self.errors: dict[str, int] = {}  # each distinct error (class and message) and how often
        self._connection: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="galera-writer", daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._write_one()
        finally:
            if self._connection is not None:
                _close(self._connection)

    def _write_one(self) -> None:
        if self._connection is None:
            self._connection = self._connect()
            if self._connection is None:
                time.sleep(0.1)
                return
        row = self._next
        self._next += 1
        try:
            with self._connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO {TABLE} VALUES (%s, %s)", (row, time.time()))
            self.acked.append(row)  # the COMMIT (autocommit) returned: acknowledged
        except Exception as exc:
            self.failed += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            self.errors[self.last_error] = self.errors.get(self.last_error, 0) + 1
            _close(self._connection)
            self._connection = None
            time.sleep(0.05)

    def _connect(self) -> Any:
        for path in self._sockets:
            try:
                return connect(path, timeout_s=self._timeout)
            except Exception:
                continue
        return None


def missing(socket_path: Path, acked: Sequence[int]) -> list[int]:
    """The acknowledged ids the node at ``socket_path`` does not have."""
    connection = connect(socket_path, timeout_s=10.0)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {TABLE}")
            present = {int(row[0]) for row in cursor.fetchall()}
    finally:
        connection.close()
    return [row for row in acked if row not in present]


def _close(connection: Any) -> None:
    try:
        connection.close()
    except Exception:
        return
