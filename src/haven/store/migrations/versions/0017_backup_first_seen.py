"""Backups: when haven first saw each protected server, kept across restarts.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

haven.backups' runner writes a row the first pass that finds a server protected and deletes it once
the server is no longer protected. The planner counts a server never backed up as missed or stale
from that time (haven.backups.planner): kept only in memory, a restart forgot it, and a server haven
restarted more often than its policy's period (or never able to be backed up) never alerted. A store
from before this revision starts with no rows: each protected server is first seen at the first pass
after the upgrade.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "backup_first_seen",
        sa.Column("server_id", sa.String(255), nullable=False),
        sa.Column("first_seen", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("server_id", name=op.f("pk_backup_first_seen")),
    )


def downgrade() -> None:
    op.drop_table("backup_first_seen")
