"""Benchmark ingestion: pending events in PostgreSQL -> the lake (``lake/platform_events``, a Delta table), end to
end, side by side with the previous code (the day-directory Parquet store) and the raw binary COPY, in one run.

Creates a throw-away database, migrates it and measures, with the engine the Dagster assets run
(``workdev_pipeline.ingest.ingestor.Ingestor`` over ``EventLake``, consumer ``lake``):

* ``sweep_events_per_s``: one ``Ingestor.sweep()`` of a 1,000,000-event demo backlog (2,000 users, 7 days,
  seed 42) -- extraction, validation, enrichment, the Delta commit and bookkeeping -- in a subprocess of its own,
  interleaved with ``previous_sweep_events_per_s`` (the same sweep by the code at ``--previous``, default eb9e03e:
  a git worktree of it first on PYTHONPATH, its own ``bench/bench_ingest.py --child`` and its own consumer
  ``local``), with ``raw_copy_binary_rows_per_s``: ``COPY (SELECT <columns> FROM platform_event_store WHERE tx_id ...)
  TO STDOUT (FORMAT binary)`` of the same rows, read and discarded (the extraction ceiling), and
  ``raw_copy_view_binary_rows_per_s``, the same through the ``pipeline_store_rows`` view the sweep reads;
  ``sweep_ratio_to_raw_copy`` (goal 0.8, bar 0.6) and ``sweep_ratio_to_previous`` (bar >= 0.9) are the lake's over
  those. Every sweep starts from empty bookkeeping and an empty lake/warehouse, so each sweeps the same rows;
* ``peer_duckdb_events_per_s`` / ``peer_dlt_events_per_s`` and ``sweep_ratio_to_duckdb`` / ``sweep_ratio_to_dlt``
  (goal > 1): the peers from PyPI (``bench/peers.py``: DuckDB's postgres scanner, dlt + connectorx), each copying
  every column of the same rows of ``platform_event_store`` into Parquet in a process of its own, interleaved with
  the sweeps; ``--events`` repeated (e.g. 1,000,000 then 3,000,000) repeats this phase per backlog and gives
  ``sweep_scale_ratio``, the later backlog's sweep rate over the first's (goal >= 0.95), with its peak RSS;
* ``sweep_peak_rss_mib`` / ``previous_sweep_peak_rss_mib``: each sweep process's peak RSS (VmHWM), worst round;
* ``sweep_time_split``: where the lake sweep's time goes (extraction wait, validation, enrichment, lake batches,
  delta-rs write, lake log, PostgreSQL bookkeeping), from one more sweep with timers wrapped around those steps
  (not counted in the medians); ``previous_sweep_time_split`` the same for the previous code;
* ``rebuild_day_events_per_s`` / ``previous_rebuild_day_events_per_s`` / ``rebuild_ratio_to_previous`` (and the
  peak RSS of each): ``Ingestor.rebuild([day])`` of one UTC day holding 1,000,000 events (a backfill), after one
  sweep of each consumer has loaded them; ``peer_<name>_day_events_per_s`` / ``rebuild_ratio_to_<name>``: the
  peers copying that day's rows (a WHERE on the timestamp);
* ``latency_p50_seconds`` / ``latency_p99_seconds`` / ``latency_max_seconds``: emission -> queryable in the lake
  (the Delta commit holding the event, for every row of the latest snapshot read by DuckDB) under a steady 2,000
  events/s (a producer process: ``emit_many`` of 200 events every 100 ms, each stamped with the time of its call),
  swept for real by ``workdev-pipeline dev`` (dagster dev: webserver + daemon, the ingest sensor's runs queued and
  launched by the instance), once per ``--sensor-interval`` (WORKDEV_INGEST_INTERVAL_SECONDS); and
  ``run_request_to_first_event_seconds``: from a sweep run's creation by the sensor to its first event read (the
  ``first_event_read_at`` / ``seconds_before_first_event`` of its materialization);
* ``shape_sweep_peak_rss_mib`` / ``before_shape_sweep_peak_rss_mib``: peak RSS of one sweep of each backlog shape
  in ``SHAPES`` (1,000,000 events over 7 days; 3,000,000 over 360 days, a history import), by this tree and by the
  code before the write budget (``--shapes-before``, default 7be23c0: delta-rs held one Parquet writer per day);
* ``load_average``: ``os.getloadavg()`` at the start, after each phase and at the end (the machine is shared).

Bulk figures are medians of interleaved rounds (the machine is noisy). Prints one JSON line per figure on
stdout; progress goes to stderr. Usage::

    .venv/bin/python bench/bench_ingest.py [--events N ...] [--rounds N] [--previous REV|none] [--latency-seconds S]
        [--sensor-interval S ...] [--no-profile] [--shapes-before REV|none] [--shapes-budget MIB]
        [--peer duckdb|dlt ...] [--peers-venv DIR] [--skip sweep|rebuild|shapes|latency|peers] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import runpy
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: dagster dev's GraphQL helpers
from bench_emit import Run, emit_figure, median_figure, resolve_admin_url, throwaway_database
from peers import COLUMNS, PEERS, VENV, WHAT, Peer, PeerRun, prepare_peers, run_peer, vm_hwm_kib

from workdev_pipeline.migrate import migrate

USERS = 2_000
BACKLOG_DAYS = 7.0
SEED = 42
SWEEP_BAR = 40_000  # events/s
RATIO_GOAL, RATIO_BAR = 0.8, 0.6  # the sweep over the raw COPY of its rows (issue 14)
PEER_RATIO_GOAL = 1.0  # the sweep faster than each peer
SCALE_GOAL = 0.95  # a larger backlog's sweep rate over the first's (3,000,000 over 1,000,000 events)
PREVIOUS_RATIO_BAR = 0.9  # the lake's sweep/rebuild over the previous code's, same run
RSS_BAR_MIB = 1_024
REBUILD_BAR = 40_000  # events/s
LATENCY_P50_GOAL, LATENCY_P99_GOAL = 20.0, 35.0  # seconds, with the 30 s interval (issue 14)
START_GOAL = 5.0  # seconds from a sensor tick's run request to its sweep's first event read, on a quiet machine
SENSOR_INTERVAL = 30  # WORKDEV_INGEST_INTERVAL_SECONDS' default
PRODUCER_RATE, PRODUCER_BATCH = 2_000, 200
PRODUCER_POOL = 20_000  # distinct demo events the producer cycles through (fresh ids and timestamps)
CONSUMER = "lake"
SHAPES = ((1_000_000, 7.0), (3_000_000, 360.0))  # (events, days): a backlog of a few days, a history import
BEFORE_BUDGET_REV = "7be23c0"  # delta-rs writing the sweep: one Parquet writer per day held until the commit
PREVIOUS_REV = "eb9e03e"  # the day-directory Parquet store, before the lake
PREVIOUS_CONSUMER = "local"  # the previous code's bench consumer (its own bench_ingest.py's CONSUMER)
REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve()

INGEST_TABLES = ("ingestion_sweeps", "event_failures", "warehouse_sync_status", "warehouse_rebuild_queue")
#: The store's columns (what the peers copy too), named.
WRITTEN_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
RAW_NOTE = ("COPY (SELECT <the store's written columns> FROM platform_event_store WHERE <the same rows>) TO STDOUT "
            "(FORMAT binary) over one psycopg connection, every chunk read and discarded: the extraction ceiling, "
            "with nothing parsed")
VIEW_NOTE = ("the same rows through the pipeline_store_rows view the sweep reads (no join, no casts: the IP, user "
             "agent and metadata without them computed from metadata), binary COPY read and discarded: what "
             "extraction alone costs the sweep")
SPLIT_NOTE = ("one extra sweep (not in the medians) with perf_counter timers wrapped around the steps; the parts "
              "sum to the sweep's seconds: extraction_wait = inside next() of EventReader.stream (waiting for the "
              "ADBC read-ahead thread); validation = SchemaValidator.validate; enrichment = the rest of "
              "EventTransformer.transform (geo, device, warehouse_table); lake_batches = to_lake; plumbing = the rest "
              "of producing a table. The lake produces its tables on a thread of its own while the writer encodes "
              "Parquet, so lake_write = EventLake._write minus the producer's busy time: the encoding holding up the "
              "producer, plus its tail after the last batch (last files, the commit); pipeline_seconds."
              "writer_waits_for_batches is how long the writer waited for the producer (the producer was the "
              "bottleneck for that long); lake_log = the rest of EventLake.append (reading the commit back) + "
              "committed_version. Previous: "
              "parquet_write = DaySplitter.write/close (on the sweep's thread), publish = LocalEventFiles."
              "publish_sweep. bookkeeping = the remainder of Ingestor.sweep() (advisory lock, claim, dead letter, "
              "finish, watermark, sync status)")


def log(message: str) -> None:
    """Progress and information: stderr only (stdout carries the JSON figures)."""
    print(f"[bench_ingest] {message}", file=sys.stderr, flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- state -----------------------------------------------------------------------------------------------


def reset_ingestion(url: str, roots: Iterable[Path], *, events_too: bool = False) -> None:
    """Forget every sweep of every consumer (bookkeeping, watermarks, lake and warehouse directories), optionally
    the events, then CHECKPOINT."""
    tables = (("platform_event_store",) if events_too else ()) + INGEST_TABLES
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in tables)))
        conn.execute("DELETE FROM pipeline_watermarks")
        conn.execute("CHECKPOINT")
    for root in roots:
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


def event_lake(root: Path):  # -> EventLake
    from workdev_pipeline.lake import EventLake, LakeLocation

    return EventLake(LakeLocation.from_env(str(root)))


def lake_rows(root: Path) -> int:
    """What DuckDB sees in the lake's latest snapshot (the 'queryable' check)."""
    snapshot = event_lake(root).snapshot()
    return 0 if snapshot.table is None else snapshot.query("SELECT count(*) FROM platform_events")[0][0]


