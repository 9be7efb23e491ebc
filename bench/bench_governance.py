"""Benchmark governance: retention and GDPR erasure at the scale of 1,000,000 events, PostgreSQL plus the lake
(``lake/platform_events``, a Delta table), with the code the Dagster assets run (``workdev_pipeline.governance``
over ``LakeGovernedWarehouse(Ingestor(url, EventLake(...), consumer="lake"))``), side by side with the previous
code (``--previous``, default 8d3cd9b) in the same run, round by round.

Retention (bar: removing 1,000,000 expired events in <= 10 s), two stores of demo traffic (2,000 users, the
demo's type mix, seed 42), inserted straight into ``platform_event_store`` (binary COPY, as superuser: the emit
functions refuse expired events, rightly) after making the monthly partitions, then swept into the lake by
``Ingestor.sweep()``; ~1,000,000 events of each have expired as of a day ago:

* ``retention_*``: a catch-up after the job was off for five weeks, at demo density (~7,400 events a day): 70-day
  windows across each category's line (1, 2 and 7 years) -- ~1.55 M events;
* ``retention_backlog_*``: the first run on 8 years of history -- 1,425,000 events spread evenly, ~490 a day, so
  ~2,200 thin days: the previous code rewrote each day's file; the lake deletes them in one Delta DELETE.

For each: ``*_seconds``, ``apply_retention`` as of a day ago (PostgreSQL's partitions dropped whole, others trimmed
by DELETE, dead letter and bookkeeping; alongside, the lake's planning query, one Delta DELETE and the vacuum),
median of ``--rounds`` rounds, each on a fresh copy (``CREATE DATABASE ... TEMPLATE``, and the lake directory
copied: data files hard-linked -- Delta never modifies a file in place and a vacuum only unlinks -- and
``_delta_log`` copied for real), so every round starts from the same state; ``*_events_per_s`` the same as a
rate; ``*_dry_run_seconds`` the dry run (counts only); ``*_next_day_seconds`` the next day's run (as of now)
right after: the steady state of the 02:00 job.

Erasure (bar: one user among 1,000,000 events in <= 2 s, PostgreSQL plus the lake, the vacuum included):

* ``erasure_seconds``: ``erase_users`` of one user of median activity in a store of 1,000,000 demo events
  (20,000 users over 30 days), swept into the lake; each round on a fresh copy of the database and the lake,
  erasing a different user of the same activity; the lake's data files holding the touched events are replaced
  (one commit: ``EventLake.replace_files``), then vacuumed at once; ``erasure_store_sweep_cpu_seconds``: the
  bulk write of that store (its one sweep), what the lake's file size (``--file-rows``) costs writes;
* ``erasure_rebuild_alternative_seconds``: rebuilding those days from PostgreSQL instead (``Ingestor.rebuild``):
  what refreshing only the user's rows saves;
* ``erasure_reaggregation_seconds`` (and ``erasure_dense_reaggregation_seconds``): what the Dagster erasure job
  does next, in the same run: ``reaggregate_erasures`` recomputing the closed hourly, daily and weekly aggregation
  periods holding the user's events (PostgreSQL's event_aggregations and the lake's aggregation table); not part
  of the erasure's bar;
* ``erasure_dense_seconds``: the demo's default shape (2,000 users, 7 days: every user is active every day, so
  every day -- all 1,000,000 rows -- is rewritten): the worst case (``--skip-dense`` leaves it out).

Every timed operation runs in a fresh process of this script (``--child``, as a Dagster run worker would run it),
timed inside it (the interpreter's start-up excluded), so its peak RSS is its own: each timed figure carries
``peak_rss_mib`` (bar 1,024: VmHWM, worst round; ``rss_before_mib`` is the process's RSS after its imports) and
``lake_split_seconds``: the lake's steps (the DuckDB planning query, the Delta DELETE or predicate overwrite --
which includes reading the snapshot and streaming PostgreSQL's rows -- and the vacuum), timed around
``EventLake``'s and ``LakeGovernedWarehouse``'s methods.

The previous code (unless ``--previous none``): a git worktree of the revision (``--previous-tree``, or a temporary
one removed at the end) first on PYTHONPATH, measured in the same rounds as this code. For each scenario it builds
its own store and lake (its own bench imported as a module: its ``migrate``, loader and ``sweep``, the same sizes
and seed), and each of its timed operations runs in a fresh process of its own bench's ``--child`` (so the
revision needs one: 7fe9554 or later), on a fresh copy of its store, like this code's. The two codes alternate
round by round: the previous code first in odd rounds, this code first in even ones (P T, T P, P T, ...), each
erasing the same user in a round (the same seed ranks the users alike), so a load that drifts across the run
weighs on both. Emitted as ``previous_*`` (the same figures from its rounds) and ``*_speedup_vs_previous`` = the
previous median / this code's median (> 1: this code is faster), with ``per_round``: each round's order, load
average as it started, both seconds and their ratio. The proof check runs on this code's rounds only.

Prints one JSON line per figure on stdout (see ``bench/README.md``); progress on stderr. Usage::

    .venv/bin/python bench/bench_governance.py [--rounds N] [--retention-events N] [--erasure-events N]
                                               [--skip-retention] [--skip-backlog] [--skip-erasure]
                                               [--skip-catchup] [--skip-dense] [--previous REV|none]
                                               [--previous-tree DIR] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_emit import (
    database_url_for,
    emit_figure,
    raw_connection,
    resolve_admin_url,
    throwaway_database,
)

from workdev_pipeline import catalog
from workdev_pipeline.demo import generate_events, generate_users
from workdev_pipeline.demo_loader import load_demo, store_users
from workdev_pipeline.events import to_json_object
from workdev_pipeline.governance.erasure import erase_users, verify_erasures
from workdev_pipeline.governance.reaggregation import reaggregate_erasures
from workdev_pipeline.governance.retention import apply_retention, verify_retention
from workdev_pipeline.governance.warehouse import LakeGovernedWarehouse
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake.events import FILE_ROWS_ENV, EventLake, file_rows_from_env
from workdev_pipeline.lake.location import LakeLocation
from workdev_pipeline.migrate import migrate

SEED = 42
RETENTION_USERS = 2_000
RETENTION_YEARS_DAYS = 8 * 365 + 2
RETENTION_BAR_SECONDS = 10.0
EXPIRED_TARGET = 1_000_000
ERASURE_USERS, ERASURE_DAYS = 20_000, 30.0
DENSE_USERS, DENSE_DAYS = 2_000, 7.0
ERASURE_BAR_SECONDS = 2.0
RSS_BAR_MIB = 1_024
CONSUMER = "lake"
COPY_BATCH = 100_000
STORE_COLUMNS = ("event_id", "event_type", "event_category", "user_id", "entity_type", "entity_id", "event_data",
                 "metadata", "source", "timestamp", "session_id")
STORE_TYPES = ("uuid", "text", "text", "uuid", "text", "text", "jsonb", "jsonb", "text", "timestamptz", "uuid")
SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent
TEMPORARY_PREFIX = "wd-prev-gov-"  # the previous code's temporary worktree's directory
PREVIOUS_REV = "8d3cd9b"  # main before the erasure's UPDATE by the event key and the enrichment loaded ahead


def log(message: str) -> None:
    print(f"[bench_governance] {message}", file=sys.stderr, flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- measuring ------------------------------------------------------------------------------------------------


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


@dataclass
class Measured:
    """One timed operation, run in a process of its own: its outcome (a JSON summary), seconds (the operation only,
    not the interpreter's start-up), the process's RSS before it and its peak (VmHWM) by its end (MiB), and the
    lake's steps (seconds)."""

    result: dict[str, Any]
    seconds: float
    rss_before_mib: float
    peak_rss_mib: float
    split: dict[str, float]


class LakeSteps:
    """Seconds spent in the lake's steps, timed around the methods the governance code calls (this process only)."""

    WRAPPED = ((LakeGovernedWarehouse, "expired_by_day", "plan_query"), (EventLake, "delete", "delta_delete"),
               (EventLake, "replace_days", "delta_overwrite"), (EventLake, "replace_files", "file_replace"),
               (EventLake, "vacuum", "vacuum"))

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        for owner, method, step in self.WRAPPED:
            setattr(owner, method, self._timed(getattr(owner, method), step))

    def _timed(self, function: Callable[..., Any], step: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - started
        return wrapper


def operate(url: str, lake: Path, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """One governance operation as the Dagster assets run it; a JSON summary of its outcome."""
    warehouse = governed(url, lake)
    if operation == "retention":
        report = apply_retention(url, [warehouse], as_of=params.get("as_of"), dry_run=params.get("dry_run", False),
                                 run_id="bench")
        summary: dict[str, Any] = {
            "postgres_total": report.postgres_total, "postgres": report.postgres,
            "partitions_dropped": len(report.partitions_dropped), "partitions_trimmed": len(report.partitions_trimmed),
            "seconds": report.seconds}
        if not report.dry_run:
            held = report.warehouse(CONSUMER)
            summary["lake"] = {"events": sum(held.events.values()), "days_removed": len(held.days_removed),
                               "days_rewritten": len(held.days_rewritten), "seconds": held.seconds,
                               "vacuum_hours": warehouse.retention_vacuum_hours}
        return summary
    if operation == "erasure":
        batch = erase_users(url, [params["user_id"]], [warehouse], requested_by="bench")
        (result,) = batch.results
        refresh = batch.refreshes[0]
        return {"status": result.status, "store_rows": result.store_rows, "summary": result.summary,
                "session_rows": getattr(result, "session_rows", 0),
                "reference_rows": getattr(result, "reference_rows", 0),
                "seconds": batch.seconds, "days": sorted(d.isoformat() for d in refresh.days),
                "rows_rewritten": sum(refresh.days.values()), "files_replaced": refresh.files_replaced,
                "refresh_seconds": refresh.seconds}
    if operation == "reaggregate":
        return {"periods": reaggregate_erasures(url, LakeLocation.from_env(str(lake))).periods_recomputed}
    if operation == "rebuild":
        outcome = warehouse.ingestor.rebuild([date.fromisoformat(d) for d in params["days"]], run_id="bench")
        return {"status": outcome.status, "events": outcome.events_loaded}
    raise ValueError(f"unknown operation {operation}")


def child(url: str, lake: str, operation: str, params: str) -> None:
    """``--child``: the operation timed in this fresh process, its peak RSS its own; one JSON line on stdout."""
    steps = LakeSteps()
    before = _status_kib("VmRSS")
    started = time.perf_counter()
    summary = operate(url, Path(lake), operation, json.loads(params))
    seconds = time.perf_counter() - started
    print(json.dumps({"result": summary, "seconds": seconds, "rss_before_mib": before / 1024,
                      "peak_rss_mib": _status_kib("VmHWM") / 1024,
                      "split": {k: round(v, 3) for k, v in steps.seconds.items()}}, default=str), flush=True)


#: Builds a store with the previous code: its bench imported as a module (the __main__ guard keeps its main from
#: running), its own migrate, loader and sweep into the lake at ROOT. Arguments: SCRIPT URL ROOT SPEC (JSON).
BUILD_WITH_BENCH = """
import importlib.util, json, sys
from datetime import datetime
from pathlib import Path
script, url, root, spec = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
found = importlib.util.spec_from_file_location("previous_bench", script)
bench = importlib.util.module_from_spec(found)
sys.modules["previous_bench"] = bench
found.loader.exec_module(bench)
bench.migrate(url)
if spec["kind"] == "erasure":
    bench.load_demo(url, users=spec["users"], events=spec["events"], days=spec["days"], seed=bench.SEED)
else:
    bench.load_windows(url, [tuple(w) for w in spec["windows"]], datetime.fromisoformat(spec["now"]))
bench.sweep(url, root)
"""


@dataclass
class Code:
    """The code measured in a round: a bench script whose ``--child`` runs one timed operation, run with ``env``
    (None: this process's) from ``cwd``; the previous code's is its revision's own script in a worktree of it."""

    label: str  # "this" or "previous"
    script: Path
    cwd: Path
    env: dict[str, str] | None = None
    owned: bool = False  # a worktree made by this run (removed at the end)

    def measure(self, url: str, lake: Path, operation: str, **params: Any) -> Measured:
        """``operation`` in a fresh process of the script (``--child``), as a Dagster run worker would run it."""
        done = subprocess.run([sys.executable, str(self.script), "--child", url, str(lake), operation,
                               json.dumps(params, default=str)], cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                              text=True, check=False, timeout=3_600)
        if done.returncode != 0:
            raise RuntimeError(f"the {self.label} code's {operation} process exited with {done.returncode}")
        return Measured(**json.loads(done.stdout.strip().splitlines()[-1]))

    def build(self, url: str, root: Path, spec: dict[str, Any]) -> None:
        """A store built by this code's own bench into the empty database ``url`` and the lake at ``root``."""
        log(f"{self.label} code: building its own store and lake ({spec['kind']})")
        subprocess.run([sys.executable, "-c", BUILD_WITH_BENCH, str(self.script), url, str(root),
                        json.dumps(spec, default=str)], cwd=self.cwd, env=self.env, check=True, timeout=7_200)

    @classmethod
    def previous(cls, rev: str, tree: Path | None) -> Code:
        """The previous code: a worktree of ``rev`` (``tree``, or a temporary one) first on PYTHONPATH."""
        owned = tree is None or not tree.exists()
        if tree is None:
            tree = Path(tempfile.mkdtemp(prefix=TEMPORARY_PREFIX)) / "tree"
        if owned:
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        code = cls("previous", tree / "bench" / SCRIPT.name, tree, {
            **os.environ, "PYTHONPATH": os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])},
            owned)
        if '"--child"' not in code.script.read_text():
            code.remove()
            raise SystemExit(f"--previous {rev}: its bench has no --child (one timed operation per process), which "
                             "the rounds alternate by; use 7fe9554 or later")
        imported = subprocess.run([sys.executable, "-c", "import workdev_pipeline; print(workdev_pipeline.__file__)"],
                                  cwd=tree, env=code.env, check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
        if not Path(imported).resolve().is_relative_to(tree.resolve()):
            raise RuntimeError(f"the previous code imports workdev_pipeline from {imported}, not {tree}")
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short=12", "HEAD"], check=True,
                              stdout=subprocess.PIPE, text=True).stdout.strip()
        log(f"previous code: {rev} ({head}) at {tree}")
        return code

    def remove(self) -> None:
        if not self.owned:
            return
        done = subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(self.cwd)],
                              check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            log(f"could not remove the worktree {self.cwd}: {done.stderr.strip()}")
        elif self.cwd.parent.name.startswith(TEMPORARY_PREFIX):
            self.cwd.parent.rmdir()


