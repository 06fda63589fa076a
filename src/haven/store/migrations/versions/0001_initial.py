"""Initial schema: segments, hosts, notifications, steps, alerts.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Written out in full rather than built from haven.store.tables, so that this
revision keeps creating the same schema after tables.py moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("recovery_method", sa.String(32), nullable=False),
        sa.Column("service_type", sa.String(255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
        sa.UniqueConstraint("name", name="uq_segments_name"),
    )
    op.create_table(
        "hosts",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("segment_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("control_attributes", sa.Text(), nullable=False),
        sa.Column("reserved", sa.Boolean(), nullable=False),
        sa.Column("on_maintenance", sa.Boolean(), nullable=False),
        sa.Column("condition", sa.String(32), nullable=False),
        sa.Column("disabled_by_haven", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_hosts"),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name="fk_hosts_segment_id_segments", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_hosts_segment_id", "hosts", ["segment_id"])

    op.create_table(
        "notifications",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("generated_at", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("segment_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )
    op.create_index("ix_notifications_hostname", "notifications", ["hostname"])
    op.create_index("ix_notifications_status", "notifications", ["status"])
    op.create_index("ix_notifications_created_at", "notifications", ["created_at"])
    op.create_index("ix_notifications_segment_id", "notifications", ["segment_id"])

    op.create_table(
        "steps",
        sa.Column("notification_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("notification_id", "seq", name="pk_steps"),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name="fk_steps_notification_id_notifications",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "alerts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("raised_at", sa.Double(), nullable=False),
        sa.Column("segment_id", sa.String(64), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("cleared_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_raised_at", "alerts", ["raised_at"])
    # One uncleared alert per (kind, segment, host); NULLs folded to '' so they compare equal.
    op.create_index(
        "uq_alerts_active",
        "alerts",
        ["kind", sa.text("coalesce(segment_id, '')"), sa.text("coalesce(host, '')")],
        unique=True,
        sqlite_where=sa.text("cleared_at IS NULL"),
        postgresql_where=sa.text("cleared_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("steps")
    op.drop_table("notifications")
    op.drop_table("hosts")
    op.drop_table("segments")
