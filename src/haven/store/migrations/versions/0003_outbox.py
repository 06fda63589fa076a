"""The outbox of published events (webhooks, RabbitMQ) and their delivery to each sink.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "published_events",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(255), nullable=False),
        sa.Column("priority", sa.String(32), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_published_events"),
        sa.UniqueConstraint("key", name="uq_published_events_key"),
    )
    op.create_index("ix_published_events_created_at", "published_events", ["created_at"])
    op.create_table(
        "deliveries",
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("sink", sa.String(255), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("delivered_at", sa.Double(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("abandoned", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "sink", name="pk_deliveries"),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["published_events.id"],
            name="fk_deliveries_event_id_published_events",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_deliveries_next_attempt_at", "deliveries", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_next_attempt_at", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_published_events_created_at", table_name="published_events")
    op.drop_table("published_events")
