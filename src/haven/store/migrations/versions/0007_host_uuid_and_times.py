"""Hosts keep a uuid of their own; segments and hosts get created_at, updated_at and their number.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

A host's uuid used to be derived from its name (uuid5 of a fixed namespace), so a rename gave it
a new one. Each existing row keeps exactly the uuid it was shown with, so no client's stored id
breaks; hosts added from now on get a random uuid4, kept across renames (as in Masakari).
Existing rows are stamped created_at = the upgrade's time (their creation time was never kept);
updated_at stays null until their next change, as Masakari leaves it for a row never updated.
``number`` is the integer ``id`` the API shows (haven.domain.ids.public_number of the public uuid),
kept so that lists sort and page by it in SQL. It stays nullable on segments (the store always
sets it): on SQLite, NOT NULL would mean rebuilding the segments table, and dropping the old one
would cascade-delete every host (foreign keys are on).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The namespace haven derived host uuids from before this revision (frozen here on purpose).
_LEGACY_HOST_NAMESPACE = uuid.UUID("3f1d5a0c-7f2e-5a7b-9a63-6b1d2f0c4e11")


def _number(uuid_text: str) -> int:
    return int(hashlib.sha256(uuid_text.encode()).hexdigest()[:13], 16)


def _public(stored_id: str) -> str:
    try:
        return str(uuid.UUID(stored_id))
    except ValueError:
        return stored_id


def upgrade() -> None:
    now = time.time()
    conn = op.get_bind()
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("number", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("created_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.Double(), nullable=True))
    ids = [row[0] for row in conn.execute(sa.text("SELECT id FROM segments"))]
    if ids:
        conn.execute(
            sa.text("UPDATE segments SET number = :number, created_at = :now WHERE id = :id"),
            [{"number": _number(_public(i)), "now": now, "id": i} for i in ids],
        )
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("uuid", sa.String(64), nullable=True))
        batch.add_column(sa.Column("number", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("created_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.Double(), nullable=True))
    names = [row[0] for row in conn.execute(sa.text("SELECT name FROM hosts"))]
    rows = []
    for name in names:
        kept = str(uuid.uuid5(_LEGACY_HOST_NAMESPACE, name))
        rows.append({"uuid": kept, "number": _number(kept), "now": now, "name": name})
    if rows:
        conn.execute(
            sa.text("UPDATE hosts SET uuid = :uuid, number = :number, created_at = :now WHERE name = :name"),
            rows,
        )
    with op.batch_alter_table("hosts") as batch:
        batch.alter_column("uuid", existing_type=sa.String(64), nullable=False)
        batch.alter_column("number", existing_type=sa.BigInteger(), nullable=False)
        batch.create_unique_constraint(op.f("uq_hosts_uuid"), ["uuid"])


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.drop_constraint(op.f("uq_hosts_uuid"), type_="unique")
        batch.drop_column("updated_at")
        batch.drop_column("created_at")
        batch.drop_column("number")
        batch.drop_column("uuid")
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("created_at")
        batch.drop_column("number")
