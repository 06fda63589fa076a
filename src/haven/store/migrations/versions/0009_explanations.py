"""Diagnosis: evidence from OpenStack's notifications, and the explanations haven owes and gave.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

haven.explain keeps each useful notification (a service forced down, an exception) as an evidence row
keyed by its message id, and each symptom (a failed boot, a failed recovery) as an explanation row,
``pending`` before its evidence is ranked and ``done`` after, the ranked explanations in ``detail``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evidence_events",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_events")),
    )
    op.create_index(op.f("ix_evidence_events_at"), "evidence_events", ["at"], unique=False)
    op.create_table(
        "explanations",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("symptom_node", sa.String(255), nullable=False),
        sa.Column("symptom_at", sa.Double(), nullable=False),
        sa.Column("what", sa.Text(), nullable=False),
        sa.Column("phase", sa.String(255), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("explained_at", sa.Double(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_explanations")),
    )
    op.create_index(op.f("ix_explanations_created_at"), "explanations", ["created_at"], unique=False)
    op.create_index(op.f("ix_explanations_state"), "explanations", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_explanations_state"), table_name="explanations")
    op.drop_index(op.f("ix_explanations_created_at"), table_name="explanations")
    op.drop_table("explanations")
    op.drop_index(op.f("ix_evidence_events_at"), table_name="evidence_events")
    op.drop_table("evidence_events")
