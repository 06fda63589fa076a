"""Epoch fencing: each notification remembers the highest leader epoch that worked on it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21

Every recovery step's intent commit is a test-and-set on this column (``owner_epoch IS NULL
OR owner_epoch <= :epoch``), so an engine deposed by a newer leader cannot commit a step,
and therefore cannot act, even if it still believes it leads (see haven.store.fencing).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("owner_epoch", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("owner_epoch")
