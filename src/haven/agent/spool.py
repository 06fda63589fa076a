"""The agent's spool: every notification is written here before it is sent, and removed once delivered.

Who calls it: ``haven.agent.runner`` adds each report (libvirt event, process change) with ``add``;
``haven.agent.reporter`` sends ``pending()`` in order and calls ``remove`` after the engine took
(or definitively refused) one. An agent that is stopped or killed with undelivered notifications
finds them here at its next start, so a restart loses nothing.

A SQLite file (stdlib, one writer: the agent's event loop thread) in the agent's state folder, in
WAL mode with synchronous=FULL so that an added row survives a crash of the host right after.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haven.domain.errors import ConfigError

SPOOL_FILE = "spool.sqlite"


@dataclass(frozen=True)
class Spooled:
    id: int
    body: dict[str, Any]
    attempts: int


class Spool:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / SPOOL_FILE
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the agent's spool {self.path}: {exc}",
                "set agent.state_dir to a folder the agent may write",
            ) from exc

    def add(self, body: dict[str, Any]) -> int:
        cursor = self._db.execute("INSERT INTO spool (body) VALUES (?)", (json.dumps(body),))
        return int(cursor.lastrowid or 0)

    def pending(self, limit: int = 100) -> list[Spooled]:
        rows = self._db.execute("SELECT id, body, attempts FROM spool ORDER BY id LIMIT ?", (limit,))
        return [Spooled(row[0], json.loads(row[1]), row[2]) for row in rows]

    def attempted(self, item_id: int) -> None:
        self._db.execute("UPDATE spool SET attempts = attempts + 1 WHERE id = ?", (item_id,))

    def remove(self, item_id: int) -> None:
        self._db.execute("DELETE FROM spool WHERE id = ?", (item_id,))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM spool").fetchone()[0])

    def close(self) -> None:
        self._db.close()
