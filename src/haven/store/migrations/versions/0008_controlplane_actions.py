"""The control plane's actions: one row per effect on one replica, issued before the effect.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

haven.controlplane's reconciler records each load-balancer, restart or start action as ``issued``
before it acts and ``done`` or ``failed`` after; a partial unique index keeps one unfinished action
per replica. Finished rows are the restart history the back-off and crash-loop rules read.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "controlplane_actions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_controlplane_actions")),
    )
    op.create_index(
        op.f("ix_controlplane_actions_created_at"), "controlplane_actions", ["created_at"], unique=False
    )
    op.create_index(
        "uq_controlplane_actions_unfinished",
        "controlplane_actions",
        ["service", "host"],
        unique=True,
        sqlite_where=sa.text("state = 'issued'"),
        postgresql_where=sa.text("state = 'issued'"),
    )


def downgrade() -> None:
    op.drop_index("uq_controlplane_actions_unfinished", table_name="controlplane_actions")
    op.drop_index(op.f("ix_controlplane_actions_created_at"), table_name="controlplane_actions")
    op.drop_table("controlplane_actions")
