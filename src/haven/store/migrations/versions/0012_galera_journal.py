"""Galera's recovery steps: one row per start or bootstrap of a node, issued before the effect.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-06

haven.stateful.galera_recovery inserts a step ``issued`` before it starts or bootstraps a node and
finishes it ``done`` or ``failed`` after; the partial unique index keeps one unfinished step per cluster,
so an engine restarted mid-recovery finishes that step before it can issue another.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNFINISHED = "state = 'issued'"


def upgrade() -> None:
    op.create_table(
        "galera_actions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("cluster", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("position", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_galera_actions")),
    )
    op.create_index(op.f("ix_galera_actions_created_at"), "galera_actions", ["created_at"], unique=False)
    op.create_index(
        "uq_galera_actions_unfinished", "galera_actions", ["cluster"], unique=True,
        sqlite_where=sa.text(_UNFINISHED), postgresql_where=sa.text(_UNFINISHED),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("uq_galera_actions_unfinished", table_name="galera_actions")
    op.drop_index(op.f("ix_galera_actions_created_at"), table_name="galera_actions")
    op.drop_table("galera_actions")
