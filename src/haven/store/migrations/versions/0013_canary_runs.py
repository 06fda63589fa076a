"""Synthetic checks: each canary boot and API probe haven ran (haven.canary).

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-06

A canary boot's row is written before its server is asked for (``booting``, with the server's name, so
a later run can find and delete what an engine that stopped mid-run left behind), then updated with each
phase seen and its verdict. API probes are rows of kind ``probe``. The run as JSON is in ``detail``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "canary_runs",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("zone", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("detail", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canary_runs")),
    )
    op.create_index(op.f("ix_canary_runs_started_at"), "canary_runs", ["started_at"], unique=False)
    op.create_index(op.f("ix_canary_runs_state"), "canary_runs", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_canary_runs_state"), table_name="canary_runs")
    op.drop_index(op.f("ix_canary_runs_started_at"), table_name="canary_runs")
    op.drop_table("canary_runs")
