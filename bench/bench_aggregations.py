"""Benchmark the aggregations: one UTC day of 1,000,000 events in the lake -> its 24 hourly and its daily
aggregations in PostgreSQL's ``event_aggregations`` and the lake's ``event_aggregations`` Delta table.

Creates a throw-away database, migrates it, loads a demo day (2,000 users, seed 42, every event within the UTC
day) and sweeps it into a temporary lake with the ingestion engine, then measures, in interleaved rounds:

* ``hourly_plus_daily_seconds`` (bar: <= 5 s): ``Aggregator.rebuild`` of the day's 24 hours (one range, as a
  single-run backfill does) plus its day -- DuckDB over a snapshot of the day's partition, exact distinct users
  and sessions, amounts; DELETE + COPY in PostgreSQL; one predicate-overwrite commit to the lake -- the work the
  assets do;
* ``dagster_hourly_plus_daily_seconds``: the same through Dagster, ``execute_in_process`` of the
  ``event_aggregations_hourly`` multi-asset over the day's 24 partitions (one run) and of the daily one
  (an ephemeral instance; what a run adds besides the work, without a run worker's process start-up);
* ``postgres_group_by_hourly_seconds``: for comparison, the same hourly aggregates computed by PostgreSQL
  (``GROUP BY date_trunc``, exact distinct, amounts from jsonb) over the store -- the source not chosen;
* ``duckdb_count_by_hour_seconds``: the floor of reading the day, ``count(*)`` by hour and type over the same
  snapshot dataset;
* ``parquet_files_read_seconds``: for comparison, the engine's hourly + daily queries with DuckDB reading the
  snapshot's Parquet files itself (``read_parquet``, the previous engine's way; local lakes only) -- against
  ``duckdb_read_seconds`` of the main figure, what the Arrow dataset route costs;
* ``weekly_seconds``: the week holding the day (one round).

Prints one JSON line per figure on stdout (medians of the rounds; every run listed); progress goes to stderr.
Usage::

    .venv/bin/python bench/bench_aggregations.py [--events N] [--rounds N] [--day YYYY-MM-DD] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import duckdb
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_emit import emit_figure, resolve_admin_url, throwaway_database

from workdev_pipeline.aggregations.engine import AggregationOutcome, Aggregator
from workdev_pipeline.aggregations.periods import DAILY, HOURLY, WEEKLY
from workdev_pipeline.lake.events import EventLake
from workdev_pipeline.lake.location import LakeLocation
from workdev_pipeline.migrate import migrate

USERS = 2_000
SEED = 42
BAR_SECONDS = 5.0
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

POSTGRES_HOURLY = """
SELECT date_trunc('hour', e."timestamp" AT TIME ZONE 'UTC') AS period_start, e.event_type, e.event_category,
       count(*), count(DISTINCT e.user_id), count(DISTINCT e.session_id),
       sum((e.event_data ->> s.amount_field)::numeric)
FROM platform_event_store e
JOIN event_schemas s ON s.event_type = e.event_type
WHERE e."timestamp" >= %(start)s AND e."timestamp" < %(end)s
GROUP BY 1, 2, 3
"""
DUCKDB_COUNT = "SELECT date_trunc('hour', \"timestamp\"), event_type, count(*) FROM platform_events GROUP BY ALL"


def log(message: str) -> None:
    """Progress and information: stderr only (stdout carries the JSON figures)."""
    print(f"[bench_aggregations] {message}", file=sys.stderr, flush=True)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def seconds_figure(name: str, runs: list[float], events: int, **context: Any) -> dict[str, Any]:
    """A figure line whose value is the median of ``runs`` (seconds)."""
    value = statistics.median(runs)
    return {"figure": name, "value": round(value, 3), "unit": "s", "events": events, "seconds": round(value, 3),
            "runs_seconds": [round(r, 3) for r in runs], "statistic": f"median of {len(runs)} interleaved runs",
            **context}


# -- data --------------------------------------------------------------------------------------------------


def load_day(url: str, root: Path, events: int, day: date) -> int:
    """``events`` demo events within ``day`` (UTC), swept into the lake under ``root``; returns how many the lake
    holds."""
    from workdev_pipeline.demo_loader import load_demo
    from workdev_pipeline.ingest.ingestor import Ingestor

    now = datetime.combine(day, dtime(23, 59, 59), tzinfo=UTC)  # events spread over [now - days, now]
    span = (now - datetime.combine(day, dtime.min, tzinfo=UTC)) / timedelta(days=1)
    log(f"loading {events:,} demo events ({USERS} users, seed {SEED}), all on {day} (UTC)")
    report = load_demo(url, users=USERS, events=events, days=span, seed=SEED, now=now)
    if report.events_inserted != events:
        raise RuntimeError(f"demo stored {report.events_inserted} of {events} events")
    log(f"demo: {report.seconds:.1f} s; sweeping into {root}")
    outcome = Ingestor(url, EventLake(LakeLocation.from_env(str(root)))).sweep(run_id="bench")
    if outcome.status != "loaded" or set(outcome.days) != {day}:
        raise RuntimeError(f"the sweep ended {outcome.status} with days {outcome.days}")
    log(f"sweep: {outcome.events_loaded:,} loaded, {outcome.events_failed} failed in {outcome.seconds:.1f} s")
    return outcome.events_loaded


# -- runs ------------------------------------------------------------------------------------------------


def engine_round(url: str, aggregator: Aggregator, start: datetime, loaded: int) -> dict[str, Any]:
    """The day's hourly (24 periods, one rebuild) and daily aggregations, as the assets run them."""
    with psycopg.connect(url, autocommit=True) as conn:
        outcomes: dict[str, AggregationOutcome] = {}
        for g in (HOURLY, DAILY):
            outcomes[g.name] = aggregator.rebuild(conn, g, start, start + timedelta(days=1))
            if outcomes[g.name].events != loaded:
                raise RuntimeError(f"{g.name} counted {outcomes[g.name].events} events, expected {loaded}")
        stored = dict(conn.execute("SELECT aggregation_type, sum(total_events) FROM event_aggregations "
                                   "GROUP BY 1").fetchall())
    if any(stored.get(g) != loaded for g in ("hourly", "daily")):
        raise RuntimeError(f"event_aggregations holds {stored}, expected {loaded} events per type")
    return outcomes