THIS = Code("this", SCRIPT, REPO)


@dataclass
class Side:
    """One code's store for a scenario: its template database and lake, copied afresh for each of its rounds."""

    code: Code
    template: str
    root: Path


def alternated(sides: Sequence[Side], r: int) -> list[Side]:
    """The order of round ``r`` (from 1): the previous code first in odd rounds, this code first in even ones (A B,
    B A, A B, ...), so a load that drifts across the run weighs on both alike."""
    return list(sides) if r % 2 else list(sides)[::-1]


def round_started(sides: Sequence[Side], r: int) -> dict[str, Any]:
    """Round ``r``'s order (the codes' labels) and the load average as it starts, for ``per_round``."""
    return {"order": [side.code.label for side in alternated(sides, r)], "load_average": load_average()}


def versus_previous(figure: dict[str, Any], theirs: Sequence[Measured], rounds: Sequence[dict[str, Any]],
                    **context: Any) -> list[dict[str, Any]]:
    """The previous code's runs of ``figure`` as ``previous_<name>``, and ``<name>_speedup_vs_previous`` = the
    previous median / this code's (> 1: this code is faster), with each round's pair, order and load average in
    ``per_round``."""
    name = figure["figure"]
    previous = seconds_figure(f"previous_{name}", [m.seconds for m in theirs], events=figure["events"],
                              bar=figure.get("bar"), measured=theirs, **context)
    per_round = [{"round": r, **started, "previous_seconds": round(m.seconds, 3), "lake_seconds": mine,
                  "ratio": round(m.seconds / mine, 2) if mine > 0 else None}
                 for r, (started, m, mine) in enumerate(zip(rounds, theirs, figure["runs_seconds"], strict=False), 1)]
    ratio = {"figure": name.removesuffix("_seconds") + "_speedup_vs_previous",
             "value": round(previous["value"] / figure["value"], 2) if figure["value"] > 0 else None, "unit": "x",
             "lake_seconds": figure["value"], "previous_seconds": previous["value"], "per_round": per_round,
             "statistic": "previous median seconds / this code's median seconds (> 1: this code is faster); the "
                          "two codes alternate round by round, each round on fresh copies of their stores"}
    return [previous, ratio]


