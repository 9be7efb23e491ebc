"""Benchmark ingestion: pending events in PostgreSQL -> the local Parquet warehouse, end to end.

Creates a throw-away database, migrates it and measures, with the engine the Dagster assets run
(``workdev_pipeline.ingest.ingestor.Ingestor`` over ``LocalEventFiles``):

* ``sweep_events_per_s``: one ``Ingestor.sweep()`` of a 1,000,000-event demo backlog (2,000 users, 7 days,
  seed 42) -- extraction, validation, enrichment, Parquet, publishing and bookkeeping -- in a subprocess of
  its own, interleaved with ``raw_copy_binary_rows_per_s``: ``COPY (SELECT * FROM platform_event_store
  WHERE tx_id ...) TO STDOUT (FORMAT binary)`` of the same rows, read and discarded (the extraction ceiling),
  and ``raw_copy_view_binary_rows_per_s``, the same through the ``pipeline_event_rows`` view the sweep reads;
  ``sweep_ratio_to_raw_copy`` is the first over the second. Every round starts from empty bookkeeping and an
  empty warehouse, so each sweeps the same rows;
* ``sweep_peak_rss_mib``: the sweep process's peak RSS (VmHWM), the worst round;
* ``rebuild_day_events_per_s`` (and ``rebuild_peak_rss_mib``): ``Ingestor.rebuild([day])`` of one UTC day
  holding 1,000,000 events (a backfill), after one sweep has loaded them;
* ``latency_p50_seconds`` / ``latency_p99_seconds`` / ``latency_max_seconds``: emission -> queryable in the
  warehouse under a steady 2,000 events/s (a producer process: ``emit_many`` of 200 events every 100 ms, each
  stamped with the time of its call), swept the way the ingest sensor does it: a tick every 30 s, a run
  (a fresh process doing one sweep, plus an allowance for Dagster's run start-up) when events are pending.

Bulk figures are medians of interleaved rounds (the machine is noisy). Prints one JSON line per figure on
stdout; progress goes to stderr. Usage::

    .venv/bin/python bench/bench_ingest.py [--events N] [--rounds N] [--latency-seconds S] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_emit import Run, emit_figure, median_figure, resolve_admin_url, throwaway_database

from workdev_pipeline.migrate import migrate

USERS = 2_000
BACKLOG_DAYS = 7.0
SEED = 42
SWEEP_BAR = 40_000  # events/s
RATIO_GOAL = 0.25
RSS_BAR_MIB = 1_024
REBUILD_BAR = 40_000  # events/s
LATENCY_P50_BAR, LATENCY_P99_BAR = 30.0, 60.0  # seconds
SENSOR_INTERVAL = 30.0  # the ingest sensor's minimum_interval_seconds
RUN_STARTUP = 2.0  # allowance for a Dagster run's launch, added before each sweep process
PRODUCER_RATE, PRODUCER_BATCH = 2_000, 200
PRODUCER_POOL = 20_000  # distinct demo events the producer cycles through (fresh ids and timestamps)
CONSUMER = "local"
REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve()

INGEST_TABLES = ("ingestion_sweeps", "event_failures", "warehouse_sync_status", "warehouse_rebuild_queue")
RAW_NOTE = ("COPY (SELECT * FROM platform_event_store WHERE <the same rows>) TO STDOUT (FORMAT binary) over one "
            "psycopg connection, every chunk read and discarded: the extraction ceiling, with nothing parsed")
VIEW_NOTE = ("the same rows through the pipeline_event_rows view the sweep reads (user_attributes join, JSON as "
             "text, metadata split), binary COPY read and discarded: what extraction alone costs the sweep")


def log(message: str) -> None:
    """Progress and information: stderr only (stdout carries the JSON figures)."""
    print(f"[bench_ingest] {message}", file=sys.stderr, flush=True)


# -- state -----------------------------------------------------------------------------------------------


def reset_ingestion(url: str, root: Path, *, events_too: bool = False) -> None:
    """Forget every sweep (bookkeeping, watermark, warehouse files), optionally the events, then CHECKPOINT."""
    tables = (("platform_event_store", "event_ingest_staging") if events_too else ()) + INGEST_TABLES
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in tables)))
        conn.execute("DELETE FROM pipeline_watermarks")
        conn.execute("CHECKPOINT")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)


def load_events(url: str, events: int, *, days: float, now: datetime | None = None) -> float:
    """``workdev-pipeline demo`` in-process (``load_demo``); returns its seconds. Every event must be new."""
    from workdev_pipeline.demo_loader import load_demo

    report = load_demo(url, users=USERS, events=events, days=days, seed=SEED, now=now)
    if report.events_inserted != events:
        raise RuntimeError(f"demo stored {report.events_inserted} of {events} events")
    log(f"demo: {events:,} events in {report.seconds:.1f} s ({events / report.seconds:,.0f}/s)")
    return report.seconds


def warehouse_rows(root: Path) -> int:
    """What DuckDB sees in the warehouse (the 'queryable' check)."""
    import duckdb

    from workdev_pipeline.ingest.local_store import LocalEventFiles

    files = LocalEventFiles(root)
    if not files.days():
        return 0
    query = "SELECT count(*) FROM read_parquet(?, hive_partitioning = true)"
    return duckdb.execute(query, [files.glob()]).fetchone()[0]


# -- raw COPY ceiling ------------------------------------------------------------------------------------


def raw_copy(conn: psycopg.Connection, statement: sql.Composable) -> int:
    """Binary ``COPY ... TO STDOUT`` of ``statement``'s rows, every chunk read and discarded; returns rows."""
    chunks = 0
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(statement)) as copy:
            for _ in copy:
                chunks += 1
        rows = cur.rowcount
    conn.commit()
    return rows


