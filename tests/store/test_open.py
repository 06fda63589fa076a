"""Opening a store: migrations, SQLite files and memory, and StoreUnavailable for what cannot be opened."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from haven.domain.errors import NotFound, StoreUnavailable
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import AlertKind
from haven.store import Store, migrate
from haven.store.tables import metadata

from .builders import alert, host, segment


def _raw(url: str) -> sa.Engine:
    """A plain engine on the store's database, to look behind the Store's back."""
    return sa.create_engine(url, poolclass=sa.NullPool)


def _revision(url: str) -> set[str]:
    engine = _raw(url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


# SQLite cannot reflect the expression index uq_alerts_active; the other backend checks it.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_a_fresh_database_is_migrated_to_exactly_the_declared_schema(store_url: str) -> None:
    Store.open(store_url).close()
    assert _revision(store_url) == {migrate.head()}
    engine = _raw(store_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert differences == []
    assert tables == {"alembic_version", "segments", "hosts", "notifications", "steps", "alerts"} | {
        "published_events",  # the outbox of haven.notify
        "deliveries",
        "leader_fence",  # the newest leader epoch that wrote (haven.store.fencing)
        "controlplane_actions",  # the control plane's actions (haven.controlplane)
        "controlplane_replicas",  # the replicas as the leader's latest pass saw them
        "evidence_events",  # diagnosis: what OpenStack's notifications said (haven.explain)
        "explanations",  # diagnosis: the symptoms haven owes an explanation, and those it gave
        "canary_runs",  # synthetic checks: canary boots and API probes (haven.canary)
        "backups",  # backups: one row per backup of a server (haven.backups)
        "backup_restores",  # backups: restores and restore drills
        "backup_first_seen",  # backups: when the runner first saw each protected server
        "galera_actions",  # Galera's recovery steps (haven.stateful.galera_recovery)
    }


def test_the_database_refuses_a_second_active_alert_about_the_same_thing(store_url: str) -> None:
    Store.open(store_url).close()
    engine = _raw(store_url)
    row = {"kind": "isolated", "message": "m", "raised_at": 1.0, "segment_id": None, "host": "h"}
    alerts = sa.table("alerts", *(sa.column(name) for name in ["id", *row]))
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(alerts), [{"id": "a", **row}])
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.insert(alerts), [{"id": "b", **row}])
    finally:
        engine.dispose()


def test_reopening_keeps_the_data_and_does_not_migrate_again(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store.open(store_url) as first:
        rack = first.create_segment(segment())
        first.add_host(host("compute-1", rack))

    def no_second_migration(*_: object) -> None:
        raise AssertionError("the schema was already at head")

    monkeypatch.setattr(migrate, "_upgrade", no_second_migration)
    with Store.open(store_url) as again:
        assert again.list_segments() == [rack]
        assert again.get_host(HostName("compute-1")).segment_id == rack.id
    assert _revision(store_url) == {migrate.head()}


def test_a_schema_from_a_newer_haven_is_refused(store_url: str) -> None:
    Store.open(store_url).close()
    engine = _raw(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(StoreUnavailable, match=r"9999.*newer haven"):
        Store.open(store_url)


def test_database_errors_after_open_are_store_unavailable(store_url: str) -> None:
    with Store.open(store_url) as store:
        engine = _raw(store_url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("DROP TABLE alerts"))
        finally:
            engine.dispose()
        with pytest.raises(StoreUnavailable, match="alerts") as caught:
            store.list_alerts()
        assert not isinstance(caught.value, sa.exc.SQLAlchemyError)


def test_a_closed_store_is_unavailable(store_url: str) -> None:
    store = Store.open(store_url)
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.list_segments()


def test_concurrent_engines_raise_one_alert(store_url: str) -> None:
    stores = [Store.open(store_url) for _ in range(4)]
    results: list[object] = []
    barrier = threading.Barrier(len(stores))

    def engine(store: Store) -> None:
        barrier.wait()
        for i in range(10):
            raised = store.raise_alert(alert(AlertKind.ISOLATED, raised_at=float(i), host=HostName("h")))
            results.append(raised)

    threads = [threading.Thread(target=engine, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(results) == 40
        assert len(stores[0].list_alerts(active_only=False)) == 1
        assert len(set(results)) == 1
    finally:
        for store in stores:
            store.close()


# SQLite specifics


def test_sqlite_creates_missing_folders_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "haven.db"
    with Store.open(f"sqlite:///{path}") as store:
        store.create_segment(segment())
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_sqlite_relative_path_is_under_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Store.open("sqlite:///state/haven.db").close()
    assert (tmp_path / "state" / "haven.db").is_file()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_memory_stores_work_and_are_private(url: str) -> None:
    with Store.open(url) as first, Store.open(url) as second:
        rack = first.create_segment(segment())
        many = [host(f"compute-{i:05d}", rack) for i in range(10_000)]
        started = time.perf_counter()
        first.add_hosts(many)
        elapsed = time.perf_counter() - started
        print(f"\nadd_hosts of 10,000 in memory: {elapsed * 1000:.0f} ms")
        assert first.list_hosts() == many
        assert second.list_segments() == []


def test_memory_store_serves_several_threads() -> None:
    with Store.open("sqlite://") as store:
        rack = store.create_segment(segment())

        def add(start: int) -> None:
            store.add_hosts([host(f"h-{start + i:04d}", rack) for i in range(100)])

        threads = [threading.Thread(target=add, args=(n * 100,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(store.list_hosts()) == 800


def test_sqlite_path_under_a_file_is_unavailable_and_changes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("keep me")
    with pytest.raises(StoreUnavailable, match="not a folder"):
        Store.open(f"sqlite:///{blocker}/sub/haven.db")
    assert blocker.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


def test_sqlite_path_that_is_a_folder_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="not a file"):
        Store.open(f"sqlite:///{tmp_path}")


def test_a_file_that_is_not_a_database_is_left_alone(tmp_path: Path) -> None:
    garbage = tmp_path / "haven.db"
    garbage.write_bytes(b"this is not sqlite\n" * 100)
    with pytest.raises(StoreUnavailable, match="not a database") as caught:
        Store.open(f"sqlite:///{garbage}")
    assert "hint" in str(caught.value)
    assert garbage.read_bytes() == b"this is not sqlite\n" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["haven.db"]


def test_a_failed_open_removes_what_it_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise StoreUnavailable("migration failed")

    monkeypatch.setattr(migrate, "upgrade_to_head", broken)
    with pytest.raises(StoreUnavailable, match="migration failed"):
        Store.open(f"sqlite:///{tmp_path}/x/y/haven.db")
    assert list(tmp_path.iterdir()) == []


# URLs that cannot work


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nosuchdriver://x", "nosuchdriver"),
        ("sqlite+nosuchdriver:///x.db", "nosuchdriver"),
        ("postgresql+nosuchdriver://u@h/x", "nosuchdriver"),
        ("not a url", "does not parse"),
    ],
)
def test_unusable_urls_are_unavailable(url: str, expected: str, tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match=expected) as caught:
        Store.open(url)
    assert caught.value.hint


def test_unreachable_postgres_is_unavailable_without_showing_the_password() -> None:
    started = time.perf_counter()
    with pytest.raises(StoreUnavailable) as caught:
        Store.open("postgresql+psycopg://u:secret@127.0.0.1:1/x")
    text = str(caught.value)
    assert "secret" not in text
    assert "127.0.0.1:1" in text
    assert "PostgreSQL is running" in caught.value.hint
    assert not isinstance(caught.value, sa.exc.SQLAlchemyError)
    assert time.perf_counter() - started < 30  # fails fast rather than hanging


def test_plain_postgresql_urls_use_psycopg_3() -> None:
    with pytest.raises(StoreUnavailable, match=r"Connection refused|connection failed") as caught:
        Store.open("postgresql://u:secret@127.0.0.1:1/x")
    assert "secret" not in str(caught.value)


def test_not_found_is_not_unavailable(store_url: str) -> None:
    with Store.open(store_url) as store, pytest.raises(NotFound):
        store.get_segment(SegmentId("none"))
