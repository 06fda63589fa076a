"""The control plane's replicas as the leader's latest pass saw them.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-06

``haven serve`` runs the control-plane reconciler while it leads; after each pass it replaces these rows
(one per service and controller: health, systemd's state, the load balancer's, the latest probe), so
``haven controlplane status`` and every engine's metrics read what the leader saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "controlplane_replicas",
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("health", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("member", sa.String(32), nullable=False),
        sa.Column("probe", sa.Text(), nullable=False),
        sa.Column("observed_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("service", "host", name=op.f("pk_controlplane_replicas")),
    )


def downgrade() -> None:
    op.drop_table("controlplane_replicas")
