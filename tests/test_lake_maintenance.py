"""Maintenance of the lake: a day of many small sweep commits ends as a handful of files with the same rows, the old
files vacuumed, the log checkpointed with nothing personal in it; every step under the lake writers' lock; the
Dagster asset and its hourly schedule."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import psycopg
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, Definitions, materialize
from lake_helpers import events, make_lake, parquet_files_on_disk, user_ids

from workdev_pipeline.assets.keys import LAKE_EVENTS, LAKE_MAINTENANCE
from workdev_pipeline.assets.maintenance import lake_maintenance, lake_maintenance_job
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake.maintenance import LakeBusy, lake_lock, maintain
from workdev_pipeline.lake_cli import lake_group
from workdev_pipeline.resources.fanout import EnabledWarehouses
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.schedules.maintenance import lake_maintenance_schedule

DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)
COMMITS = 210


def small_commits(lake, users: list[str]) -> None:
    """``COMMITS`` sweeps of 15 events of DAY1 each, then three of DAY2: one small file per commit."""
    for i in range(COMMITS):
        lake.append([events(DAY1, 15, start=15 * i, users=users)], app_id="lake", version=i + 1)
    for i in range(3):
        lake.append([events(DAY2, 10, start=10 * i, users=users)], app_id="lake", version=COMMITS + i + 1)


def rows(lake) -> list[dict]:
    table = lake.snapshot().dataset().to_table()
    return table.take(pc.sort_indices(table, [("event_id", "ascending")])).to_pylist()


def test_small_appends_end_as_a_handful_of_files(tmp_path: Path, admin_url: str) -> None:
    lake = make_lake(tmp_path / "lake")
    users = user_ids(25, seed=7)
    small_commits(lake, users)
    table_dir = Path(lake.uri)
    assert len(parquet_files_on_disk(table_dir, DAY1)) == COMMITS
    expected = rows(lake)

    result = maintain(lake, vacuum_retention_hours=0, database_url=admin_url)
    assert result.days_compacted == [DAY1, DAY2]
    assert result.files_before == COMMITS + 3 and result.files_after == 2
    assert result.day_files == {DAY1: (COMMITS, 1), DAY2: (3, 1)}
    assert result.files_removed == COMMITS + 3 and result.bytes_after < result.bytes_before
    assert rows(lake) == expected  # the same rows, nothing lost or doubled
    # vacuumed: only the compacted file is left on disk for each day
    assert [str(p.relative_to(table_dir)) for p in parquet_files_on_disk(table_dir, DAY1)] == \
        lake.snapshot().day_files(DAY1)
    assert len(parquet_files_on_disk(table_dir, DAY2)) == 1
    assert result.files_vacuumed >= COMMITS + 3
    # a checkpoint of the final version, and the sweeps' application transaction survives it (exactly once)
    assert result.checkpoint_version == result.version == lake.version()
    assert (table_dir / "_delta_log" / f"{result.version:020d}.checkpoint.parquet").is_file()
    assert lake.committed_version("lake") == COMMITS + 3
    # the compaction's log entries and the checkpoint carry no personal value (statistics only on safe columns)
    for path in (table_dir / "_delta_log").iterdir():
        data = path.read_bytes()
        assert not any(u.encode() in data for u in users), path.name
        assert b"203.0.113.7" not in data, path.name

    again = maintain(lake, vacuum_retention_hours=0, database_url=admin_url)  # nothing left to compact
    assert again.days_compacted == [] and again.files_after == 2 and rows(lake) == expected


def test_maintenance_takes_the_lake_writers_lock(tmp_path: Path, admin_url: str) -> None:
    lake = make_lake(tmp_path / "lake")
    for i in range(3):
        lake.append([events(DAY1, 5, start=5 * i)], app_id="lake", version=i + 1)
    version = lake.version()
    ingestor = Ingestor(admin_url, lake, consumer="lake")
    with ingestor.locked() as conn:  # a sweep or a rebuild is writing the lake
        assert conn is not None
        with pytest.raises(LakeBusy, match="still held"):
            maintain(lake, vacuum_retention_hours=0, database_url=admin_url, lock_timeout_seconds=0.5)
    assert lake.version() == version and len(lake.snapshot().day_files(DAY1)) == 3  # nothing committed
    with lake_lock(admin_url), ingestor.locked(wait=False) as conn:  # the same lock, taken from the other side
        assert conn is None
    with ingestor.locked(wait=False) as conn:
        assert conn is not None  # released again
    assert maintain(lake, vacuum_retention_hours=0, database_url=admin_url).files_after == 1


def test_maintenance_asset_reports_files_bytes_seconds_and_version(tmp_path: Path, db: str) -> None:
    lake = make_lake(tmp_path / "lake")
    for i in range(4):
        lake.append([events(DAY1, 5, start=5 * i)], app_id="lake", version=i + 1)
    resource = LakeResource(uri=str(tmp_path / "lake"))
    resources = {"lake": resource, "postgres": PostgresResource(database_url=db),
                 "warehouses": EnabledWarehouses(lake=resource)}
    instance = DagsterInstance.ephemeral()
    outcome = materialize([lake_maintenance], resources=resources, instance=instance,
                          run_config={"ops": {"lake__lake_maintenance": {"config": {"vacuum_retention_hours": 0}}}})
    assert outcome.success
    [materialization] = outcome.asset_materializations_for_node("lake__lake_maintenance")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert (meta["files_before"], meta["files_after"], meta["days_compacted"]) == (4, 1, 1)
    assert meta["bytes_before"] > meta["bytes_after"] > 0 and meta["seconds"] > 0
    assert meta["lake_version"] == lake.version() and meta["dagster/uri"] == lake.uri
    assert "2026-03-01 | 4 | 1" in meta["preview"]
    observations = instance.fetch_observations(LAKE_EVENTS, limit=10).records
    assert [o.partition_key for o in observations] == ["2026-03-01"]

    assert lake_maintenance_schedule.cron_schedule == "30 * * * *"
    assert lake_maintenance_schedule.execution_timezone == "UTC"
    defs = Definitions(assets=[lake_maintenance], jobs=[lake_maintenance_job], schedules=[lake_maintenance_schedule],
                       resources=resources)
    assert defs.resolve_job_def("lake_maintenance").asset_layer.executable_asset_keys == {LAKE_MAINTENANCE}


def test_maintenance_of_an_empty_lake_is_a_no_op(tmp_path: Path) -> None:
    result = maintain(make_lake(tmp_path / "lake"), vacuum_retention_hours=0)
    assert result.version is None and result.files_after == 0 and result.notes


def test_lock_needs_a_reachable_database(tmp_path: Path) -> None:
    lake = make_lake(tmp_path / "lake")
    lake.append([events(DAY1, 5)], app_id="lake", version=1)
    with pytest.raises(psycopg.OperationalError):
        maintain(lake, database_url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_lake_maintain_command(tmp_path: Path, admin_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = make_lake(tmp_path / "lake")
    for i in range(3):
        lake.append([events(DAY1, 5, start=5 * i)], app_id="lake", version=i + 1)
    runner = CliRunner()
    done = runner.invoke(lake_group, ["maintain", "--database-url", admin_url, "--lake-uri", str(tmp_path / "lake"),
                                      "--vacuum-retention-hours", "0"])
    assert done.exit_code == 0, done.output
    assert "lake maintenance: 3 -> 1 files" in done.output and "1 day(s) compacted" in done.output
    monkeypatch.setenv("WORKDEV_LAKE_STORAGE_OPTIONS", "[1, 2]")
    bad = runner.invoke(lake_group, ["maintain", "--no-lock", "--lake-uri", str(tmp_path / "lake")])
    assert bad.exit_code == 2 and bad.stderr == "error: WORKDEV_LAKE_STORAGE_OPTIONS must be a JSON object of strings\n"