def timed_copy(url: str, statement: sql.Composable, expected: int) -> Run:
    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1")
        started = time.perf_counter()
        rows = raw_copy(conn, statement)
        seconds = time.perf_counter() - started
    if rows != expected:
        raise RuntimeError(f"raw COPY read {rows} rows, expected {expected}")
    return Run(rows, seconds)


# -- the engine in a process of its own ------------------------------------------------------------------


@dataclass(frozen=True)
class ChildRun:
    """One sweep/rebuild process: its outcome (as JSON), its wall time, its own peak RSS."""

    outcome: dict[str, Any]
    wall_seconds: float

    @property
    def run(self) -> Run:
        return Run(self.outcome["events_loaded"], self.outcome["seconds"])

    @property
    def peak_rss_mib(self) -> float:
        return self.outcome["vm_hwm_kib"] / 1024


def run_child(url: str, root: Path, operation: str, *, day: date | None = None, timeout: float = 900) -> ChildRun:
    """``bench_ingest.py --child sweep|rebuild`` in a fresh interpreter; its stdout is one JSON outcome."""
    args = [sys.executable, str(SCRIPT), "--child", operation, "--database-url", url, "--warehouse", str(root)]
    if day is not None:
        args += ["--day", day.isoformat()]
    started = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{operation} process exited with {done.returncode}")
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    if outcome["status"] not in ("loaded", "idle"):
        raise RuntimeError(f"{operation} ended {outcome['status']}: {outcome.get('error')}")
    return ChildRun(outcome, wall)


