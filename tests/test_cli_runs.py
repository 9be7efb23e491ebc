"""The command line's actions recorded in Dagster (:mod:`workdev_pipeline.cli_runs`): with an instance configured
(``DAGSTER_HOME``), ``workdev-pipeline rebuild`` of a day is a run on that instance that materialized the day's
partition of ``lake/platform_events``, and the aggregations' automation -- evaluated for real on that instance --
requests that day's aggregates afterwards; the operator commands run their jobs by request id / with their config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from dagster import AssetRecordsFilter, DagsterInstance, RunsFilter, evaluate_automation_conditions

from tests.ingest_helpers import demo, make_first_day_largest
from workdev_pipeline.aggregations.periods import DAILY
from workdev_pipeline.assets.aggregations import postgres_key
from workdev_pipeline.assets.ingestion import LAKE_EVENTS
from workdev_pipeline.definitions import build_definitions
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource

CLI = Path(sys.executable).with_name("workdev-pipeline")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def busiest_past_day(db: str) -> date:
    with psycopg.connect(db) as conn:
        return conn.execute("SELECT (\"timestamp\" AT TIME ZONE 'UTC')::date FROM platform_event_store WHERE "
                            "\"timestamp\" < date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' "
                            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()[0]


def test_a_cli_rebuild_is_a_run_whose_day_the_aggregations_automation_then_requests(db: str, tmp_path: Path) -> None:
    demo(db, 2_000)
    day = busiest_past_day(db)
    # the range's two days of different sizes, whatever the hour (checked below)
    make_first_day_largest(db, [(day - timedelta(days=1)).isoformat(), day.isoformat()])
    home, lake_uri = tmp_path / "dagster", str(tmp_path / "lake")
    env = {**os.environ, "DAGSTER_HOME": str(home), "WORKDEV_DATABASE_URL": db, "WORKDEV_LAKE_URI": lake_uri,
           "WORKDEV_HOME": str(tmp_path / "home")}
    lake = LakeResource(uri=lake_uri)
    defs = build_definitions({"postgres": PostgresResource(database_url=db), "lake": lake})
    assert lake.ingestor(db).sweep().status == "loaded"  # loaded outside Dagster: the instance knows nothing yet

    t0 = datetime.now(UTC)
    home.mkdir()
    with DagsterInstance.from_config(str(home)) as instance:
        first = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t0)
        assert first.total_requested == 0  # the first evaluation never backfills history

    rebuilt = cli(env, "rebuild", "--from", day.isoformat())
    assert "recorded in Dagster: run " in rebuilt.stdout and "rebuild loaded: " in rebuilt.stdout

    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(RunsFilter(tags={"workdev/trigger": "cli"}))
        assert len(runs) == 1 and runs[0].is_success, [(r.job_name, r.status) for r in runs]
        run = runs[0]
        assert run.tags["dagster/partition"] == day.isoformat()
        assert run.run_id in rebuilt.stdout
        (record,) = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=LAKE_EVENTS, asset_partitions=[day.isoformat()]), limit=5).records
        assert record.run_id == run.run_id
        with psycopg.connect(db) as conn:
            stored = conn.execute("SELECT count(*) FROM platform_event_store WHERE (\"timestamp\" AT TIME ZONE "
                                  "'UTC')::date = %s", (day,)).fetchone()[0]
        with psycopg.connect(db) as conn:
            held = conn.execute("SELECT count(*) FROM platform_event_store").fetchone()[0]
        metadata = record.asset_materialization.metadata  # the day's own rows, and the table's after the write
        assert metadata["dagster/partition_row_count"].value == stored
        assert metadata["dagster/row_count"].value == held

        # the next :05 after the rebuild: the automation requests that day's aggregates (it saw the CLI's run)
        tick = (t0 + timedelta(hours=1)).replace(minute=5, second=30, microsecond=0)
        result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=tick,
                                                cursor=first.cursor)
        assert day.isoformat() in result.get_requested_partitions(postgres_key(DAILY))

    # a range: one run tagged with it (as a UI backfill's single run), each of its days materialized by it
    first, last = day - timedelta(days=1), day
    ranged = cli(env, "rebuild", "--from", first.isoformat(), "--to", last.isoformat())
    with DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_runs(RunsFilter(tags={"workdev/trigger": "cli"}), limit=1)[0]
        assert run.run_id in ranged.stdout and run.is_success
        assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
            first.isoformat(), last.isoformat())
        records = instance.fetch_materializations(AssetRecordsFilter(
            asset_key=LAKE_EVENTS, asset_partitions=[first.isoformat(), last.isoformat()]), limit=10).records
        assert {r.partition_key for r in records if r.run_id == run.run_id} == {first.isoformat(), last.isoformat()}
        # each day's materialization carries that day's own figures (PostgreSQL's count of the day, the bytes of
        # its files in the lake), the run's totals are in ``run``, and the command printed the totals
        ranged_meta = {r.partition_key: r.asset_materialization.metadata for r in records if r.run_id == run.run_id}
    with psycopg.connect(db) as conn:
        own = dict(conn.execute("SELECT (\"timestamp\" AT TIME ZONE 'UTC')::date::text, count(*) FROM "
                                "platform_event_store WHERE (\"timestamp\" AT TIME ZONE 'UTC')::date BETWEEN %s AND %s "
                                "GROUP BY 1", (first, last)).fetchall())
    files = lake.events().snapshot().files().to_pylist()
    own_bytes = {d: sum(f["size_bytes"] for f in files if f["event_date"].isoformat() == d) for d in own}
    assert len(own) == 2 and own[first.isoformat()] != own[last.isoformat()]
    assert {d: m["rows_loaded"].value for d, m in ranged_meta.items()} == own
    assert {d: m["dagster/partition_row_count"].value for d, m in ranged_meta.items()} == own
    assert {d: m["bytes_written"].value for d, m in ranged_meta.items()} == own_bytes
    assert all(m["seconds"].value > 0 and m["events_per_second"].value > 0 for m in ranged_meta.values())
    totals = {m["run"].value["rows_loaded"] for m in ranged_meta.values()}
    assert totals == {sum(own.values())} and f"rebuild loaded: {sum(own.values()):,} loaded" in ranged.stdout


def test_operator_commands_run_their_jobs_by_request_id(db: str, tmp_path: Path) -> None:
    """``erase`` files a request and runs gdpr_erasure naming the request, never the user; ``retention --dry-run``
    and ``replay`` run their jobs with the command's config."""
    demo(db, 300)
    home = tmp_path / "dagster"
    env = {**os.environ, "DAGSTER_HOME": str(home), "WORKDEV_DATABASE_URL": db,
           "WORKDEV_LAKE_URI": str(tmp_path / "lake"), "WORKDEV_HOME": str(tmp_path / "home")}
    cli(env, "sweep")
    user = str(uuid.uuid4())
    erased = cli(env, "erase", user)
    assert "request #1: nothing to erase" in erased.stdout and user not in erased.stdout
    cli(env, "retention", "--dry-run")
    cli(env, "replay")
    with DagsterInstance.from_config(str(home)) as instance:
        runs = {r.job_name: r for r in instance.get_runs(RunsFilter(tags={"workdev/trigger": "cli"}))}
        assert set(runs) == {"ingest_events", "gdpr_erasure", "apply_retention", "replay_failed_events"}
        assert all(r.is_success for r in runs.values())
        erasure = runs["gdpr_erasure"]
        assert erasure.run_config["ops"]["erase_requests"]["config"]["request_ids"] == [1]
        assert erasure.tags["workdev/erasure_requests"] == "1"
        assert user not in json.dumps([erasure.run_config, erasure.tags])
        assert runs["apply_retention"].run_config["ops"]["apply_retention_policy"]["config"]["dry_run"] is True