def dagster_round(defs, day: date) -> tuple[float, float]:
    """The hourly multi-asset over the day's 24 partitions (one run), then the daily one."""
    from dagster import DagsterInstance

    from workdev_pipeline.assets.aggregations import lake_key, postgres_key

    job = defs.resolve_implicit_global_asset_job_def()
    out = []
    with DagsterInstance.ephemeral() as instance:
        for g, tags in ((HOURLY, {RANGE_START: f"{day.isoformat()}-00:00", RANGE_END: f"{day.isoformat()}-23:00"}),
                        (DAILY, {RANGE_START: day.isoformat(), RANGE_END: day.isoformat()})):
            seconds, result = timed(lambda g=g, tags=tags: job.execute_in_process(
                instance=instance, asset_selection=[postgres_key(g), lake_key(g)], tags=tags))
            if not result.success:
                raise RuntimeError(f"the {g.name} run failed")
            out.append(seconds)
    return out[0], out[1]


def postgres_round(url: str, start: datetime) -> tuple[float, int]:
    with psycopg.connect(url) as conn:
        seconds, rows = timed(lambda: conn.execute(POSTGRES_HOURLY, {"start": start,
                                                                   "end": start + timedelta(days=1)}).fetchall())
    return seconds, len(rows)


def duckdb_round(events: EventLake, day: date) -> float:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        seconds, _ = timed(lambda: (events.snapshot().register(con, "platform_events", [day]),
                                    con.execute(DUCKDB_COUNT).fetchall()))
    finally:
        con.close()
    return seconds


def parquet_files_round(url: str, lake: EventLake, start: datetime) -> float:
    """The hourly and daily queries of the engine over the snapshot's data files read by DuckDB's own reader."""
    from workdev_pipeline.aggregations.engine import amount_paths
    from workdev_pipeline.sql_files import query

    with psycopg.connect(url) as conn:
        paths = amount_paths(conn)
    started = time.perf_counter()
    snapshot = lake.snapshot()
    files = [snapshot.file_uri(p) for p in snapshot.day_files(start.date())]
    for g in (HOURLY, DAILY):
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.read_parquet(files).create_view("platform_events")
            con.sql(query("aggregations/aggregate_events"), params={
                "unit": g.unit, "step": g.step, "range_start": start, "range_end": start + timedelta(days=1),
                "amount_types": list(paths), "amount_paths": list(paths.values())}).fetchall()
        finally:
            con.close()
    return time.perf_counter() - started


