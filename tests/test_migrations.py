"""`workdev-pipeline migrate`: ordered, recorded, idempotent, and refusing edited history."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from workdev_pipeline import catalog
from workdev_pipeline.errors import MigrationError
from workdev_pipeline.migrate import discover, migrate
from workdev_pipeline.settings import MIGRATIONS_DIR


def test_migrates_an_empty_database_then_is_a_no_op(empty_db: str) -> None:
    first = migrate(empty_db)
    assert first.applied == [m.name for m in discover()]
    assert first.event_types_added == len(catalog.EVENT_TYPES)
    assert first.partitions_created >= 4

    second = migrate(empty_db)
    assert second.applied == []
    assert second.already_applied == first.applied
    assert (second.event_types_added, second.event_types_updated, second.partitions_created) == (0, 0, 0)

    with psycopg.connect(empty_db) as conn:
        recorded = conn.execute("SELECT name, checksum FROM schema_migrations ORDER BY version").fetchall()
    assert recorded == [(m.name, m.checksum) for m in discover()]


def test_refuses_when_an_applied_migration_was_edited(empty_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    migrate(empty_db, folder)
    target = folder / "0002_event_store.sql"
    target.write_text(target.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationError, match=r"0002_event_store\.sql was edited after it was applied"):
        migrate(empty_db, folder)


def test_refuses_when_an_applied_migration_is_missing(empty_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    migrate(empty_db, folder)
    (folder / "0006_realtime_metrics.sql").unlink()
    with pytest.raises(MigrationError, match=r"0006_realtime_metrics\.sql was applied but is missing"):
        migrate(empty_db, folder)


def test_applies_a_new_migration_in_order(empty_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    migrate(empty_db, folder)
    (folder / "9001_add_note.sql").write_text("ALTER TABLE warehouse_sync_status ADD COLUMN note text;")
    assert migrate(empty_db, folder).applied == ["9001_add_note.sql"]
    with psycopg.connect(empty_db) as conn:
        conn.execute("SELECT note FROM warehouse_sync_status")


def test_a_failing_migration_leaves_nothing_half_applied(empty_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    migrate(empty_db, folder)
    (folder / "9001_broken.sql").write_text("CREATE TABLE half_done (x int); SELECT 1/0;")
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(empty_db, folder)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM schema_migrations WHERE version = '9001'").fetchone()[0] == 0


def test_misnamed_migration_files_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "add-stuff.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match=r"NNNN_lowercase_words\.sql"):
        discover(tmp_path)


def test_catalog_is_seeded_and_types_dropped_from_it_are_deactivated(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT event_type, event_category, retention_days, required_keys, active FROM event_schemas"
        ).fetchall()
        assert {r[0] for r in rows} == {t.name for t in catalog.EVENT_TYPES}
        for name, category, retention, required, active in rows:
            t = catalog.get_event_type(name)
            assert (category, retention, tuple(required), active) == (
                t.category.name, t.category.retention_days, t.required, True)
        conn.execute(
            "INSERT INTO event_schemas (event_type, event_category, retention_days, json_schema, version) "
            "VALUES ('legacy.thing', 'interaction', 365, '{}', 'x')"
        )
    report = migrate(db)
    assert report.event_types_deactivated == 1
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT active FROM event_schemas WHERE event_type = 'legacy.thing'").fetchone() == (False,)


def test_retention_by_category_matches_the_seed() -> None:
    years = {name: round(c.retention_days / 365) for name, c in catalog.CATEGORIES.items()}
    assert years == {"transaction": 7, "interaction": 1, "user_activity": 2, "content": 7}
    assert len({t.name for t in catalog.EVENT_TYPES}) == len(catalog.EVENT_TYPES) == 32


def test_partitions_exist_ahead_of_time(db: str) -> None:
    with psycopg.connect(db) as conn:
        names = {r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'platform_event_store'::regclass")}
    now = datetime.now(UTC)
    for ahead in range(4):
        month = (now.year * 12 + now.month - 1 + ahead)
        assert f"platform_event_store_{month // 12:04d}_{month % 12 + 1:02d}" in names
    assert "platform_event_store_default" in names


def test_an_upgraded_store_carries_on_as_the_lake(empty_db: str, tmp_path: Path) -> None:
    """A database of the day-directory design (consumer 'local', engines as consumers of their own) upgraded: the
    lake takes over the local consumer's progress, and the engines' old watermarks stop holding events 'pending'."""
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0012":
            shutil.copy(path, before / path.name)
    migrate(empty_db, before)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("INSERT INTO pipeline_watermarks (consumer, tx_watermark) VALUES ('local', 500), "
                     "('bigquery', 7)")
        conn.execute("INSERT INTO warehouse_rebuild_queue (consumer, event_date, reason) "
                     "VALUES ('local', '2026-11-30', 'test')")
    upgraded = migrate(empty_db)
    assert upgraded.applied == [p.name for p in sorted(MIGRATIONS_DIR.glob("*.sql")) if p.name >= "0012"]
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT consumer, tx_watermark, enabled FROM pipeline_watermarks ORDER BY 1").fetchall() \
            == [("bigquery", 7, False), ("lake", 500, True)]
        assert conn.execute("SELECT consumer FROM warehouse_rebuild_queue").fetchall() == [("lake",)]