def previous_rows(root: Path) -> int:
    """What DuckDB sees in the previous code's day directories (``<root>/platform_events/event_date=*/``)."""
    import duckdb

    if not any(root.glob("platform_events/event_date=*/*.parquet")):
        return 0
    query = "SELECT count(*) FROM read_parquet(?, hive_partitioning = true)"
    return duckdb.execute(query, [str(root / "platform_events" / "event_date=*" / "*.parquet")]).fetchone()[0]


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


def backend_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a PostgreSQL backend has used so far (``/proc``: a server on this machine;
    None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuCost:
    """CPU seconds one read of the rows cost: the PostgreSQL backend's (None: not measurable) and the client's."""

    backend: float | None
    client: float


def timed_copy(url: str, statement: sql.Composable, expected: int, costs: list[CpuCost] | None = None) -> Run:
    """The raw COPY of ``statement`` timed; its CPU (backend and this process) appended to ``costs``."""
    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1")
        backend_before = backend_cpu_seconds(conn.info.backend_pid)
        client_before = time.process_time()
        started = time.perf_counter()
        rows = raw_copy(conn, statement)
        seconds = time.perf_counter() - started
        client = time.process_time() - client_before
        backend_after = backend_cpu_seconds(conn.info.backend_pid)
    if rows != expected:
        raise RuntimeError(f"raw COPY read {rows} rows, expected {expected}")
    if costs is not None:
        backend = None if backend_before is None or backend_after is None else backend_after - backend_before
        costs.append(CpuCost(backend, client))
    return Run(rows, seconds)


# -- the engines in processes of their own ---------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """Which code runs a sweep/rebuild child: this tree (the lake) or the previous one (a worktree of ``rev``,
    first on PYTHONPATH, its own ``bench/bench_ingest.py --child``)."""

    name: str  # "lake" | "previous"
    script: Path
    cwd: Path
    root: Path  # its lake / warehouse directory
    env: dict[str, str] | None = None

    def args(self, *extra: str) -> list[str]:
        return [sys.executable, str(self.script), *extra]


@dataclass(frozen=True)
class ChildRun:
    """One sweep/rebuild process: its outcome (as JSON), its wall time, its CPU time (user + system of the whole
    process: interpreter start-up and imports included), its own peak RSS."""

    outcome: dict[str, Any]
    wall_seconds: float
    cpu_seconds: float
    split: dict[str, Any] | None = None

    @property
    def run(self) -> Run:
        return Run(self.outcome["events_loaded"], self.outcome["seconds"])

    @property
    def peak_rss_mib(self) -> float:
        return self.outcome["vm_hwm_kib"] / 1024


def run_child(url: str, engine: Engine, operation: str, *, day: date | None = None, timeout: float = 900,
              profile: bool = False) -> ChildRun:
    """``bench_ingest.py --child sweep|rebuild`` of ``engine`` in a fresh interpreter; its stdout's last line is
    one JSON outcome. ``profile``: this script's ``--child profile`` runs that child in-process with timers
    around its steps, and prints the split after the outcome."""
    child = ["--child", operation, "--database-url", url, "--warehouse", str(engine.root)]
    if day is not None:
        child += ["--day", day.isoformat()]
    args = engine.args(*child)
    if profile:
        args = [sys.executable, str(SCRIPT), "--child", "profile", "--profile-script", str(engine.script), "--",
                *child]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, cwd=engine.cwd, env=engine.env, stdout=subprocess.PIPE, text=True, timeout=timeout,
                          check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the children waited for so far: this one's the delta
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if done.returncode != 0:
        raise RuntimeError(f"{engine.name} {operation} process exited with {done.returncode}")
    lines = done.stdout.strip().splitlines()
    split = json.loads(lines.pop()) if profile else None
    outcome = json.loads(lines[-1])
    if outcome["status"] not in ("loaded", "idle"):
        raise RuntimeError(f"{engine.name} {operation} ended {outcome['status']}: {outcome.get('error')}")
    return ChildRun(outcome, wall, cpu, split)


def describe(name: str, operation: str, child: ChildRun) -> str:
    return (f"{name} {operation} {child.run.rate:,.0f}/s ({child.run.seconds:.1f} s; process "
            f"{child.wall_seconds:.1f} s, CPU {child.cpu_seconds:.1f} s, peak RSS {child.peak_rss_mib:,.0f} MiB; "
            f"{child.outcome['events_failed']} dead-lettered)")


def child_main(args: argparse.Namespace) -> int:
    """One operation of the engine; prints its outcome as one JSON line."""
    if args.child == "produce":
        return produce(args)
    if args.child == "profile":
        return profile_main(args)
    from workdev_pipeline.ingest.ingestor import Ingestor

    ingestor = Ingestor(args.database_url, event_lake(Path(args.warehouse)), consumer=CONSUMER)
    backends = extraction_backends()
    sweep = args.child == "sweep"
    cpu_before = time.process_time()
    outcome = ingestor.sweep(run_id="bench") if sweep else ingestor.rebuild([args.day], run_id="bench")
    cpu = time.process_time() - cpu_before
    print(json.dumps({
        "status": outcome.status, "kind": outcome.kind, "events_loaded": outcome.events_loaded,
        "events_failed": outcome.events_failed, "bytes_written": outcome.bytes_written, "seconds": outcome.seconds,
        "days": {d.isoformat(): n for d, n in outcome.days.items()}, "sweep_id": outcome.sweep_id,
        "lake_version": outcome.lake_version, "error": outcome.error, "vm_hwm_kib": vm_hwm_kib(),
        "cpu_seconds": cpu, "extraction_backend_cpu_seconds": None if None in backends else sum(backends)}),
        flush=True)
    return 0


def extraction_backends() -> list[float | None]:
    """The CPU seconds of each extraction connection's PostgreSQL backend, read as the connection closes (its
    whole life: the statements the sweep streams); filled in as the operation runs. Instruments this tree's
    ``EventReader`` only (the previous code's children report none)."""
    backends: list[float | None] = []
    try:
        from workdev_pipeline.ingest.extract import EventReader
    except ImportError:
        return [None]
    close = EventReader.close

    def closing(reader: Any) -> None:
        try:
            with reader._conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                backends.append(backend_cpu_seconds(cur.fetchone()[0]))
        except Exception:  # a connection a fault broke: its backend is gone, its CPU unknown
            backends.append(None)
        close(reader)

    EventReader.close = closing
    return backends


# -- where a sweep's time goes ---------------------------------------------------------------------------


class StepClock:
    """Wall seconds spent inside wrapped functions and generators, by step (wrappers nest: the caller subtracts)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, owner: Any, name: str, step: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[step] += time.perf_counter() - started
                self.calls[step] += 1

        setattr(owner, name, timed)

    def wrap_generator(self, owner: Any, name: str, step: str) -> None:
        original = getattr(owner, name)
        setattr(owner, name, lambda *args, **kwargs: self.iterate(original(*args, **kwargs), step))

    def iterate(self, items: Iterable[Any], step: str) -> Iterator[Any]:
        """``items``, the time spent producing each (inside ``next``) counted to ``step``."""
        iterator = iter(items)
        try:
            while True:
                started = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    self.seconds[step] += time.perf_counter() - started
                self.calls[step] += 1
                yield item
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()


def instrument(clock: StepClock) -> str:
    """Wrap the steps of whichever engine is importable (the lake, or the previous day-directory store)."""
    import workdev_pipeline
    from workdev_pipeline.enrichment import SchemaValidator
    from workdev_pipeline.ingest import extract, ingestor, transform

    clock.wrap(ingestor.Ingestor, "sweep", "total")
    clock.wrap_generator(extract.EventReader, "stream", "extraction_wait")
    clock.wrap(SchemaValidator, "validate", "validation")
    clock.wrap(transform.EventTransformer, "transform", "transform")
    # the package's own directory decides (the editable install's finder would find this tree's lake package
    # for the previous tree too)
    if (Path(workdev_pipeline.__file__).parent / "lake" / "events.py").is_file():
        from deltalake import DeltaTable

        from workdev_pipeline.lake import day_files, events

        ahead = events.read_ahead  # the tables are produced on a thread of their own, ahead of the writer
        events.read_ahead = lambda items, *args, **kwargs: clock.iterate(
            ahead(clock.iterate(items, "producer"), *args, **kwargs), "writer_waits_for_batches")
        clock.wrap(events.EventLake, "_write", "lake_write")
        clock.wrap(day_files.DayFileWriter, "add", "parquet_write")
        clock.wrap(day_files.DayFileWriter, "finish", "parquet_write")
        clock.wrap(DeltaTable, "create_write_transaction", "delta_commit")
        clock.wrap(events, "to_lake", "to_lake")
        clock.wrap(events.EventLake, "append", "append")
        clock.wrap(events.EventLake, "committed_version", "committed_version")
        return "lake"
    from workdev_pipeline.ingest import local_store

    clock.wrap(local_store.DaySplitter, "write", "parquet_write")
    clock.wrap(local_store.DaySplitter, "close", "parquet_close")
    clock.wrap(local_store.LocalEventFiles, "publish_sweep", "publish")
    return "previous"


def time_split(clock: StepClock, kind: str) -> dict[str, float]:
    """Exclusive seconds per step, summing to the sweep's total."""
    s = clock.seconds
    split = {"extraction_wait": s["extraction_wait"], "validation": s["validation"],
             "enrichment": s["transform"] - s["validation"]}
    if kind == "lake":
        # the producer (extraction wait, validation, enrichment, lake batches) runs on a thread of its own while
        # the writer encodes Parquet: lake_write is the part of the write the producer's time does not cover (the
        # encoding holding up the producer, and its tail after the last batch: the last files and the commit)
        producer = s["producer"]
        split["lake_batches"] = s["to_lake"]
        split["plumbing"] = producer - s["extraction_wait"] - s["transform"] - s["to_lake"]
        split["lake_write"] = s["lake_write"] - producer
        split["lake_log"] = s["append"] - s["lake_write"] + s["committed_version"]
        inside = s["append"] + s["committed_version"]
    else:
        split["parquet_write"] = s["parquet_write"] + s["parquet_close"]
        split["publish"] = s["publish"]
        inside = s["extraction_wait"] + s["transform"] + split["parquet_write"] + s["publish"]
        split["plumbing"] = 0.0
    split["bookkeeping"] = s["total"] - inside
    return split


def profile_main(args: argparse.Namespace) -> int:
    """Run ``--profile-script``'s own ``--child`` (the lake's, or the previous tree's) in this process with
    :class:`StepClock` timers around its steps; its outcome line, then one JSON line of the split."""
    clock = StepClock()
    kind = instrument(clock)
    sys.argv = [args.profile_script, *args.child_args]
    try:
        runpy.run_path(args.profile_script, run_name="__main__")
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise
    split = time_split(clock, kind)
    total = clock.seconds["total"]
    pipeline = {k: round(clock.seconds[k], 3) for k in ("lake_write", "producer", "writer_waits_for_batches",
                                                        "parquet_write", "delta_commit")
                if k in clock.seconds}
    print(json.dumps({"engine": kind, "total_seconds": round(total, 3),
                      "seconds": {k: round(v, 3) for k, v in split.items()},
                      "percent": {k: round(100 * v / total, 1) for k, v in split.items()},
                      "pipeline_seconds": pipeline, "calls": dict(clock.calls)}), flush=True)
    return 0


# -- phase 1: sweep of a backlog vs the raw COPY ceiling and the previous code ---------------------------


def check_sweep(engine: Engine, child: ChildRun, count: int, *, verify_rows: bool) -> None:
    loaded, failed = child.outcome["events_loaded"], child.outcome["events_failed"]
    if loaded + failed != count:
        raise RuntimeError(f"the {engine.name} sweep loaded {loaded} and failed {failed} of {count} events")
    if verify_rows:
        seen = lake_rows(engine.root) if engine.name == "lake" else previous_rows(engine.root)
        if seen != loaded:
            raise RuntimeError(f"DuckDB sees {seen} rows of the {engine.name} sweep, it reports {loaded}")


def measure_sweep(url: str, engines: Sequence[Engine], peers: Sequence[Peer], work: Path, events: int, rounds: int,
                  profile: bool) -> list[dict[str, Any]]:
    roots = [e.root for e in engines]
    reset_ingestion(url, roots, events_too=True)
    log(f"sweep: loading a {events:,}-event demo backlog ({USERS} users, {BACKLOG_DAYS:g} days, seed {SEED})")
    load_events(url, events, days=BACKLOG_DAYS)
    with psycopg.connect(url) as conn:
        low, high, count = conn.execute("SELECT min(tx_id), max(tx_id), count(*) FROM platform_event_store").fetchone()
    bounds = sql.SQL("WHERE tx_id >= {} AND tx_id <= {}").format(sql.Literal(low), sql.Literal(high))
    store_rows = sql.SQL("SELECT {} FROM platform_event_store {}").format(WRITTEN_COLUMNS, bounds)
    view_rows = sql.SQL("SELECT * FROM pipeline_store_rows {}").format(bounds)
    runs: dict[str, list[Run]] = {"raw": [], "view": [], **{e.name: [] for e in engines}}
    children: dict[str, list[ChildRun]] = {e.name: [] for e in engines}
    peer_runs: dict[str, list[PeerRun]] = {p.name: [] for p in peers}
    raw_costs: list[CpuCost] = []
    for r in range(1, rounds + 1):
        reset_ingestion(url, roots)
        runs["raw"].append(timed_copy(url, store_rows, count, raw_costs))
        runs["view"].append(timed_copy(url, view_rows, count))
        contestants = [*engines, *peers]
        order = contestants if r % 2 else list(reversed(contestants))  # alternate who goes first
        for contestant in order:
            reset_ingestion(url, roots)
            if isinstance(contestant, Peer):
                peer_runs[contestant.name].append(peer_run(url, contestant, work, count))
                continue
            child = run_child(url, contestant, "sweep")
            check_sweep(contestant, child, count, verify_rows=r == 1)
            children[contestant.name].append(child)
            runs[contestant.name].append(child.run)
        log(f"round {r}/{rounds} (load {load_average()}): raw COPY {runs['raw'][-1].rate:,.0f}/s, via view "
            f"{runs['view'][-1].rate:,.0f}/s, " + ", ".join(
                describe(c.name, "sweep", children[c.name][-1]) if isinstance(c, Engine)
                else describe_peer(c.name, peer_runs[c.name][-1]) for c in order))
    common = {"backlog": f"demo --users {USERS} --events {events} --days {BACKLOG_DAYS:g} --seed {SEED}"}
    raw = median_figure("raw_copy_binary_rows_per_s", runs["raw"], **common, note=RAW_NOTE)
    view = median_figure("raw_copy_view_binary_rows_per_s", runs["view"], **common, note=VIEW_NOTE)
    figures: list[dict[str, Any]] = []
    sweeps: dict[str, dict[str, Any]] = {}
    for engine in engines:
        prefix = "" if engine.name == "lake" else "previous_"
        mine = children[engine.name]
        first = mine[0].outcome
        context: dict[str, Any] = {
            "events_failed": first["events_failed"], "days": len(first["days"]),
            "bytes_written": first["bytes_written"], "process_seconds": [round(c.wall_seconds, 2) for c in mine],
            "process_cpu_seconds": [round(c.cpu_seconds, 2) for c in mine],
            "ratio_to_raw_copy": round(statistics.median(runs[engine.name][i].rate / runs["raw"][i].rate
                                                         for i in range(rounds)), 3)}
        if engine.name == "lake":
            context["path"] = ("Ingestor.sweep() into the lake (one Delta append) in a fresh process (timed inside "
                               "it: excludes interpreter start-up and imports, includes everything the sweep does)")
        else:
            context["path"] = (f"the previous code ({engine.cwd}, consumer {PREVIOUS_CONSUMER}): its own "
                               "bench_ingest.py --child sweep, Ingestor.sweep() into day-directory Parquet files")
        sweep = median_figure(f"{prefix}sweep_events_per_s", runs[engine.name], **common, bar=SWEEP_BAR, **context)
        sweep["meets_bar"] = sweep["value"] >= SWEEP_BAR
        peak = max(c.peak_rss_mib for c in mine)
        rss = {"figure": f"{prefix}sweep_peak_rss_mib", "value": round(peak, 1), "unit": "MiB",
               "events": sweep["events"], "seconds": sweep["seconds"], "runs_mib": [round(c.peak_rss_mib, 1)
                                                                                   for c in mine],
               "statistic": f"max of {rounds} rounds (VmHWM of the sweep process)", "bar": RSS_BAR_MIB,
               "meets_bar": peak <= RSS_BAR_MIB}
        figures += [sweep, rss]
        sweeps[engine.name] = sweep
    lake = sweeps["lake"]
    ratio = lake["value"] / raw["value"]
    figures.insert(1, {"figure": "sweep_ratio_to_raw_copy", "value": round(ratio, 3), "unit": "ratio",
                       "events": lake["events"], "seconds": lake["seconds"], "numerator": lake["figure"],
                       "ratio_to": raw["figure"], "goal": RATIO_GOAL, "meets_goal": ratio >= RATIO_GOAL,
                       "bar": RATIO_BAR, "meets_bar": ratio >= RATIO_BAR,
                       "per_round": [round(a.rate / b.rate, 3)
                                     for a, b in zip(runs["lake"], runs["raw"], strict=True)]})
    figures += peer_figures("sweep", lake, children["lake"], runs["raw"], peer_runs, common,
                            reads="SELECT <the written columns> FROM platform_event_store (every row: the backlog "
                                  "the sweep reads; the store holds nothing else)")
    cpu = cpu_figure(children["lake"], raw_costs, lake)
    if cpu is not None:
        figures.insert(2, cpu)
    if "previous" in sweeps:
        figures.append(ratio_to_previous("sweep_ratio_to_previous", lake, sweeps["previous"], runs["lake"],
                                         runs["previous"], children))
    figures += [raw, view]
    if profile:
        for engine in engines:
            reset_ingestion(url, roots)
            child = run_child(url, engine, "sweep", profile=True)
            check_sweep(engine, child, count, verify_rows=False)
            prefix = "" if engine.name == "lake" else "previous_"
            assert child.split is not None
            figures.append({"figure": f"{prefix}sweep_time_split", "value": child.split["total_seconds"],
                            "unit": "s", "events": child.outcome["events_loaded"],
                            "events_per_s": round(child.run.rate, 1), "percent": child.split["percent"],
                            "seconds_by_step": child.split["seconds"], "calls": child.split["calls"],
                            "pipeline_seconds": child.split["pipeline_seconds"],
                            "note": SPLIT_NOTE})
            log(f"{engine.name} sweep time split ({child.run.rate:,.0f}/s): {child.split['percent']}")
    return figures


def peer_run(url: str, peer: Peer, work: Path, expected: int, *, since: datetime | None = None,
             until: datetime | None = None) -> PeerRun:
    """One run of ``peer`` (Parquet under ``work``), checked to have written ``expected`` rows."""
    done = run_peer(peer, url, work / f"peer-{peer.name}", since=since and since.isoformat(),
                    until=until and until.isoformat())
    if done.rows != expected:
        raise RuntimeError(f"peer {peer.name} wrote {done.rows} rows, expected {expected}")
    return done


def describe_peer(name: str, run: PeerRun) -> str:
    return (f"peer {name} {run.rate:,.0f}/s ({run.seconds:.1f} s; process {run.wall_seconds:.1f} s, CPU "
            f"{run.cpu_seconds:.1f} s, peak RSS {run.peak_rss_mib:,.0f} MiB)")


def peer_figures(operation: str, lake: dict[str, Any], lake_children: Sequence[ChildRun], raw_runs: Sequence[Run],
                 peer_runs: dict[str, list[PeerRun]], common: dict[str, Any], reads: str) -> list[dict[str, Any]]:
    """Per peer: its median rate (``peer_<name>_events_per_s``, ``peer_<name>_day_events_per_s`` for the
    rebuild) and the lake's over it (``<operation>_ratio_to_<name>``, goal: above 1); ``cpu_ratio``: the peer's
    median process CPU over the lake's (above 1, the lake costs less; PostgreSQL's backends not counted)."""
    lake_runs = [c.run for c in lake_children]
    lake_cpu = statistics.median(c.cpu_seconds for c in lake_children)
    figures: list[dict[str, Any]] = []
    kind = "day_" if operation == "rebuild" else ""
    for name, done in peer_runs.items():
        rates = [Run(d.rows, d.seconds) for d in done]
        peak = max(d.peak_rss_mib for d in done)
        peer = median_figure(
            f"peer_{name}_{kind}events_per_s", rates, **common, path=WHAT[name], reads=reads,
            validates_or_enriches=False, versions=done[0].versions,
            process_seconds=[round(d.wall_seconds, 2) for d in done],
            process_cpu_seconds=[round(d.cpu_seconds, 2) for d in done], parquet_bytes=done[0].parquet_bytes,
            peak_rss_mib=round(peak, 1), runs_peak_rss_mib=[round(d.peak_rss_mib, 1) for d in done],
            ratio_to_raw_copy=round(statistics.median(a.rate / b.rate for a, b in zip(rates, raw_runs,
                                                                                        strict=True)), 3))
        ratio = lake["value"] / peer["value"]
        peer_cpu = statistics.median(d.cpu_seconds for d in done)
        figures += [peer, {"figure": f"{operation}_ratio_to_{name}", "value": round(ratio, 3), "unit": "ratio",
                           "events": lake["events"], "numerator": lake["figure"], "ratio_to": peer["figure"],
                           "statistic": "ratio of the medians",
                           "per_round": [round(a.rate / b.rate, 3) for a, b in zip(lake_runs, rates, strict=True)],
                           "cpu_ratio": round(peer_cpu / lake_cpu, 3),
                           "median_process_cpu_seconds": {"lake": round(lake_cpu, 2), name: round(peer_cpu, 2)},
                           "goal": PEER_RATIO_GOAL, "meets_goal": ratio > PEER_RATIO_GOAL}]
    return figures


def scale_figure(first: list[dict[str, Any]], larger: list[dict[str, Any]]) -> dict[str, Any]:
    """The lake's sweep rate over a larger backlog over its rate over the first backlog, both from this run; the
    raw COPY's ratio beside it (how much the machine, not the sweep, changed between the two), and the larger
    sweep's peak RSS."""
    def pick(figures: list[dict[str, Any]], name: str) -> dict[str, Any]:
        return next(f for f in figures if f["figure"] == name)

    small, big = pick(first, "sweep_events_per_s"), pick(larger, "sweep_events_per_s")
    raw = pick(larger, "raw_copy_binary_rows_per_s")["value"] / pick(first, "raw_copy_binary_rows_per_s")["value"]
    rss = pick(larger, "sweep_peak_rss_mib")
    ratio = big["value"] / small["value"]
    return {"figure": "sweep_scale_ratio", "value": round(ratio, 3), "unit": "ratio", "events": big["events"],
            "ratio_to_events": small["events"], "events_per_s": big["value"], "ratio_to_events_per_s": small["value"],
            "raw_copy_scale_ratio": round(raw, 3),
            "ratio_to_raw_copy": [pick(f, "sweep_ratio_to_raw_copy")["value"] for f in (first, larger)],
            "peak_rss_mib": rss["value"], "rss_bar": RSS_BAR_MIB, "meets_rss_bar": rss["meets_bar"],
            "goal": SCALE_GOAL, "meets_goal": ratio >= SCALE_GOAL, "load_average": load_average(),
            "note": "the backlogs swept one after the other in this run (each its own rounds), not interleaved"}


def cpu_figure(sweeps: Sequence[ChildRun], raw: Sequence[CpuCost], lake: dict[str, Any]) -> dict[str, Any] | None:
    """CPU seconds per run of the raw COPY (backend + client) over the sweep's (its extraction backend + its own
    process, start-up excluded), medians: on a machine whose cores are all busy, wall time goes as CPU time, so this
    is the ratio to the wire a loaded machine gives; ``two_core_ceiling``, the most an idle 2-core machine could
    give: a sweep keeping both cores busy all along (its CPU / 2, at least its backend's) against a COPY whose
    backend and client overlap (the larger of the two). None when the server's backends cannot be read (a server
    on another machine)."""
    backends = [c.outcome.get("extraction_backend_cpu_seconds") for c in sweeps]
    if not raw or any(c.backend is None for c in raw) or None in backends:
        return None
    sweep_backend = statistics.median(backends)
    sweep_process = statistics.median(c.outcome["cpu_seconds"] for c in sweeps)
    raw_backend = statistics.median(c.backend for c in raw)
    raw_client = statistics.median(c.client for c in raw)
    sweep_total, raw_total = sweep_backend + sweep_process, raw_backend + raw_client
    ceiling = max(raw_backend, raw_client) / max(sweep_total / 2, sweep_backend)
    return {"figure": "sweep_cpu_ratio_to_raw_copy", "value": round(raw_total / sweep_total, 3), "unit": "ratio",
            "events": lake["events"], "seconds": round(sweep_total, 2),
            "sweep_cpu_seconds": {"extraction_backend": round(sweep_backend, 2), "process": round(sweep_process, 2)},
            "raw_copy_cpu_seconds": {"backend": round(raw_backend, 2), "client": round(raw_client, 2)},
            "two_core_ceiling": round(ceiling, 3), "statistic": f"medians of {len(sweeps)} interleaved runs",
            "note": "raw COPY CPU (backend + client) / sweep CPU (extraction backend + sweep process, imports "
                    "excluded); backends' CPU from /proc/<pid>/stat"}


# -- phase 5: peak memory by the backlog's shape -----------------------------------------------------------


def measure_shapes(url: str, engines: Sequence[Engine],
                   shapes: Sequence[tuple[int, float]]) -> list[dict[str, Any]]:
    """One sweep per engine of each backlog shape (events, days), each in a fresh process: its peak RSS."""
    figures: list[dict[str, Any]] = []
    roots = [e.root for e in engines]
    for events, days in shapes:
        reset_ingestion(url, roots, events_too=True)
        log(f"shapes: loading {events:,} demo events over {days:g} days")
        load_events(url, events, days=days)
        for engine in engines:
            reset_ingestion(url, roots)
            child = run_child(url, engine, "sweep", timeout=7200)
            check_sweep(engine, child, events, verify_rows=engine.name == "lake")
            files = event_lake(engine.root).snapshot().files().num_rows
            budget = (engine.env or {}).get("WORKDEV_LAKE_WRITE_BUDGET_MIB")
            log(f"shapes: {describe(engine.name, 'sweep', child)}, {len(child.outcome['days'])} days, {files} files"
                + (f", budget {budget} MiB" if budget else ""))
            peak = child.peak_rss_mib
            figures.append({
                "figure": f"{'' if engine.name == 'lake' else 'before_'}shape_sweep_peak_rss_mib",
                "value": round(peak, 1), "unit": "MiB", "events": events, "days": len(child.outcome["days"]),
                "seconds": round(child.run.seconds, 2), "events_per_s": round(child.run.rate, 1),
                "bytes_written": child.outcome["bytes_written"], "data_files": files, "load_average": load_average(),
                **({"write_budget_mib": float(budget)} if budget else {}),
                "backlog": f"demo --users {USERS} --events {events} --days {days:g} --seed {SEED}",
                "code": "this tree" if engine.name == "lake" else f"{engine.cwd} (before the write budget)",
                "bar": RSS_BAR_MIB, "meets_bar": peak <= RSS_BAR_MIB})
    return figures


def ratio_to_previous(name: str, lake: dict[str, Any], previous: dict[str, Any], lake_runs: Sequence[Run],
                      previous_runs: Sequence[Run], children: dict[str, list[ChildRun]]) -> dict[str, Any]:
    """The lake's median rate over the previous code's; ``cpu_ratio``: the previous processes' median CPU seconds
    over the lake's (same orientation: above 1, the lake costs less), steadier than wall time on a shared machine."""
    ratio = lake["value"] / previous["value"]
    cpu = {k: statistics.median(c.cpu_seconds for c in children[k]) for k in ("lake", "previous")}
    return {"figure": name, "value": round(ratio, 3), "unit": "ratio", "events": lake["events"],
            "numerator": lake["figure"], "ratio_to": previous["figure"], "statistic": "ratio of the medians",
            "per_round": [round(a.rate / b.rate, 3) for a, b in zip(lake_runs, previous_runs, strict=True)],
            "cpu_ratio": round(cpu["previous"] / cpu["lake"], 3),
            "median_process_cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
            "bar": PREVIOUS_RATIO_BAR, "meets_bar": ratio >= PREVIOUS_RATIO_BAR}


# -- phase 2: rebuilding one day -------------------------------------------------------------------------


def measure_rebuild(url: str, engines: Sequence[Engine], peers: Sequence[Peer], work: Path, events: int,
                    rounds: int, day: date) -> list[dict[str, Any]]:
    reset_ingestion(url, [e.root for e in engines], events_too=True)
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
    firsts: dict[str, ChildRun] = {}
    for engine in engines:  # each consumer's own first sweep: a rebuild reads below its watermark
        firsts[engine.name] = first = run_child(url, engine, "sweep")
        log(f"rebuild: {engine.name} first sweep loaded {first.outcome['events_loaded']:,} ({first.run.rate:,.0f}/s, "
            f"peak RSS {first.peak_rss_mib:,.0f} MiB)")
    since, until = (datetime.combine(d, dtime.min, tzinfo=UTC) for d in (day, day + timedelta(days=1)))
    day_rows = sql.SQL("SELECT {} FROM platform_event_store WHERE \"timestamp\" >= {} AND \"timestamp\" < {}").format(
        WRITTEN_COLUMNS, sql.Literal(since), sql.Literal(until))
    runs: dict[str, list[Run]] = {"raw": [], **{e.name: [] for e in engines}}
    children: dict[str, list[ChildRun]] = {e.name: [] for e in engines}
    peer_runs: dict[str, list[PeerRun]] = {p.name: [] for p in peers}
    for r in range(1, rounds + 1):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        runs["raw"].append(timed_copy(url, day_rows, events))
        contestants = [*engines, *peers]
        order = contestants if r % 2 else list(reversed(contestants))
        for engine in order:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CHECKPOINT")
            if isinstance(engine, Peer):
                peer_runs[engine.name].append(peer_run(url, engine, work, events, since=since, until=until))
                continue
            child = run_child(url, engine, "rebuild", day=day)
            expected = firsts[engine.name].outcome["events_loaded"]
            if child.outcome["days"] != {day.isoformat(): expected}:
                raise RuntimeError(f"the {engine.name} rebuild wrote {child.outcome['days']}, expected {expected} "
                                   f"rows on {day}")
            children[engine.name].append(child)
            runs[engine.name].append(child.run)
        log(f"round {r}/{rounds} (load {load_average()}): raw COPY of the day {runs['raw'][-1].rate:,.0f}/s, "
            + ", ".join(describe(e.name, "rebuild", children[e.name][-1]) if isinstance(e, Engine)
                        else describe_peer(e.name, peer_runs[e.name][-1]) for e in order))
    for engine in engines:
        seen = lake_rows(engine.root) if engine.name == "lake" else previous_rows(engine.root)
        if seen != firsts[engine.name].outcome["events_loaded"]:
            raise RuntimeError(f"DuckDB sees {seen} rows after the {engine.name} rebuilds, expected "
                               f"{firsts[engine.name].outcome['events_loaded']}")
    common = {"day": day.isoformat(), "load": f"{events} demo events within that UTC day, seed {SEED}"}
    figures: list[dict[str, Any]] = []
    rebuilds: dict[str, dict[str, Any]] = {}
    for engine in engines:
        prefix = "" if engine.name == "lake" else "previous_"
        mine = children[engine.name]
        path = ("Ingestor.rebuild([day]) in a fresh process (timed inside it), after one sweep: one predicate "
                "overwrite of the day in the lake" if engine.name == "lake" else
                f"the previous code ({engine.cwd}): its own bench_ingest.py --child rebuild (day directory swap)")
        rebuild = median_figure(f"{prefix}rebuild_day_events_per_s", runs[engine.name], **common, bar=REBUILD_BAR,
                                process_seconds=[round(c.wall_seconds, 2) for c in mine],
                                process_cpu_seconds=[round(c.cpu_seconds, 2) for c in mine],
                                ratio_to_raw_copy_of_the_day=round(
                                    statistics.median(runs[engine.name][i].rate / runs["raw"][i].rate
                                                      for i in range(rounds)), 3),
                                first_sweep_events_per_s=round(firsts[engine.name].run.rate, 1), path=path)
        rebuild["meets_bar"] = rebuild["value"] >= REBUILD_BAR
        peak = max(c.peak_rss_mib for c in mine)
        rss = {"figure": f"{prefix}rebuild_peak_rss_mib", "value": round(peak, 1), "unit": "MiB",
               "events": rebuild["events"], "seconds": rebuild["seconds"],
               "runs_mib": [round(c.peak_rss_mib, 1) for c in mine],
               "statistic": f"max of {rounds} rounds (VmHWM of the rebuild process)", "bar": RSS_BAR_MIB,
               "meets_bar": peak <= RSS_BAR_MIB}
        figures += [rebuild, rss]
        rebuilds[engine.name] = rebuild
    figures += peer_figures("rebuild", rebuilds["lake"], children["lake"], runs["raw"], peer_runs, common,
                            reads="SELECT <the written columns> FROM platform_event_store WHERE \"timestamp\" >= "
                                  "the day AND < the next (the day's rows: those the rebuild reads)")
    if "previous" in rebuilds:
        figures.append(ratio_to_previous("rebuild_ratio_to_previous", rebuilds["lake"], rebuilds["previous"],
                                         runs["lake"], runs["previous"], children))
    figures.append(median_figure("raw_copy_day_binary_rows_per_s", runs["raw"], **common, note=RAW_NOTE))
    return figures


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


def pending_events(url: str) -> int:
    from workdev_pipeline.sql_files import query

    with psycopg.connect(url) as conn:
        return conn.execute(query("ingest/pending_backlog"), {"consumer": CONSUMER}).fetchone()[0]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    return sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)]