def seconds_figure(name: str, runs: Sequence[float], *, events: int, bar: float | None = None,
                   measured: Sequence[Measured] = (), **context: Any) -> dict[str, Any]:
    value = statistics.median(runs)
    figure: dict[str, Any] = {"figure": name, "value": round(value, 3), "unit": "s", "events": events,
                              "seconds": round(value, 3), "runs_seconds": [round(r, 3) for r in runs],
                              "statistic": f"median of {len(runs)} run(s)", **context}
    if bar is not None:
        figure["bar"] = bar
        figure["meets_bar"] = value <= bar
    if measured:
        peak = max(m.peak_rss_mib for m in measured)
        figure.update(peak_rss_mib=round(peak), rss_before_mib=[round(m.rss_before_mib) for m in measured],
                      rss_bar_mib=RSS_BAR_MIB, meets_rss_bar=peak <= RSS_BAR_MIB)
        if any(m.split for m in measured):
            figure["lake_split_seconds"] = [m.split for m in measured]
    return figure


def lake_at(root: Path) -> EventLake:
    return EventLake(LakeLocation.from_env(str(root)))


def governed(url: str, root: Path) -> LakeGovernedWarehouse:
    return LakeGovernedWarehouse(Ingestor(url, lake_at(root), consumer=CONSUMER))


