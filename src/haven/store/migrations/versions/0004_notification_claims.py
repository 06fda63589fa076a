"""Notifications can be claimed by an external system (custom recovery): who, and since when.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

The progress such a system reports is kept as steps of the notification (kind
``external``), so no new table is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(255), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_by")