def vm_hwm_kib() -> int:
    """This process's peak resident set size (VmHWM), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_main(args: argparse.Namespace) -> int:
    """One operation of the engine; prints its outcome as one JSON line."""
    if args.child == "produce":
        return produce(args)
    from workdev_pipeline.ingest.ingestor import Ingestor
    from workdev_pipeline.ingest.local_store import LocalEventFiles

    ingestor = Ingestor(args.database_url, LocalEventFiles(args.warehouse), consumer=CONSUMER)
    sweep = args.child == "sweep"
    outcome = ingestor.sweep(run_id="bench") if sweep else ingestor.rebuild([args.day], run_id="bench")
    finished_at = time.time()  # the files are published (and the bookkeeping committed)
    print(json.dumps({
        "status": outcome.status, "kind": outcome.kind, "events_loaded": outcome.events_loaded,
        "events_failed": outcome.events_failed, "bytes_written": outcome.bytes_written, "seconds": outcome.seconds,
        "days": {d.isoformat(): n for d, n in outcome.days.items()}, "sweep_id": outcome.sweep_id,
        "error": outcome.error, "finished_at": finished_at, "vm_hwm_kib": vm_hwm_kib()}), flush=True)
    return 0


# -- phase 1: sweep of a backlog vs the raw COPY ceiling -------------------------------------------------


def measure_sweep(url: str, root: Path, events: int, rounds: int) -> list[dict[str, Any]]:
    log(f"sweep: loading a {events:,}-event demo backlog ({USERS} users, {BACKLOG_DAYS:g} days, seed {SEED})")
    load_events(url, events, days=BACKLOG_DAYS)
    with psycopg.connect(url) as conn:
        low, high, count = conn.execute("SELECT min(tx_id), max(tx_id), count(*) FROM platform_event_store").fetchone()
    bounds = sql.SQL("WHERE tx_id >= {} AND tx_id <= {}").format(sql.Literal(low), sql.Literal(high))
    store_rows = sql.SQL("SELECT * FROM platform_event_store {}").format(bounds)
    view_rows = sql.SQL("SELECT * FROM pipeline_event_rows {}").format(bounds)
    runs: dict[str, list[Run]] = {"raw": [], "view": [], "sweep": []}
    children: list[ChildRun] = []
    for r in range(1, rounds + 1):
        reset_ingestion(url, root)
        runs["raw"].append(timed_copy(url, store_rows, count))
        runs["view"].append(timed_copy(url, view_rows, count))
        child = run_child(url, root, "sweep")
        loaded, failed = child.outcome["events_loaded"], child.outcome["events_failed"]
        if loaded + failed != count:
            raise RuntimeError(f"the sweep loaded {loaded} and failed {failed} of {count} events")
        if r == 1 and (seen := warehouse_rows(root)) != loaded:
            raise RuntimeError(f"DuckDB sees {seen} rows in the warehouse, the sweep reports {loaded}")
        children.append(child)
        runs["sweep"].append(child.run)
        log(f"round {r}/{rounds}: raw COPY {runs['raw'][-1].rate:,.0f}/s, via view {runs['view'][-1].rate:,.0f}/s, "
            f"sweep {child.run.rate:,.0f}/s ({child.run.seconds:.1f} s; process {child.wall_seconds:.1f} s, "
            f"peak RSS {child.peak_rss_mib:,.0f} MiB; {failed} dead-lettered)")
    common = {"backlog": f"demo --users {USERS} --events {events} --days {BACKLOG_DAYS:g} --seed {SEED}"}
    sweep = median_figure("sweep_events_per_s", runs["sweep"], **common, bar=SWEEP_BAR,
                          events_failed=children[0].outcome["events_failed"],
                          day_files=len(children[0].outcome["days"]),
                          bytes_written=children[0].outcome["bytes_written"],
                          process_seconds=[round(c.wall_seconds, 2) for c in children],
                          path="Ingestor.sweep() in a fresh process (timed inside it: excludes interpreter start-up "
                               "and imports, includes everything the sweep does)")
    sweep["meets_bar"] = sweep["value"] >= SWEEP_BAR
    raw = median_figure("raw_copy_binary_rows_per_s", runs["raw"], **common, note=RAW_NOTE)
    view = median_figure("raw_copy_view_binary_rows_per_s", runs["view"], **common, note=VIEW_NOTE)
    ratio = sweep["value"] / raw["value"]
    ratio_figure = {"figure": "sweep_ratio_to_raw_copy", "value": round(ratio, 3), "unit": "ratio",
                    "events": sweep["events"], "seconds": sweep["seconds"], "numerator": sweep["figure"],
                    "ratio_to": raw["figure"], "goal": RATIO_GOAL, "meets_goal": ratio >= RATIO_GOAL,
                    "per_round": [round(a.rate / b.rate, 3) for a, b in zip(runs["sweep"], runs["raw"], strict=True)]}
    peak = max(c.peak_rss_mib for c in children)
    rss = {"figure": "sweep_peak_rss_mib", "value": round(peak, 1), "unit": "MiB", "events": sweep["events"],
           "seconds": sweep["seconds"], "runs_mib": [round(c.peak_rss_mib, 1) for c in children],
           "statistic": f"max of {rounds} rounds (VmHWM of the sweep process)", "bar": RSS_BAR_MIB,
           "meets_bar": peak <= RSS_BAR_MIB}
    return [sweep, raw, view, ratio_figure, rss]


# -- phase 2: rebuilding one day -------------------------------------------------------------------------


def measure_rebuild(url: str, root: Path, events: int, rounds: int, day: date) -> list[dict[str, Any]]:
    reset_ingestion(url, root, events_too=True)
    # generate_events spreads over [now - days, now]: one UTC day, in the past, is [day 00:00:00, day 23:59:59]
    now = datetime.combine(day, dtime(23, 59, 59), tzinfo=UTC)
    span = (now - datetime.combine(day, dtime.min, tzinfo=UTC)) / timedelta(days=1)
    log(f"rebuild: loading {events:,} demo events, all on {day} (UTC)")
    load_events(url, events, days=span, now=now)
    with psycopg.connect(url) as conn:
        days = conn.execute("SELECT (\"timestamp\" AT TIME ZONE 'UTC')::date, count(*) FROM platform_event_store "
                            "GROUP BY 1").fetchall()
    if days != [(day, events)]:
        raise RuntimeError(f"the one-day load spread over {days}")
    first = run_child(url, root, "sweep")
    log(f"rebuild: first sweep loaded {first.outcome['events_loaded']:,} ({first.run.rate:,.0f}/s, "
        f"peak RSS {first.peak_rss_mib:,.0f} MiB)")
    lo, hi = (sql.Literal(datetime.combine(d, dtime.min, tzinfo=UTC)) for d in (day, day + timedelta(days=1)))
    day_rows = sql.SQL("SELECT * FROM platform_event_store WHERE \"timestamp\" >= {} AND \"timestamp\" < {}").format(
        lo, hi)
    runs: dict[str, list[Run]] = {"raw": [], "rebuild": []}
    children: list[ChildRun] = []
    for r in range(1, rounds + 1):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        runs["raw"].append(timed_copy(url, day_rows, events))
        child = run_child(url, root, "rebuild", day=day)
        expected = first.outcome["events_loaded"]
        if child.outcome["days"] != {day.isoformat(): expected}:
            raise RuntimeError(f"the rebuild wrote {child.outcome['days']}, expected {expected} rows on {day}")
        children.append(child)
        runs["rebuild"].append(child.run)
        log(f"round {r}/{rounds}: raw COPY of the day {runs['raw'][-1].rate:,.0f}/s, rebuild {child.run.rate:,.0f}/s "
            f"({child.run.seconds:.1f} s; process {child.wall_seconds:.1f} s, peak RSS {child.peak_rss_mib:,.0f} MiB)")
    if (seen := warehouse_rows(root)) != first.outcome["events_loaded"]:
        raise RuntimeError(f"DuckDB sees {seen} rows after the rebuilds, expected {first.outcome['events_loaded']}")
    common = {"day": day.isoformat(), "load": f"{events} demo events within that UTC day, seed {SEED}"}
    rebuild = median_figure("rebuild_day_events_per_s", runs["rebuild"], **common, bar=REBUILD_BAR,
                            process_seconds=[round(c.wall_seconds, 2) for c in children],
                            ratio_to_raw_copy_of_the_day=round(
                                statistics.median(runs["rebuild"][i].rate / runs["raw"][i].rate
                                                  for i in range(rounds)), 3),
                            first_sweep_events_per_s=round(first.run.rate, 1),
                            path="Ingestor.rebuild([day]) in a fresh process (timed inside it), after one sweep")
    rebuild["meets_bar"] = rebuild["value"] >= REBUILD_BAR
    raw = median_figure("raw_copy_day_binary_rows_per_s", runs["raw"], **common, note=RAW_NOTE)
    peak = max(c.peak_rss_mib for c in children)
    rss = {"figure": "rebuild_peak_rss_mib", "value": round(peak, 1), "unit": "MiB", "events": rebuild["events"],
           "seconds": rebuild["seconds"], "runs_mib": [round(c.peak_rss_mib, 1) for c in children],
           "statistic": f"max of {rounds} rounds (VmHWM of the rebuild process)", "bar": RSS_BAR_MIB,
           "meets_bar": peak <= RSS_BAR_MIB}
    return [rebuild, raw, rss]


# -- phase 3: latency under a steady load ----------------------------------------------------------------


def produce(args: argparse.Namespace) -> int:
    """The producer process: ``emit_many`` of ``batch`` events every ``batch / rate`` seconds for ``seconds``,
    each event stamped with the time of its call; prints a JSON summary."""
    from workdev_pipeline.client import AnalyticsClient
    from workdev_pipeline.demo import generate_events, generate_users

    now = datetime.now(UTC).replace(microsecond=0)
    pool = list(generate_events(generate_users(USERS, now=now), PRODUCER_POOL, days=1.0, seed=SEED + 1, now=now))
    for event in pool:
        del event["event_id"]  # server-generated ids: every emission is a new event
    interval = args.batch / args.rate
    emitted = batches = late = 0
    worst_lag = 0.0
    with AnalyticsClient(args.database_url, max_connections=1, source="bench") as client:
        started = time.monotonic()
        while (due := started + batches * interval) < started + args.seconds:
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            else:
                late += 1
                worst_lag = max(worst_lag, -wait)
            stamp = datetime.now(UTC)
            offset = batches * args.batch
            batch = [{**pool[(offset + i) % PRODUCER_POOL], "timestamp": stamp} for i in range(args.batch)]
            emitted += client.emit_many(batch, batch_size=args.batch).inserted
            batches += 1
        seconds = time.monotonic() - started
    print(json.dumps({"emitted": emitted, "batches": batches, "seconds": seconds, "rate": emitted / seconds,
                      "late_batches": late, "worst_lag_seconds": worst_lag}), flush=True)
    return 0


def sweep_latencies(root: Path, outcome: dict[str, Any]) -> list[float]:
    """Seconds from each event's timestamp (its emission) to the end of the sweep that published it."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from workdev_pipeline.ingest.local_store import LocalEventFiles

    files = LocalEventFiles(root)
    out: list[float] = []
    for day in outcome["days"]:
        path = files.day_dir(date.fromisoformat(day)) / files.sweep_file_name(outcome["sweep_id"])
        micros = pc.cast(pq.read_table(path, columns=["timestamp"]).column(0), pa.int64()).to_pylist()
        out += [outcome["finished_at"] - us / 1e6 for us in micros]
    return out


