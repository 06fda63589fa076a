"""Backups: one row per backup of a server, and one per restore or restore drill, issued before the effect.

Revision ID: 0010
Revises: 0013
Create Date: 2026-12-06

haven.backups' runner writes a backup ``issued`` before asking Nova (createBackup) or Cinder, then
``creating``, ``available``, ``deleting``, ``deleted`` or ``failed``; a partial unique index backs a
window of a server up once (failed attempts aside) and another keeps one backup per server in flight.
Restores and drills are rows of backup_restores, written before the boot or rebuild is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0010"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_IN_FLIGHT = "state IN ('issued', 'creating')"


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("server_id", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("slot", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("detail", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backups")),
    )
    op.create_index(op.f("ix_backups_server_id"), "backups", ["server_id"], unique=False)
    op.create_index(op.f("ix_backups_state"), "backups", ["state"], unique=False)
    op.create_index(op.f("ix_backups_created_at"), "backups", ["created_at"], unique=False)
    op.create_index(
        "uq_backups_window", "backups", ["server_id", "slot"], unique=True,
        sqlite_where=sa.text("state != 'failed'"), postgresql_where=sa.text("state != 'failed'"),
    )  # fmt: skip
    op.create_index(
        "uq_backups_in_flight", "backups", ["server_id"], unique=True,
        sqlite_where=sa.text(_IN_FLIGHT), postgresql_where=sa.text(_IN_FLIGHT),
    )  # fmt: skip
    op.create_table(
        "backup_restores",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("server_id", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("detail", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_restores")),
    )
    op.create_index(op.f("ix_backup_restores_server_id"), "backup_restores", ["server_id"], unique=False)
    op.create_index(op.f("ix_backup_restores_state"), "backup_restores", ["state"], unique=False)
    op.create_index(op.f("ix_backup_restores_created_at"), "backup_restores", ["created_at"], unique=False)


def downgrade() -> None:
    for name in ("created_at", "state", "server_id"):
        op.drop_index(op.f(f"ix_backup_restores_{name}"), table_name="backup_restores")
    op.drop_table("backup_restores")
    op.drop_index("uq_backups_in_flight", table_name="backups")
    op.drop_index("uq_backups_window", table_name="backups")
    for name in ("created_at", "state", "server_id"):
        op.drop_index(op.f(f"ix_backups_{name}"), table_name="backups")
    op.drop_table("backups")
