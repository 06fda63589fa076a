"""The schema as SQLAlchemy Core sees it: one Table per persisted domain type.

Read by the query modules of haven.store (segments, notifications, alerts) to
build statements, and by the Alembic environment as the autogenerate target.
The migrations in ``migrations/versions`` must build exactly this schema; a test
compares the two so they cannot drift apart.

Enums are stored as their string values in plain VARCHAR columns (no database
ENUM types), so adding a member never needs a migration. Timestamps are float
epoch seconds in double precision columns. Mappings are JSON (JSONB on
PostgreSQL).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

# Explicit constraint names, so later migrations can drop or alter them by name
# on every backend (SQLite's batch mode needs names to find them).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}

ID = String(64)
NAME = String(255)
ENUM = String(32)
Json = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData(naming_convention=NAMING_CONVENTION)

segments = Table(
    "segments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", NAME, nullable=False, unique=True),
    Column("recovery_method", ENUM, nullable=False),
    Column("service_type", NAME, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("description", Text, nullable=False),
    Column("mode", ENUM, nullable=False, server_default="automatic"),
    # The API's integer id (haven.domain.ids.public_number), kept to sort and page by it in SQL;
    # always set, nullable only for SQLite's sake (see migration 0007).
    Column("number", BigInteger, nullable=True),
    # Set by the store on insert and on each change (null: never changed, as in Masakari).
    Column("created_at", Double, nullable=True),
    Column("updated_at", Double, nullable=True),
)

hosts = Table(
    "hosts",
    metadata,
    Column("name", NAME, primary_key=True),
    # Deleting a segment removes its hosts, as in Masakari.
    Column("segment_id", ID, ForeignKey("segments.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("type", NAME, nullable=False),
    Column("control_attributes", Text, nullable=False),
    Column("reserved", Boolean, nullable=False),
    Column("on_maintenance", Boolean, nullable=False),
    Column("condition", ENUM, nullable=False),
    Column("disabled_by_haven", Boolean, nullable=False),
    # Masakari's host uuid: kept across renames (the name is the key haven's records use).
    Column("uuid", ID, nullable=False, unique=True),
    Column("number", BigInteger, nullable=False),
    Column("created_at", Double, nullable=True),
    Column("updated_at", Double, nullable=True),
)

# No foreign keys from notifications to segments or hosts: a finished
# notification is history and outlives the host or segment it was about.
notifications = Table(
    "notifications",
    metadata,
    Column("id", ID, primary_key=True),
    Column("type", ENUM, nullable=False),
    Column("hostname", NAME, nullable=False, index=True),
    Column("status", ENUM, nullable=False, index=True),
    Column("payload", Json, nullable=False),
    Column("generated_at", Double, nullable=False),
    Column("created_at", Double, nullable=False, index=True),
    Column("updated_at", Double, nullable=False),
    Column("segment_id", ID, nullable=True, index=True),
    Column("claimed_by", NAME, nullable=True),  # custom recovery: the external system working on it
    Column("claimed_at", Double, nullable=True),
    # The highest leader epoch that committed a step of this recovery (haven.store.fencing).
    Column("owner_epoch", BigInteger, nullable=True),
)

steps = Table(
    "steps",
    metadata,
    Column(
        "notification_id",
        ID,
        ForeignKey("notifications.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("seq", Integer, primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("subject", Text, nullable=False),
    Column("state", ENUM, nullable=False),
    Column("detail", Json, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", ENUM, nullable=False),
    Column("message", Text, nullable=False),
    Column("raised_at", Double, nullable=False, index=True),
    Column("segment_id", ID, nullable=True),
    Column("host", NAME, nullable=True),
    Column("cleared_at", Double, nullable=True),
)

# At most one uncleared alert per (kind, segment, host), enforced by the
# database so that two engines raising the same alert at once still make one.
# NULLs are folded to '' because a unique index treats NULLs as distinct.
Index(
    "uq_alerts_active",
    alerts.c.kind,
    func.coalesce(alerts.c.segment_id, ""),
    func.coalesce(alerts.c.host, ""),
    unique=True,
    sqlite_where=alerts.c.cleared_at.is_(None),
    postgresql_where=alerts.c.cleared_at.is_(None),
)

# The store's leader fence (haven.store.fencing): one row, the newest leader epoch that wrote.
FENCE_ROW = 1
leader_fence = Table(
    "leader_fence",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("epoch", BigInteger, nullable=False),
)

# The outbox of haven.notify: events to publish, and where each stands with each sink
# (webhooks, the RabbitMQ bus). ``key`` makes appending an event twice (after a restart) a no-op.
published_events = Table(
    "published_events",
    metadata,
    Column("id", ID, primary_key=True),
    Column("key", NAME, nullable=False, unique=True),
    Column("event_type", NAME, nullable=False),
    Column("priority", ENUM, nullable=False),
    Column("payload", Json, nullable=False),
    Column("created_at", Double, nullable=False, index=True),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column(
        "event_id",
        ID,
        ForeignKey("published_events.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("sink", NAME, primary_key=True),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Double, nullable=False, index=True),
    Column("delivered_at", Double, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("abandoned", Boolean, nullable=False),
)

# The control plane's actions (haven.controlplane): one row per effect on one replica (load-balancer
# membership, a restart, a start), inserted as ``issued`` before the effect and finished after. At most
# one unfinished action per replica, enforced by the database, so two passes (or two engines) racing
# cannot issue two. The finished rows are the history the planner's back-off and crash-loop rules read.
controlplane_actions = Table(
    "controlplane_actions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("service", NAME, nullable=False),
    Column("host", NAME, nullable=False),
    Column("kind", ENUM, nullable=False),
    Column("state", ENUM, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Json, nullable=False),
    Column("created_at", Double, nullable=False, index=True),
    Column("finished_at", Double, nullable=True),
    Column("error", Text, nullable=False),
)

Index(
    "uq_controlplane_actions_unfinished",
    controlplane_actions.c.service,
    controlplane_actions.c.host,
    unique=True,
    sqlite_where=controlplane_actions.c.state == "issued",
    postgresql_where=controlplane_actions.c.state == "issued",
)

# Diagnosis (haven.explain): the evidence OpenStack's notifications gave (one row per notification, keyed
# by its message id, so a redelivered message is kept once), and each symptom haven owes an explanation:
# opened ``pending`` before its evidence is read, ``done`` with the ranked explanations in ``detail``.
evidence_events = Table(
    "evidence_events",
    metadata,
    Column("id", NAME, primary_key=True),
    Column("node", NAME, nullable=False),
    Column("kind", ENUM, nullable=False),
    Column("at", Double, nullable=False, index=True),
    Column("detail", Text, nullable=False),
    Column("received_at", Double, nullable=False),
    Column("scope", String(64), nullable=False, server_default=""),  # 0016: what saw it (the ranker)
)

explanations = Table(
    "explanations",
    metadata,
    Column("id", NAME, primary_key=True),
    Column("source", NAME, nullable=False),
    Column("subject", NAME, nullable=False),
    Column("symptom_node", NAME, nullable=False),
    Column("symptom_at", Double, nullable=False),
    Column("what", Text, nullable=False),
    Column("phase", NAME, nullable=True),
    Column("state", ENUM, nullable=False, index=True),
    Column("created_at", Double, nullable=False, index=True),
    Column("explained_at", Double, nullable=True),
    Column("summary", Text, nullable=False),
    Column("detail", Json, nullable=False),
)

# Synthetic checks (haven.canary): each canary boot, written ``booting`` before its server is asked for
# and updated with its phases and verdict, and each API probe (kind ``probe``); the run as JSON in detail.
canary_runs = Table(
    "canary_runs",
    metadata,
    Column("id", NAME, primary_key=True),
    Column("kind", ENUM, nullable=False),
    Column("zone", NAME, nullable=False),
    Column("state", ENUM, nullable=False, index=True),
    Column("started_at", Double, nullable=False, index=True),
    Column("detail", Json, nullable=False),
)

# The control plane's replicas as the leader's latest pass saw them (haven.controlplane.reconciler):
# replaced as a whole after each pass, read by ``haven controlplane status`` and the metrics.
controlplane_replicas = Table(
    "controlplane_replicas",
    metadata,
    Column("service", NAME, primary_key=True),
    Column("host", NAME, primary_key=True),
    Column("domain", NAME, nullable=False),
    Column("health", ENUM, nullable=False),
    Column("unit", ENUM, nullable=False),
    Column("member", ENUM, nullable=False),
    Column("probe", Text, nullable=False),
    Column("observed_at", Double, nullable=False),
)

# Backups (haven.backups): one row per backup of one server, written ``issued`` before Nova's createBackup
# (or Cinder's backups) is asked for and updated with each outcome; one window of a server is backed up
# once (the partial index), and one backup per server is in flight at a time. Restores and restore drills:
# one row per boot or rebuild from a backup, ``issued`` before Nova is asked. The rest of each record is
# detail (haven.store.backups reads it back into haven.domain.backups' dataclasses).
backups = Table(
    "backups",
    metadata,
    Column("id", ID, primary_key=True),
    Column("server_id", NAME, nullable=False, index=True),
    Column("state", ENUM, nullable=False, index=True),
    Column("slot", Double, nullable=False),
    Column("created_at", Double, nullable=False, index=True),
    Column("finished_at", Double, nullable=True),
    Column("detail", Json, nullable=False),
)
Index(
    "uq_backups_window",
    backups.c.server_id,
    backups.c.slot,
    unique=True,
    sqlite_where=backups.c.state != "failed",
    postgresql_where=backups.c.state != "failed",
)
Index(
    "uq_backups_in_flight",
    backups.c.server_id,
    unique=True,
    sqlite_where=backups.c.state.in_(["issued", "creating"]),
    postgresql_where=backups.c.state.in_(["issued", "creating"]),
)
backup_restores = Table(
    "backup_restores",
    metadata,
    Column("id", ID, primary_key=True),
    Column("server_id", NAME, nullable=False, index=True),
    Column("purpose", ENUM, nullable=False),
    Column("state", ENUM, nullable=False, index=True),
    Column("created_at", Double, nullable=False, index=True),
    Column("detail", Json, nullable=False),
)
# When the backup runner first saw each protected server (a row per server while it is protected): a
# server never backed up is missed or stale counted from there, across restarts (haven.backups.planner).
backup_first_seen = Table(
    "backup_first_seen",
    metadata,
    Column("server_id", NAME, primary_key=True),
    Column("first_seen", Double, nullable=False),
)

# Galera's recovery steps (haven.stateful.galera_recovery): one row per start or bootstrap of one node,
# inserted ``issued`` before the effect and finished after. At most one unfinished step per cluster,
# enforced by the database: a restarted engine finishes the step it finds before deciding anything else.
galera_actions = Table(
    "galera_actions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("cluster", NAME, nullable=False),
    Column("kind", ENUM, nullable=False),
    Column("node", NAME, nullable=False),
    Column("state", ENUM, nullable=False),
    Column("reason", Text, nullable=False),
    Column("position", NAME, nullable=False),
    Column("created_at", Double, nullable=False, index=True),
    Column("finished_at", Double, nullable=True),
    Column("error", Text, nullable=False),
)
Index(
    "uq_galera_actions_unfinished",
    galera_actions.c.cluster,
    unique=True,
    sqlite_where=galera_actions.c.state == "issued",
    postgresql_where=galera_actions.c.state == "issued",
)