def pending_events(url: str) -> int:
    from workdev_pipeline.sql_files import query

    with psycopg.connect(url) as conn:
        return conn.execute(query("ingest/pending_backlog"), {"consumer": CONSUMER}).fetchone()[0]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    return sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)]


def measure_latency(url: str, root: Path, seconds: float, interval: float, startup: float) -> list[dict[str, Any]]:
    reset_ingestion(url, root, events_too=True)
    log(f"latency: {PRODUCER_RATE:,} events/s for {seconds:g} s; a sweep process every {interval:g} s tick while "
        f"events are pending, {startup:g} s after the tick (run start-up allowance)")
    producer = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--child", "produce", "--database-url", url, "--rate", str(PRODUCER_RATE),
         "--batch", str(PRODUCER_BATCH), "--produce-seconds", str(seconds)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    latencies: list[float] = []
    sweeps: list[dict[str, Any]] = []
    started = time.monotonic()
    deadline = started + seconds + 4 * interval + 120  # self-stopping, whatever happens
    tick = 0
    try:
        while True:
            tick = max(tick + 1, math.ceil((time.monotonic() - started) / interval))
            time.sleep(max(0.0, started + tick * interval - time.monotonic()))
            producer_done = producer.poll() is not None
            if not pending_events(url):
                if producer_done:
                    break
                continue
            time.sleep(startup)
            child = run_child(url, root, "sweep", timeout=max(60.0, deadline - time.monotonic()))
            lat = sweep_latencies(root, child.outcome)
            latencies += lat
            sweeps.append({"at_s": round(time.monotonic() - started, 1), "events": child.outcome["events_loaded"],
                           "sweep_s": round(child.outcome["seconds"], 2), "process_s": round(child.wall_seconds, 2),
                           "max_latency_s": round(max(lat), 1) if lat else None})
            log(f"latency: tick {tick} at {sweeps[-1]['at_s']:.0f} s: swept {child.outcome['events_loaded']:,} "
                f"events in {child.outcome['seconds']:.2f} s (process {child.wall_seconds:.1f} s), "
                f"latency up to {sweeps[-1]['max_latency_s']} s")
            if producer_done:  # it had committed everything before this sweep's snapshot: all is loaded
                break
            if time.monotonic() > deadline:
                log("latency: deadline reached before the backlog drained")
                break
    finally:
        if producer.poll() is None:
            producer.terminate()
        out, _ = producer.communicate(timeout=60)
    if producer.returncode != 0:
        raise RuntimeError(f"the producer exited with {producer.returncode}")
    summary = json.loads(out.strip().splitlines()[-1])
    measured = len(latencies)
    log(f"latency: producer emitted {summary['emitted']:,} in {summary['seconds']:.1f} s "
        f"({summary['rate']:,.0f}/s; {summary['late_batches']} late batches, worst lag "
        f"{summary['worst_lag_seconds']:.2f} s); {measured:,} measured in {len(sweeps)} sweeps")
    if not latencies:
        raise RuntimeError("no event reached the warehouse")
    latencies.sort()
    elapsed = time.monotonic() - started
    common = {
        "events": measured, "seconds": round(elapsed, 1), "events_emitted": summary["emitted"],
        "producer": f"emit_many of {PRODUCER_BATCH} every {PRODUCER_BATCH / PRODUCER_RATE:g} s, timestamp = now",
        "producer_rate": round(summary["rate"], 1), "producer_late_batches": summary["late_batches"],
        "sensor_interval_s": interval, "run_startup_allowance_s": startup,
        "mode": (f"no Dagster: a tick every {interval:g} s; when events are pending, sleep {startup:g} s "
                 "(a Dagster run's start-up) and run one Ingestor.sweep() in a fresh process (interpreter, imports "
                 "and Ingestor set-up included); latency = end of that sweep (files published) - event timestamp"),
        "sweeps": len(sweeps),
    }
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return [
        {"figure": "latency_p50_seconds", "value": round(p50, 2), "unit": "s", **common,
         "bar": LATENCY_P50_BAR, "meets_bar": p50 <= LATENCY_P50_BAR},
        {"figure": "latency_p99_seconds", "value": round(p99, 2), "unit": "s", **common,
         "bar": LATENCY_P99_BAR, "meets_bar": p99 <= LATENCY_P99_BAR},
        {"figure": "latency_max_seconds", "value": round(latencies[-1], 2), "unit": "s", **common,
         "per_sweep": sweeps},
    ]