def copy_lake(source: Path, target: Path) -> None:
    """A copy of the lake directory that starts from the same state: data files hard-linked (Delta never modifies
    one in place; a vacuum unlinks the copy's name only), every ``_delta_log`` file copied for real."""
    def link_or_copy(src: str, dst: str) -> None:
        if f"{os.sep}_delta_log{os.sep}" in src:
            shutil.copy2(src, dst)
        else:
            os.link(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


@contextmanager
def clone(admin: str, template_url: str) -> Iterator[str]:
    """A copy of the template database (CREATE DATABASE ... TEMPLATE), dropped on the way out."""
    template = conninfo_to_dict(template_url)["dbname"]
    name = f"wd_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        for attempt in range(20):  # a just-closed session of the template may linger a moment
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                               sql.Identifier(template)))
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 19:
                    raise
                time.sleep(0.25)
    try:
        yield database_url_for(admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def fresh_copy(admin: str, template_url: str, lake_root: Path, target: Path) -> Iterator[tuple[str, Path]]:
    """A clone of the database and a copy of the lake, both removed on the way out; the clone checkpointed."""
    with clone(admin, template_url) as url:
        copy_lake(lake_root, target)
        try:
            checkpoint(url)
            yield url, target
        finally:
            shutil.rmtree(target, ignore_errors=True)


def checkpoint(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def sweep(url: str, root: Path) -> dict[str, Any]:
    """One sweep of everything into the lake at ``root``; its wall and CPU seconds (this process, every thread)."""
    cpu = time.process_time()
    outcome = Ingestor(url, lake_at(root), consumer=CONSUMER).sweep(run_id="bench")
    cpu = time.process_time() - cpu
    if outcome.status != "loaded":
        raise RuntimeError(f"the sweep ended {outcome.status}: {outcome.error}")
    files = lake_at(root).snapshot().files().num_rows
    log(f"swept {outcome.events_loaded:,} events into {len(outcome.days):,} day(s) of the lake ({files:,} files) in "
        f"{outcome.seconds:.1f} s, {cpu:.1f} CPU-s (lake version {outcome.lake_version})")
    return {"events": outcome.events_loaded, "seconds": round(outcome.seconds, 2), "cpu_seconds": round(cpu, 2),
            "files": files, "bytes": outcome.bytes_written}


# -- retention --------------------------------------------------------------------------------------------------

def load_windows(url: str, windows: Sequence[tuple[float, float, int]], now: datetime) -> int:
    """Demo events in windows of age (``(oldest days, newest days, events)``), COPYed straight into the store
    (bypassing emission, which refuses expired events); returns how many."""
    categories = {t.name: t.category.name for t in catalog.EVENT_TYPES}
    users = generate_users(RETENTION_USERS, seed=SEED, now=now)
    oldest = max(w[0] for w in windows)
    with psycopg.connect(url) as conn:  # one transaction (store_users stages into an ON COMMIT DROP table)
        store_users(conn, users)
        conn.execute("SELECT ensure_event_partitions(%s, %s)", (now - timedelta(days=oldest), now))
    statement = sql.SQL("COPY platform_event_store ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in STORE_COLUMNS))
    written, started = 0, time.perf_counter()
    with raw_connection(url) as conn:
        for k, (old, new, count) in enumerate(windows):
            stream = generate_events(users, count, days=old - new, seed=SEED + k, now=now - timedelta(days=new))
            done = 0
            while done < count:
                with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
                    copy.set_types(list(STORE_TYPES))
                    for _, e in zip(range(COPY_BATCH), stream, strict=False):
                        copy.write_row((e["event_id"], e["event_type"], categories[e["event_type"]], e["user_id"],
                                        e["entity_type"], e["entity_id"],
                                        to_json_object(e["event_data"], "event_data"),
                                        to_json_object(e["metadata"], "metadata"), e["source"], e["timestamp"],
                                        e["session_id"]))
                        done += 1
            written += done
            log(f"  {written:,} events stored (window {old:g}..{new:g} days old)")
    log(f"stored {written:,} events in {time.perf_counter() - started:.1f} s")
    return written


def expired_now(url: str, as_of: datetime) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM platform_event_store e JOIN event_schemas s USING (event_type) "
            "WHERE e.\"timestamp\" < %s - make_interval(days => s.retention_days)", (as_of,)).fetchone()[0]


#: Scenarios: name -> (windows of (oldest age, newest age, events), what it is). Ages in days before now.
def retention_scenarios(events: int) -> dict[str, tuple[list[tuple[float, float, int]], str]]:
    # the catch-up windows expire ~64 % of 210 days of traffic: size them to expire as many as the backlog does
    per_day = events * 0.7028 / (0.643 * 210)
    return {
        "retention_backlog": ([(RETENTION_YEARS_DAYS, 0.0, events)],
                              f"the first run on 8 years of history: {events:,} demo events (2,000 users) spread "
                              "evenly over 8 years, ~490 a day: ~2,200 sparse days to rewrite, the worst case for "
                              "per-day cost"),
        "retention": ([(400.0, 330.0, round(70 * per_day)), (766.0, 696.0, round(70 * per_day)),
                       (2592.0, 2522.0, round(70 * per_day))],
                      f"catch-up after the job was off for 5 weeks, at demo density (~{per_day:,.0f} events a day): "
                      "70-day windows across each category's line (1, 2 and 7 years)"),
    }


def measure_retention(admin: str, name: str, windows: list[tuple[float, float, int]], shape: str,
                      rounds: int, previous: Code | None) -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    as_of = now - timedelta(days=1)  # the next day's run (as of now) is the steady state
    figures: list[dict[str, Any]] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wd-bench-gov-")))
        template = stack.enter_context(throwaway_database(admin))
        migrate(template)
        root = tmp / "template"
        log(f"{name}: {shape}")
        events = load_windows(template, windows, now)
        sweep(template, root)
        sides = [Side(THIS, template, root)]
        if previous is not None:
            theirs = Side(previous, stack.enter_context(throwaway_database(admin)), tmp / "previous-template")
            previous.build(theirs.template, theirs.root, {"kind": "retention", "windows": windows, "now": now})
            sides.insert(0, theirs)
        expired = expired_now(template, as_of)
        with psycopg.connect(template) as conn:
            partitions = conn.execute("SELECT count(*) FROM event_store_partitions()").fetchone()[0]
        files = lake_at(root).snapshot().files().num_rows
        log(f"{expired:,} of {events:,} events expired as of {as_of:%Y-%m-%d %H:%M}; {partitions} partitions; "
            f"{files:,} lake files")

        dry_runs: dict[str, list[Measured]] = {side.code.label: [] for side in sides}
        dry_rounds = []
        for r in range(1, rounds + 1):
            dry_rounds.append(round_started(sides, r))
            for side in alternated(sides, r):
                checkpoint(side.template)
                dry = side.code.measure(side.template, side.root, "retention", as_of=as_of, dry_run=True)
                dry_runs[side.code.label].append(dry)
                log(f"round {r}/{rounds} dry run, {side.code.label} code: {dry.result['postgres_total']:,} would go "
                    f"in {dry.seconds:.2f} s")
        dry_total = dry_runs["this"][-1].result["postgres_total"]

        runs: dict[str, list[Measured]] = {side.code.label: [] for side in sides}
        daily: dict[str, list[Measured]] = {side.code.label: [] for side in sides}
        detail: dict[str, Any] = {}
        run_rounds = []
        for r in range(1, rounds + 1):
            run_rounds.append(round_started(sides, r))
            for side in alternated(sides, r):
                label = side.code.label
                with fresh_copy(admin, side.template, side.root, tmp / f"{label}-round-{r}") as (url, copy):
                    run = side.code.measure(url, copy, "retention", as_of=as_of)
                    report, held = run.result, run.result["lake"]
                    runs[label].append(run)
                    log(f"round {r}/{rounds}, {label} code: {report['postgres_total']:,} events gone in "
                        f"{run.seconds:.2f} s (PostgreSQL {report['seconds']['postgres']:.2f} s: "
                        f"{report['partitions_dropped']} partitions dropped, {report['partitions_trimmed']} trimmed; "
                        f"alongside, the lake {held['seconds']:.2f} s: {held['days_removed']:,} days removed, "
                        f"{held['days_rewritten']:,} rewritten; steps {run.split}; peak RSS "
                        f"{run.peak_rss_mib:,.0f} MiB)")
                    next_day = side.code.measure(url, copy, "retention")
                    daily[label].append(next_day)
                    log(f"round {r}/{rounds}, {label} code: the next day's run removed "
                        f"{next_day.result['postgres_total']:,} in {next_day.seconds:.2f} s")
                    if side.code is not THIS:
                        continue
                    if report["postgres_total"] != expired or report["postgres_total"] != dry_total:
                        raise RuntimeError(f"retention removed {report['postgres_total']:,}, expected {expired:,}")
                    if held["events"] != expired:
                        raise RuntimeError(f"the lake lost {held['events']:,} events, expected {expired:,}")
                    detail = {"postgres_events": report["postgres_total"], "postgres_by_category": report["postgres"],
                              "lake_events": held["events"], "partitions_dropped": report["partitions_dropped"],
                              "partitions_trimmed": report["partitions_trimmed"],
                              "lake_days_removed": held["days_removed"],
                              "lake_days_rewritten": held["days_rewritten"], "lake_files_before": files,
                              "lake_files_after": lake_at(copy).snapshot().files().num_rows,
                              "retention_vacuum_hours": held["vacuum_hours"]}
                    found = verify_retention(url, [governed(url, copy)])
                    if not found.passed:
                        raise RuntimeError(f"expired events remain: {found}")
    context = {"shape": shape, "store_events": events, "as_of": as_of.isoformat()}
    mine, dry_mine, daily_mine = runs["this"], dry_runs["this"], daily["this"]
    seconds = [m.seconds for m in mine]
    figures.append(seconds_figure(
        f"{name}_seconds", seconds, events=expired, bar=RETENTION_BAR_SECONDS, measured=mine, **context,
        postgres_seconds=[round(m.result["seconds"]["postgres"], 3) for m in mine],
        lake_seconds=[round(m.result["lake"]["seconds"], 3) for m in mine], **detail,
        path="apply_retention(as_of) on a fresh clone and lake copy, in a process of its own: PostgreSQL, and "
             "alongside it the lake (planning query, one Delta DELETE, vacuum)"))
    figures.append({"figure": f"{name}_events_per_s", "value": round(expired / statistics.median(seconds), 1),
                    "unit": "events/s", "events": expired, "seconds": round(statistics.median(seconds), 3)})
    figures.append(seconds_figure(f"{name}_dry_run_seconds", [m.seconds for m in dry_mine], events=dry_total,
                                  measured=dry_mine, **context,
                                  path="apply_retention(as_of, dry_run=True): counts only"))
    figures.append(seconds_figure(f"{name}_next_day_seconds", [m.seconds for m in daily_mine],
                                  events=daily_mine[-1].result["postgres_total"], measured=daily_mine,
                                  path="the next day's run (as of now) right after: the 02:00 job's steady state"))
    if previous is not None:
        for k, theirs_runs, started in ((0, runs["previous"], run_rounds), (2, dry_runs["previous"], dry_rounds),
                                        (3, daily["previous"], run_rounds)):
            figures += versus_previous(figures[k], theirs_runs, started,
                                       postgres_events=[m.result["postgres_total"] for m in theirs_runs])
    return figures


# -- erasure ----------------------------------------------------------------------------------------------------

def users_by_activity(url: str) -> list[tuple[str, int, int]]:
    """(user_id, events, days) of every user, fewest events first."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT user_id::text, count(*), count(DISTINCT (\"timestamp\" AT TIME ZONE 'UTC')::date) "
            "FROM platform_event_store WHERE user_id IS NOT NULL GROUP BY 1 ORDER BY 2, 1").fetchall()


def bulk_write(url: str, root: Path) -> dict[str, Any]:
    """Every day of the store written into a new lake at ``root`` (one rebuild: extraction, validation, enrichment,
    Parquet, one commit -- what a sweep of the whole store does); its wall and CPU seconds (this process)."""
    cpu = time.process_time()
    days = [d for (d,) in _rows(url, "SELECT DISTINCT (\"timestamp\" AT TIME ZONE 'UTC')::date FROM "
                                     "platform_event_store ORDER BY 1")]
    outcome = Ingestor(url, lake_at(root), consumer=CONSUMER).rebuild(days, run_id="bench")
    cpu = time.process_time() - cpu
    files = lake_at(root).snapshot().files().num_rows
    log(f"wrote {outcome.events_loaded:,} events of {len(days):,} day(s) into a lake of "
        f"{lake_at(root).file_rows:,}-row files ({files:,} files) in {outcome.seconds:.1f} s, {cpu:.1f} CPU-s")
    return {"events": outcome.events_loaded, "seconds": round(outcome.seconds, 2), "cpu_seconds": round(cpu, 2),
            "files": files, "bytes": outcome.bytes_written}


def _rows(url: str, statement: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(statement).fetchall()


def measure_erasure(admin: str, events: int, users: int, days: float, rounds: int, name: str,
                    rebuild_alternative: bool, proof: bool = True, file_rows: Sequence[int] = (),
                    previous: Code | None = None) -> list[dict[str, Any]]:
    """The erasure figures; with ``file_rows``, for each of those lake layouts in turn (the first one's figures keep
    their names, the others' are ``<name>_<rows>_rows_*``; the rebuild alternative, the proof check and the
    previous code's rounds for the first only), each lake written anew from the same store."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wd-bench-gov-")))
        template = stack.enter_context(throwaway_database(admin))
        migrate(template)
        log(f"{name}: {events:,} demo events, {users:,} users over {days:g} days (seed {SEED})")
        report = load_demo(template, users=users, events=events, days=days, seed=SEED)
        log(f"  loaded in {report.seconds:.1f} s")
        theirs = None
        if previous is not None:
            theirs = Side(previous, stack.enter_context(throwaway_database(admin)), tmp / "previous-template")
            previous.build(theirs.template, theirs.root,
                           {"kind": "erasure", "users": users, "events": events, "days": days})
        if not file_rows:
            return _erasure_rounds(admin, Side(THIS, template, tmp / "template"), theirs, tmp, events, users, days,
                                   rounds, name, rebuild_alternative, proof, sweep(template, tmp / "template"))
        sweep(template, tmp / "swept")  # the consumer's watermark; each layout's lake is then written anew
        shutil.rmtree(tmp / "swept")
        figures = []
        for k, rows in enumerate(file_rows):
            os.environ[FILE_ROWS_ENV] = str(rows)  # this process's writes and the timed child processes
            written = bulk_write(template, tmp / "template")
            found = _erasure_rounds(admin, Side(THIS, template, tmp / "template"), theirs if k == 0 else None, tmp,
                                    events, users, days, rounds, name, rebuild_alternative and k == 0,
                                    proof and k == 0, written)
            for figure in found:
                if k:
                    figure["figure"] = figure["figure"].replace(name, f"{name}_{rows}_rows", 1)
                figures.append(figure)
            shutil.rmtree(tmp / "template")
        return figures


def _erasure_rounds(admin: str, mine: Side, theirs: Side | None, tmp: Path, events: int, users: int, days: float,
                    rounds: int, name: str, rebuild_alternative: bool, proof: bool,
                    swept: dict[str, Any]) -> list[dict[str, Any]]:
    """``rounds`` rounds, each erasing the next user of median activity with each code on a fresh copy of its own
    store (the previous code's, when ``theirs``, in the order of ``alternated``)."""
    sides = [mine] if theirs is None else [theirs, mine]
    chosen: dict[str, list[tuple[str, int, int]]] = {}
    for side in sides:
        ranked = users_by_activity(side.template)
        chosen[side.code.label] = ranked[len(ranked) // 2:len(ranked) // 2 + rounds]
    if theirs is not None and chosen["previous"] != chosen["this"]:
        log("the previous code's store ranks its users differently: each code erases its own median users")
    runs: dict[str, list[Measured]] = {side.code.label: [] for side in sides}
    reaggregations: dict[str, list[Measured]] = {side.code.label: [] for side in sides}
    rebuilds: dict[str, list[Measured]] = {side.code.label: [] for side in sides}
    started = []
    for r in range(1, rounds + 1):
        started.append(round_started(sides, r))
        for side in alternated(sides, r):
            label, code = side.code.label, side.code
            user_id, user_events, user_days = chosen[label][r - 1]
            with fresh_copy(admin, side.template, side.root, tmp / f"{label}-round-{r}") as (url, copy):
                run = code.measure(url, copy, "erasure", user_id=user_id)
                result = run.result
                if result["status"] != "erased" or result["store_rows"] != user_events:
                    raise RuntimeError(f"erasure of {user_id} by the {label} code: {result['summary']}")
                runs[label].append(run)
                log(f"round {r}/{rounds}, {label} code: a user with {user_events} events on {user_days} day(s) "
                    f"({result.get('session_rows', 0)} logged-out event(s) of their sessions, "
                    f"{result.get('reference_rows', 0)} other users' event(s) naming them) erased in "
                    f"{run.seconds:.2f} s (PostgreSQL {result['seconds']['postgres']:.2f} s incl. the lake scan, "
                    f"lake {result['refresh_seconds']:.2f} s: {len(result['days'])} day(s), "
                    f"{result.get('files_replaced', 0):,} file(s) of {result['rows_rewritten']:,} rows rewritten; "
                    f"steps {run.split}; peak RSS {run.peak_rss_mib:,.0f} MiB)")
                again = code.measure(url, copy, "reaggregate")
                reaggregations[label].append(again)
                log(f"  then its {again.result['periods']} closed aggregation period(s) recomputed in "
                    f"{again.seconds:.2f} s")
                if rebuild_alternative and r == 1:
                    rebuild = code.measure(url, copy, "rebuild", days=result["days"])
                    rebuilds[label].append(rebuild)
                    log(f"  the alternative, rebuilding those {len(result['days'])} day(s) from PostgreSQL: "
                        f"{rebuild.seconds:.2f} s")
                if proof and code is THIS:
                    found = verify_erasures(url, [governed(url, copy)])
                    if not found.passed:
                        raise RuntimeError(f"erasure left traces: {found.places()}")
    root = mine.root
    figures = [seconds_figure(
        f"{name}_seconds", [m.seconds for m in runs["this"]], events=events, bar=ERASURE_BAR_SECONDS,
        measured=runs["this"], **erasure_detail(runs["this"], chosen["this"]), lake_files=swept["files"],
        shape=f"demo, {users:,} users, {events:,} events over {days:g} days, swept; users of median activity",
        file_rows=lake_at(root).file_rows,
        path="erase_users([user]) on a fresh clone and lake copy, in a process of its own: PostgreSQL (anonymise, "
             "queue, dead letter, profile, ledger; the lake's part prepared meanwhile) + the lake's refresh (the data "
             "files holding touched events replaced in one commit, vacuum at 0 h)")]
    figures.append({"figure": f"{name}_store_write_cpu_seconds", "value": swept["cpu_seconds"], "unit": "CPU-s",
                    "events": swept["events"], "seconds": swept["seconds"], "lake_files": swept["files"],
                    "bytes_written": swept["bytes"], "file_rows": lake_at(root).file_rows,
                    "cpu_seconds_per_million_events": round(swept["cpu_seconds"] * 1e6 / max(swept["events"], 1), 2),
                    "statistic": "one run: the bulk write of the erasure store (one sweep, or with --file-rows one "
                                 "rebuild, of every event; this process's CPU, every thread: extraction, "
                                 "validation, enrichment, Parquet, commit)"})
    figures.append(seconds_figure(f"{name}_reaggregation_seconds", [m.seconds for m in reaggregations["this"]],
                                  events=events, measured=reaggregations["this"],
                                  path="reaggregate_erasures() after each round's erasure: the closed hours, days "
                                       "and weeks of the user's events recomputed (the Dagster job's next step)"))
    if rebuilds["this"]:
        figures.append(seconds_figure("erasure_rebuild_alternative_seconds", [m.seconds for m in rebuilds["this"]],
                                      events=events, measured=rebuilds["this"],
                                      lake_rows_rewritten=[runs["this"][0].result["rows_rewritten"]],
                                      path="Ingestor.rebuild(the days of round 1's user): re-extracting whole days "
                                           "from PostgreSQL instead of refreshing the user's rows"))
    if theirs is not None:
        figures += versus_previous(figures[0], runs["previous"], started,
                                   **erasure_detail(runs["previous"], chosen["previous"]))
        figures += versus_previous(figures[2], reaggregations["previous"], started)
        if rebuilds["previous"] and rebuilds["this"]:
            figures += versus_previous(figures[3], rebuilds["previous"], started[:1])
    return figures


def erasure_detail(runs: Sequence[Measured], chosen: Sequence[tuple[str, int, int]]) -> dict[str, Any]:
    """What each round's erasure touched (its outcome's counts), for an erasure figure."""
    return {"user_events": [c[1] for c in chosen], "user_days": [c[2] for c in chosen],
            "lake_rows_rewritten": [m.result["rows_rewritten"] for m in runs],
            "lake_files_replaced": [m.result.get("files_replaced", 0) for m in runs],
            "postgres_seconds": [round(m.result["seconds"]["postgres"], 3) for m in runs],
            "lake_seconds": [round(m.result["refresh_seconds"], 3) for m in runs],
            "session_events": [m.result.get("session_rows", 0) for m in runs],
            "referencing_events": [m.result.get("reference_rows", 0) for m in runs]}


# -- main -------------------------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement (default 3)")
    parser.add_argument("--retention-events", type=int, default=1_425_000,
                        help="events of the 8-year backlog (default 1,425,000: ~1,000,000 of them expired); the "
                             "catch-up store is sized to expire as many")
    parser.add_argument("--erasure-events", type=int, default=1_000_000, help="events in the erasure stores")
    parser.add_argument("--skip-retention", action="store_true")
    parser.add_argument("--skip-erasure", action="store_true")
    parser.add_argument("--skip-dense", action="store_true", help="leave out the dense (every user every day) case")
    parser.add_argument("--skip-proof", action="store_true",
                        help="leave out the proof check after each erasure round (~80 s a round on 1 M events)")
    parser.add_argument("--file-rows", type=lambda v: [int(x) for x in v.split(",")], default=[],
                        help="rows per lake data file, or several (4096,16384): the erasure store's lake written with "
                             "each in turn and measured (WORKDEV_LAKE_FILE_ROWS; default: the lake's FILE_ROWS)")
    parser.add_argument("--skip-backlog", action="store_true", help="leave out the 8-year backlog retention case")
    parser.add_argument("--skip-catchup", action="store_true", help="leave out the 5-week catch-up retention case")
    parser.add_argument("--previous", default=PREVIOUS_REV,
                        help=f"the revision measured side by side, round by round (default {PREVIOUS_REV}: main "
                             "before the erasure's last two cuts; its bench needs --child: 7fe9554 or later); "
                             "'none' to leave it out")
    parser.add_argument("--previous-tree", type=Path,
                        help="a checkout of --previous to use (default: a temporary git worktree, removed at the end)")
    parser.add_argument("--admin-url", help="superuser URL (default: $WORKDEV_BENCH_ADMIN_URL, else local)")
    parser.add_argument("--child", nargs=4, metavar=("URL", "LAKE", "OPERATION", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.rounds, args.retention_events, args.erasure_events) < 1:
        parser.error("--rounds and the event counts must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    if args.file_rows:
        os.environ[FILE_ROWS_ENV] = str(args.file_rows[0])  # this process's writes and the timed child processes
    started = time.perf_counter()
    load_start = load_average()
    log(f"load average at start: {load_start} ({os.cpu_count()} cores)")
    admin = resolve_admin_url(args.admin_url)
    scenarios = retention_scenarios(args.retention_events)
    previous = None if args.previous == "none" else Code.previous(args.previous, args.previous_tree)
    try:
        for name in ("retention_backlog", "retention"):
            if args.skip_retention or (name == "retention_backlog" and args.skip_backlog) or \
                    (name == "retention" and args.skip_catchup):
                continue
            windows, shape = scenarios[name]
            for figure in measure_retention(admin, name, windows, shape, args.rounds, previous):
                emit_figure(figure)
        if not args.skip_erasure:
            for figure in measure_erasure(admin, args.erasure_events, ERASURE_USERS, ERASURE_DAYS, args.rounds,
                                          "erasure", rebuild_alternative=True, proof=not args.skip_proof,
                                          file_rows=args.file_rows, previous=previous):
                emit_figure(figure)
            if not args.skip_dense:
                for figure in measure_erasure(admin, args.erasure_events, DENSE_USERS, DENSE_DAYS, args.rounds,
                                              "erasure_dense", rebuild_alternative=False,
                                              proof=not args.skip_proof, file_rows=args.file_rows[:1],
                                              previous=previous):
                    emit_figure(figure)
    finally:
        if previous is not None:
            previous.remove()
    load_end = load_average()
    emit_figure({"figure": "governance_bench_run", "value": round(time.perf_counter() - started, 1), "unit": "s",
                 "events": 0, "seconds": round(time.perf_counter() - started, 1), "load_average_start": load_start,
                 "load_average_end": load_end, "cores": os.cpu_count(), "previous": args.previous,
                 "file_rows": file_rows_from_env(),
                 "parent_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                 "parent": "this process: loading the stores and sweeping them into the lake (not timed)"})
    log(f"load average at end: {load_end}; done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