@dataclass
class DevSession:
    """``workdev-pipeline dev`` (webserver + daemon) on the bench's database, its own instance and lake."""

    process: subprocess.Popen
    port: int
    home: Path
    lake_root: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 3_000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM to its process group (webserver, daemon, code server, runs), SIGKILL after 60 s."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
            except ProcessLookupError:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def start_dev(url: str, work: Path, interval: int) -> DevSession:
    """``workdev-pipeline dev`` with ``WORKDEV_INGEST_INTERVAL_SECONDS=interval``, a fresh instance and lake under
    ``work``; returns once the code location is loaded and every schedule and sensor but the ingest sensor is
    stopped (their runs would only compete for the cores with the sweeps measured)."""
    from tests.dagster_dev_server import free_port, stop_instigators, wait_for_code_location
    from tests.waiting import wait_until

    port = free_port()
    home, lake_root, log_path = work / "dagster", work / "lake", work / "dev.log"
    env = {**os.environ, "WORKDEV_HOME": str(work / "home"), "DAGSTER_HOME": str(home),
           "WORKDEV_LAKE_URI": str(lake_root), "WORKDEV_INGEST_INTERVAL_SECONDS": str(interval),
           "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
    cli = Path(sys.executable).with_name("workdev-pipeline")
    with log_path.open("wb") as out:  # a file, never a pipe nobody reads
        process = subprocess.Popen(["env", "--default-signal=INT,TERM", str(cli), "dev", "--database-url", url,
                                    "--port", str(port)], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    session = DevSession(process, port, home, lake_root, log_path)
    try:
        wait_until(lambda: urllib.request.urlopen(f"{session.url}/server_info", timeout=5).status == 200,
                   "workdev-pipeline dev's webserver to answer", timeout=600, ignore=(OSError,),
                   context=session.log_tail,
                   gone=lambda: None if process.poll() is None else f"dev exited ({process.returncode})")
        wait_for_code_location(session.url, 600, context=session.log_tail)
        log(f"latency: dev up on port {port}; stopped {stop_instigators(session.url, {'ingest_sensor'})}")
    except BaseException:
        session.stop()
        raise
    return session


def ingest_runs_in_flight(home: Path) -> int:
    """Sweep runs of the instance at ``home`` not finished yet (queued, starting, running)."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    unfinished = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                  DagsterRunStatus.STARTED]
    with DagsterInstance.from_config(str(home)) as instance:
        return len(instance.get_run_records(RunsFilter(job_name="ingest_events", statuses=unfinished)))


def dagster_sweeps(home: Path) -> list[dict[str, Any]]:
    """Each sweep run of the instance at ``home`` that read events: when the sensor's request created it, when its
    first event was read (``first_event_read_at``) and how long after its process started
    (``seconds_before_first_event``), when it ended, and its sweep and lake version."""
    from dagster import DagsterInstance, RunsFilter

    from workdev_pipeline.assets.keys import ENRICHED_EVENTS

    sweeps = []
    with DagsterInstance.from_config(str(home)) as instance:
        runs = {r.dagster_run.run_id: r for r in instance.get_run_records(RunsFilter(job_name="ingest_events"))}
        for record in instance.fetch_materializations(ENRICHED_EVENTS, limit=10_000).records:
            metadata = record.asset_materialization.metadata
            run = runs.get(record.run_id)
            if run is None or "first_event_read_at" not in metadata:
                continue
            read_at, requested = metadata["first_event_read_at"].value, run.create_timestamp.timestamp()
            fixed = metadata["seconds_before_first_event"].value
            process_start = read_at - fixed
            sweeps.append({"sweep_id": metadata["sweep_id"].value, "lake_version": metadata["lake_version"].value,
                           "events": metadata["rows_loaded"].value, "sweep_s": metadata["seconds"].value,
                           "request_to_first_event_s": read_at - requested,
                           # the run queue and the launch, until the run worker's process exists
                           "queued_and_launched_s": process_start - requested,
                           "seconds_before_first_event": fixed,
                           # the worker's interpreter, imports and code location, until the run's RUN_START
                           "worker_start_s": run.start_time - process_start,
                           # the step: resources, the ingestor's set-up, the lock, the claim, the first batch
                           "run_start_to_first_event_s": read_at - run.start_time,
                           "status": run.dagster_run.status.value})
    return sorted(sweeps, key=lambda s: s["sweep_id"])


def lake_latencies(url: str, root: Path) -> tuple[list[float], dict[int, float]]:
    """Seconds from each event's timestamp (its emission) to the Delta commit that made it queryable, for every row
    of the lake's latest snapshot as DuckDB reads it, and each version's commit time. A row's sweep is found by its
    ``ingested_at`` (a sweep stamps its rows with its claim time: ``ingestion_sweeps.started_at``)."""
    from deltalake import DeltaTable

    with psycopg.connect(url) as conn:
        versions = dict(conn.execute("SELECT started_at, lake_version FROM ingestion_sweeps WHERE consumer = %s AND "
                                     "lake_version IS NOT NULL", (CONSUMER,)).fetchall())
    committed = {entry["version"]: entry["timestamp"] / 1000
                 for entry in DeltaTable(str(root / "platform_events")).history()}
    snapshot = event_lake(root).snapshot()
    rows = snapshot.query("SELECT ingested_at, epoch_us(\"timestamp\") FROM platform_events")
    return [committed[versions[ingested]] - us / 1e6 for ingested, us in rows], committed


def measure_latency(url: str, work: Path, seconds: float, interval: int) -> list[dict[str, Any]]:
    """Emission -> queryable through ``workdev-pipeline dev`` (webserver + daemon: the ingest sensor every
    ``interval`` s, its runs queued and launched as in any deployment) under a steady 2,000 events/s."""
    work.mkdir(parents=True)
    reset_ingestion(url, [], events_too=True)
    loads = [load_average()]
    session = start_dev(url, work, interval)
    try:
        log(f"latency: {PRODUCER_RATE:,} events/s for {seconds:g} s, ingest sensor every {interval} s")
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--child", "produce", "--database-url", url, "--rate", str(PRODUCER_RATE),
             "--batch", str(PRODUCER_BATCH), "--produce-seconds", str(seconds)],
            cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        loads.append(load_average())
        drain = 3 * interval + 180
        from tests.waiting import wait_until

        wait_until(lambda: (pending_events(url), lake_rows(session.lake_root)), "the sweeps to load every event",
                   until=lambda seen: seen == (0, summary["emitted"]), timeout=drain, interval=1,
                   ignore=(OSError,), context=session.log_tail)
        elapsed = time.monotonic() - started
        wait_until(lambda: ingest_runs_in_flight(session.home), "the last sweep run to record its materialization",
                   until=lambda runs: runs == 0, timeout=drain, interval=2, context=session.log_tail)
    finally:
        session.stop()
    loads.append(load_average())
    latencies, _ = lake_latencies(url, session.lake_root)
    sweeps = dagster_sweeps(session.home)
    if len(latencies) != summary["emitted"]:
        raise RuntimeError(f"the lake holds {len(latencies)} of {summary['emitted']} events")
    latencies.sort()
    starts = sorted(s["request_to_first_event_s"] for s in sweeps)
    fixed = sorted(s["seconds_before_first_event"] for s in sweeps)
    log(f"latency ({interval} s): producer {summary['emitted']:,} events in {summary['seconds']:.1f} s "
        f"({summary['rate']:,.0f}/s, {summary['late_batches']} late batches); {len(sweeps)} sweeps; request -> first "
        f"event median {statistics.median(starts):.2f} s, max {starts[-1]:.2f} s; loads {loads}")
    common = {
        "events": len(latencies), "seconds": round(elapsed, 1), "sensor_interval_s": interval,
        "producer": f"emit_many of {PRODUCER_BATCH} every {PRODUCER_BATCH / PRODUCER_RATE:g} s, timestamp = now",
        "producer_rate": round(summary["rate"], 1), "producer_late_batches": summary["late_batches"],
        "sweeps": len(sweeps), "load_average": loads,
        "mode": ("workdev-pipeline dev (dagster dev: webserver + daemon; every schedule and sensor but the ingest "
                 "sensor stopped), its instance's run queue and launcher: latency = the Delta commit's time (the "
                 "lake's log) - the event's timestamp, for every row of the lake's latest snapshot read by DuckDB"),
    }
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    per_sweep = [{k: round(v, 2) if isinstance(v, float) else v for k, v in s.items()} for s in sweeps]
    parts = {part: round(statistics.median(s[part] for s in sweeps), 2)
             for part in ("queued_and_launched_s", "worker_start_s", "run_start_to_first_event_s")}
    return [
        {"figure": "latency_p50_seconds", "value": round(p50, 2), "unit": "s", **common,
         "goal": LATENCY_P50_GOAL, "meets_goal": p50 <= LATENCY_P50_GOAL},
        {"figure": "latency_p99_seconds", "value": round(p99, 2), "unit": "s", **common,
         "goal": LATENCY_P99_GOAL, "meets_goal": p99 <= LATENCY_P99_GOAL},
        {"figure": "latency_max_seconds", "value": round(latencies[-1], 2), "unit": "s", **common},
        {"figure": "run_request_to_first_event_seconds", "value": round(statistics.median(starts), 2), "unit": "s",
         "statistic": "median over the sweep runs", "max": round(starts[-1], 2), "sensor_interval_s": interval,
         "seconds_before_first_event_median": round(statistics.median(fixed), 2),
         "seconds_before_first_event_max": round(fixed[-1], 2), "median_parts": parts, "goal": START_GOAL,
         "meets_goal": starts[-1] <= START_GOAL, "load_average": loads, "per_sweep": per_sweep,
         "note": ("from the run's creation by the sensor's tick (the run record's create time) to the sweep's first "
                  "event read (first_event_read_at on its materialization): the run queue, the run worker's start, "
                  "imports, code location load, resources, the claim; seconds_before_first_event counts from the "
                  "worker process's start")},
    ]


# -- the previous code -----------------------------------------------------------------------------------


def add_worktree(rev: str, tree: Path) -> str:
    """A detached git worktree of ``rev`` at ``tree`` (outside the repository; main's files untouched); its commit."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"], check=True,
                            stdout=subprocess.PIPE, text=True).stdout.strip()
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return commit


def previous_engine(rev: str, tree: Path, root: Path) -> Engine:
    """A worktree of ``rev`` at ``tree`` (:func:`add_worktree`) whose ``bench/bench_ingest.py --child`` runs with
    ``tree`` first on PYTHONPATH; checked to import from there."""
    commit = add_worktree(rev, tree)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])}
    imported = subprocess.run([sys.executable, "-c", "import workdev_pipeline; print(workdev_pipeline.__file__)"],
                              cwd=tree, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    if not Path(imported).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"the previous tree's children import workdev_pipeline from {imported}, not {tree}")
    script = tree / "bench" / "bench_ingest.py"
    if not script.is_file():
        raise RuntimeError(f"{rev} has no bench/bench_ingest.py")
    log(f"previous code: {rev} ({commit[:12]}) in a worktree at {tree}")
    return Engine("previous", script, tree, root, env)