# -- main ------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000,
                        help="events of the backlog and of the rebuilt day (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of sweep/rebuild (default 2)")
    parser.add_argument("--latency-seconds", type=float, default=180.0,
                        help="how long the 2,000 events/s producer runs (default 180; 0 skips the latency phase)")
    parser.add_argument("--sensor-interval", type=float, default=SENSOR_INTERVAL, help="seconds between ticks")
    parser.add_argument("--run-startup", type=float, default=RUN_STARTUP,
                        help="seconds added before each latency sweep for a Dagster run's start-up (default 2)")
    parser.add_argument("--day", type=date.fromisoformat, default=None,
                        help="the UTC day to load and rebuild (default yesterday)")
    parser.add_argument("--skip", action="append", choices=("sweep", "rebuild", "latency"), default=[],
                        help="skip a phase (repeatable)")
    parser.add_argument("--admin-url", help="superuser URL (default: $WORKDEV_BENCH_ADMIN_URL, else local)")
    # the child processes' own options
    parser.add_argument("--child", choices=("sweep", "rebuild", "produce"), help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, default=PRODUCER_RATE, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=PRODUCER_BATCH, help=argparse.SUPPRESS)
    parser.add_argument("--produce-seconds", dest="seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.events, args.rounds) < 1 or args.latency_seconds < 0 or args.sensor_interval <= 0:
        parser.error("--events and --rounds must be positive, --latency-seconds >= 0, --sensor-interval > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    started = time.perf_counter()
    admin = resolve_admin_url(args.admin_url)
    day = args.day or (datetime.now(UTC) - timedelta(days=1)).date()
    root = Path(tempfile.mkdtemp(prefix="wd_bench_ingest_"))
    log(f"warehouse under {root}")
    try:
        with throwaway_database(admin) as url:
            migrate(url)
            if "sweep" not in args.skip:
                for figure in measure_sweep(url, root, args.events, args.rounds):
                    emit_figure(figure)
            if "rebuild" not in args.skip:
                for figure in measure_rebuild(url, root, args.events, args.rounds, day):
                    emit_figure(figure)
            if args.latency_seconds > 0 and "latency" not in args.skip:
                for figure in measure_latency(url, root, args.latency_seconds, args.sensor_interval, args.run_startup):
                    emit_figure(figure)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    log(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