def measure(url: str, root: Path, events: int, rounds: int, day: date) -> list[dict[str, Any]]:
    from workdev_pipeline.definitions import build_definitions
    from workdev_pipeline.resources.lake import LakeResource
    from workdev_pipeline.resources.postgres import PostgresResource

    start = datetime.combine(day, dtime.min, tzinfo=UTC)
    lake = EventLake(LakeLocation.from_env(str(root)))
    aggregator = Aggregator(lake)
    files = len(lake.snapshot().day_files(day))
    defs = build_definitions({"postgres": PostgresResource(database_url=url), "lake": LakeResource(uri=str(root))})
    runs: dict[str, list[float]] = {k: [] for k in ("engine", "hourly", "daily", "read", "postgres_write",
                                                    "lake_write", "dagster", "dagster_hourly", "dagster_daily",
                                                    "pg_group_by", "duckdb_count", "parquet_files")}
    last: dict[str, AggregationOutcome] = {}
    pg_rows = 0
    for r in range(1, rounds + 1):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        seconds, last = timed(lambda: engine_round(url, aggregator, start, events))
        runs["engine"].append(seconds)
        runs["hourly"].append(last["hourly"].seconds)
        runs["daily"].append(last["daily"].seconds)
        runs["read"].append(sum(o.read_seconds for o in last.values()))
        runs["postgres_write"].append(sum(o.postgres_seconds for o in last.values()))
        runs["lake_write"].append(sum(o.lake_seconds for o in last.values()))
        hourly_run, daily_run = dagster_round(defs, day)
        runs["dagster_hourly"].append(hourly_run)
        runs["dagster_daily"].append(daily_run)
        runs["dagster"].append(hourly_run + daily_run)
        pg_seconds, pg_rows = postgres_round(url, start)
        runs["pg_group_by"].append(pg_seconds)
        runs["duckdb_count"].append(duckdb_round(lake, day))
        runs["parquet_files"].append(parquet_files_round(url, lake, start))
        log(f"round {r}/{rounds}: hourly + daily {seconds:.2f} s (hourly {last['hourly'].seconds:.2f}, daily "
            f"{last['daily'].seconds:.2f}); through Dagster {hourly_run + daily_run:.2f} s; PostgreSQL GROUP BY "
            f"{pg_seconds:.2f} s; DuckDB count(*) {runs['duckdb_count'][-1]:.2f} s; the queries over the files "
            f"{runs['parquet_files'][-1]:.2f} s (the engine's read {runs['read'][-1]:.2f} s)")
    with psycopg.connect(url, autocommit=True) as conn:
        week_start = WEEKLY.floor(start)
        weekly = aggregator.rebuild(conn, WEEKLY, week_start, week_start + timedelta(weeks=1))

    common = {"day": day.isoformat(), "load": f"{events} demo events within that UTC day ({USERS} users, seed {SEED})",
              "event_files": files}
    main = seconds_figure(
        "hourly_plus_daily_seconds", runs["engine"], events, **common, bar=BAR_SECONDS,
        meets_bar=statistics.median(runs["engine"]) <= BAR_SECONDS,
        hourly_seconds=round(statistics.median(runs["hourly"]), 3),
        daily_seconds=round(statistics.median(runs["daily"]), 3),
        duckdb_read_seconds=round(statistics.median(runs["read"]), 3),
        postgres_write_seconds=round(statistics.median(runs["postgres_write"]), 3),
        lake_write_seconds=round(statistics.median(runs["lake_write"]), 3),
        rows_written={g: o.rows_written for g, o in last.items()},
        lake_commits={g: o.lake_commits for g, o in last.items()},
        lake_bytes_written={g: o.bytes_written for g, o in last.items()},
        path="Aggregator.rebuild(hourly, the day) + Aggregator.rebuild(daily, the day), one process")
    dagster = seconds_figure(
        "dagster_hourly_plus_daily_seconds", runs["dagster"], events, **common, bar=BAR_SECONDS,
        meets_bar=statistics.median(runs["dagster"]) <= BAR_SECONDS,
        hourly_run_seconds=round(statistics.median(runs["dagster_hourly"]), 3),
        daily_run_seconds=round(statistics.median(runs["dagster_daily"]), 3),
        path="execute_in_process: event_aggregations_hourly over 24 partitions (one run), then "
             "event_aggregations_daily (one partition); ephemeral instance, in-process executor")
    postgres = seconds_figure(
        "postgres_group_by_hourly_seconds", runs["pg_group_by"], events, **common, rows=pg_rows,
        path="PostgreSQL: GROUP BY date_trunc('hour') over platform_event_store with exact count(DISTINCT) and "
             "jsonb amounts, rows fetched, nothing written (the source not chosen)")
    floor = seconds_figure("duckdb_count_by_hour_seconds", runs["duckdb_count"], events, **common,
                           path="DuckDB: count(*) by hour and event_type over a snapshot of the day's partition")
    week = {"figure": "weekly_seconds", "value": round(weekly.seconds, 3), "unit": "s", "events": weekly.events,
            "seconds": round(weekly.seconds, 3), "statistic": "one run", "week": week_start.date().isoformat(),
            "rows_written": weekly.rows_written,
            "path": "Aggregator.rebuild(weekly, the week holding the day): its seven days' partitions"}
    files_read = seconds_figure(
        "parquet_files_read_seconds", runs["parquet_files"], events, **common,
        engine_read_seconds=round(statistics.median(runs["read"]), 3),
        path="DuckDB: the engine's hourly and daily queries over the snapshot's Parquet files (read_parquet), "
             "against the engine's read through the snapshot's Arrow dataset")
    return [main, dagster, postgres, floor, files_read, week]


# -- main ------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the day (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--day", type=date.fromisoformat, default=None,
                        help="the UTC day to load and aggregate (default yesterday: a closed day)")
    parser.add_argument("--admin-url", help="superuser URL (default: $WORKDEV_BENCH_ADMIN_URL, else local)")
    args = parser.parse_args(argv)
    if min(args.events, args.rounds) < 1:
        parser.error("--events and --rounds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    admin = resolve_admin_url(args.admin_url)
    day = args.day or (datetime.now(UTC) - timedelta(days=1)).date()
    root = Path(tempfile.mkdtemp(prefix="wd_bench_aggregations_"))
    log(f"lake under {root}")
    try:
        with throwaway_database(admin) as url:
            migrate(url)
            loaded = load_day(url, root, args.events, day)
            for figure in measure(url, root, loaded, args.rounds, day):
                emit_figure(figure)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    log(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