def remove_worktree(tree: Path) -> None:
    done = subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        log(f"could not remove the worktree {tree}: {done.stderr.strip()}")
        shutil.rmtree(tree, ignore_errors=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)


# -- main ------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, action="append", default=[],
                        help="events of the backlog (repeatable: one sweep phase per size, each later size's "
                             "sweep_scale_ratio to the first) and, the first, of the rebuilt day (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of sweep/rebuild (default 3)")
    parser.add_argument("--previous", default=PREVIOUS_REV,
                        help=f"git revision of the previous code to compare with (default {PREVIOUS_REV}; 'none' "
                             "skips it)")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip the extra timed sweeps that split where the time goes")
    parser.add_argument("--latency-seconds", type=float, default=180.0,
                        help="how long the 2,000 events/s producer runs (default 180; 0 skips the latency phase)")
    parser.add_argument("--sensor-interval", dest="sensor_intervals", action="append", type=int, default=[],
                        help=f"the ingest sensor's interval in the latency phase, WORKDEV_INGEST_INTERVAL_SECONDS "
                             f"(repeatable: one dev session each; default {SENSOR_INTERVAL})")
    parser.add_argument("--day", type=date.fromisoformat, default=None,
                        help="the UTC day to load and rebuild (default yesterday)")
    parser.add_argument("--shapes-before", default=BEFORE_BUDGET_REV,
                        help=f"git revision of the code before the write budget, swept beside this tree in the "
                             f"shapes phase (default {BEFORE_BUDGET_REV}; 'none' skips it)")
    parser.add_argument("--shapes-budget", dest="shapes_budgets", action="append", type=float, default=[],
                        help="in the shapes phase, sweep with this WORKDEV_LAKE_WRITE_BUDGET_MIB (repeatable; "
                             "default: the environment's)")
    parser.add_argument("--skip", action="append", choices=("sweep", "rebuild", "latency", "shapes", "peers"),
                        default=[], help="skip a phase, or the peers (repeatable)")
    parser.add_argument("--peer", dest="peers", action="append", choices=PEERS, default=[],
                        help=f"a peer run beside the sweep and the rebuild (repeatable; default: {', '.join(PEERS)})")
    parser.add_argument("--peers-venv", type=Path, default=VENV,
                        help=f"the peers' virtual environment, created and filled from PyPI if needed (default {VENV})")
    parser.add_argument("--admin-url", help="superuser URL (default: $WORKDEV_BENCH_ADMIN_URL, else local)")
    # the child processes' own options
    parser.add_argument("--child", choices=("sweep", "rebuild", "produce", "profile"), help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", help=argparse.SUPPRESS)
    parser.add_argument("--profile-script", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, default=PRODUCER_RATE, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=PRODUCER_BATCH, help=argparse.SUPPRESS)
    parser.add_argument("--produce-seconds", dest="seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("child_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sensor_intervals = args.sensor_intervals or [SENSOR_INTERVAL]
    args.events = args.events or [1_000_000]
    args.peers = [] if "peers" in args.skip else list(dict.fromkeys(args.peers or PEERS))
    if min(*args.events, args.rounds, *args.sensor_intervals) < 1 or args.latency_seconds < 0:
        parser.error("--events, --rounds and --sensor-interval must be positive, --latency-seconds >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    started = time.perf_counter()
    loads: dict[str, list[float]] = {"start": load_average()}
    log(f"load average at start: {loads['start']} ({os.cpu_count()} CPUs)")
    admin = resolve_admin_url(args.admin_url)
    day = args.day or (datetime.now(UTC) - timedelta(days=1)).date()
    work = Path(tempfile.mkdtemp(prefix="wd_bench_ingest_"))
    lake = Engine("lake", SCRIPT, REPO, work / "lake")
    engines = [lake]
    tree = Path(tempfile.gettempdir()) / f"wd-previous-{os.getpid()}"
    before_tree = Path(tempfile.gettempdir()) / f"wd-before-{os.getpid()}"
    log(f"lake and warehouse under {work}")
    try:
        if args.previous.lower() != "none":
            engines.append(previous_engine(args.previous, tree, work / "previous"))
        peers: list[Peer] = []
        if args.peers and not {"sweep", "rebuild"} <= set(args.skip):
            peers, failed = prepare_peers(args.peers, args.peers_venv)
            for name, why in failed.items():
                emit_figure({"figure": f"peer_{name}_events_per_s", "value": None, "unit": "events/s",
                             "error": f"cannot install: {why}"})
        with throwaway_database(admin) as url:
            migrate(url)
            if "sweep" not in args.skip:
                sized: list[list[dict[str, Any]]] = []
                for events in args.events:
                    sized.append(measure_sweep(url, engines, peers, work, events, args.rounds, args.profile))
                    for figure in sized[-1]:
                        emit_figure(figure)
                    if len(sized) > 1:
                        emit_figure(scale_figure(sized[0], sized[-1]))
                    loads[f"after_sweep_{events}"] = load_average()
            if "rebuild" not in args.skip:
                for figure in measure_rebuild(url, engines, peers, work, args.events[0], args.rounds, day):
                    emit_figure(figure)
                loads["after_rebuild"] = load_average()
            if "shapes" not in args.skip:
                shaped = [Engine("lake", SCRIPT, REPO, work / f"lake-{b:g}",
                                 {**os.environ, "WORKDEV_LAKE_WRITE_BUDGET_MIB": f"{b:g}"})
                          for b in args.shapes_budgets] or [lake]
                if args.shapes_before.lower() != "none":
                    before = previous_engine(args.shapes_before, before_tree, work / "before")
                    shaped.append(before)
                for figure in measure_shapes(url, shaped, SHAPES):
                    emit_figure(figure)
                loads["after_shapes"] = load_average()
            if args.latency_seconds > 0 and "latency" not in args.skip:
                for interval in args.sensor_intervals:
                    for figure in measure_latency(url, work / f"latency-{interval}s", args.latency_seconds, interval):
                        emit_figure(figure)
                    loads[f"after_latency_{interval}s"] = load_average()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for worktree in (tree, before_tree):
            if worktree.exists():
                remove_worktree(worktree)
    loads["end"] = load_average()
    elapsed = time.perf_counter() - started
    emit_figure({"figure": "load_average", "value": loads["end"][0], "unit": "load (1 min)",
                 "start": loads["start"], "end": loads["end"], "samples": loads, "cpus": os.cpu_count(),
                 "seconds": round(elapsed, 1), "previous": args.previous,
                 "note": "os.getloadavg(): 1, 5 and 15 minute averages at the start, after each phase, at the end"})
    log(f"done in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
