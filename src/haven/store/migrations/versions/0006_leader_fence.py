"""The store's leader fence: the newest leader epoch that wrote to the store, one row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22

Every write an engine makes as leader (steps, alerts, notifications it opens, host conditions)
raises this row to its epoch in the same transaction, or is refused when a newer leader raised it
higher (haven.store.fencing), so a deposed leader can no longer write anything a leader writes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "leader_fence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leader_fence")),
    )
    op.bulk_insert(table, [{"id": 1, "epoch": 0}])


def downgrade() -> None:
    op.drop_table("leader_fence")
