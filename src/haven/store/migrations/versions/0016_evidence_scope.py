"""Evidence scope: what a piece of evidence was seen by, so that "seen working" ends only its own kind.

Revision ID: 0016
Revises: 0012
Create Date: 2026-12-06

A HEALTHY event (a probe passed) ends a node's earlier hard evidence only of the same scope: an endpoint
that answers its version document ends its own earlier "did not answer", not a failed token issue nor
a service Nova lists down (haven.diagnosis.ranker). Rows kept before this revision have the empty scope.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("evidence_events") as batch:
        batch.add_column(sa.Column("scope", sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("evidence_events") as batch:
        batch.drop_column("scope")
