"""Benchmark governance: retention and GDPR erasure at the scale of 1,000,000 events, PostgreSQL plus the local
warehouse, with the code the Dagster assets run (``workdev_pipeline.governance`` over ``Ingestor`` and
``LocalEventFiles``).

Retention (bar: removing 1,000,000 expired events in <= 10 s), two stores of demo traffic (2,000 users, the
demo's type mix, seed 42), inserted straight into ``platform_event_store`` (binary COPY, as superuser: the emit
functions refuse expired events, rightly) after making the monthly partitions, then swept into the local
warehouse by ``Ingestor.sweep()``; ~1,000,000 events of each have expired as of a day ago:

* ``retention_*``: a catch-up after the job was off for five weeks, at demo density (~7,400 events a day): 70-day
  windows across each category's line (1, 2 and 7 years) -- ~1.55 M events;
* ``retention_backlog_*``: the first run on 8 years of history -- 1,425,000 events spread evenly, ~490 a day, so
  ~2,200 sparse warehouse days are rewritten: the worst case for the per-day cost of rewriting Parquet.

For each: ``*_seconds``, ``apply_retention`` as of a day ago (partitions dropped whole, others trimmed by DELETE,
dead letter and bookkeeping, warehouse days removed or rewritten), median of ``--rounds`` rounds, each on a fresh
copy (``CREATE DATABASE ... TEMPLATE``, the warehouse hard-linked: files are never modified in place);
``*_events_per_s`` the same as a rate; ``*_dry_run_seconds`` the dry run (counts only); ``*_next_day_seconds``
the next day's run (as of now) right after: the steady state of the 02:00 job.

Erasure (bar: one user among 1,000,000 events in <= 2 s, PostgreSQL plus the warehouse):

* ``erasure_seconds``: ``erase_users`` of one user of median activity in a store of 1,000,000 demo events
  (20,000 users over 30 days), swept into the warehouse; rounds erase different users of the same activity;
  the rows rewritten are those of the days the user was active on;
* ``erasure_rebuild_alternative_seconds``: rebuilding those days from PostgreSQL instead (``Ingestor.rebuild``):
  what refreshing only the user's rows saves;
* ``erasure_reaggregation_seconds`` (and ``erasure_dense_reaggregation_seconds``): what the Dagster erasure job
  does next, in the same run: ``reaggregate_erasures`` recomputing the closed hourly, daily and weekly aggregation
  periods holding the user's events (PostgreSQL's event_aggregations and the warehouse's files); not part of the
  erasure's bar;
* ``erasure_dense_seconds``: the demo's default shape (2,000 users, 7 days: every user is active every day, so
  every day -- all 1,000,000 rows -- is rewritten): the worst case (``--skip-dense`` leaves it out).

Prints one JSON line per figure on stdout (see ``bench/README.md``); progress on stderr. Usage::

    .venv/bin/python bench/bench_governance.py [--rounds N] [--retention-events N] [--erasure-events N]
                                               [--skip-retention] [--skip-backlog] [--skip-erasure]
                                               [--skip-catchup] [--skip-dense] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_emit import database_url_for, emit_figure, raw_connection, resolve_admin_url, throwaway_database

from workdev_pipeline import catalog
from workdev_pipeline.demo import generate_events, generate_users
from workdev_pipeline.demo_loader import load_demo, store_users
from workdev_pipeline.events import to_json_object
from workdev_pipeline.governance.erasure import erase_users, verify_erasures
from workdev_pipeline.governance.reaggregation import reaggregate_erasures
from workdev_pipeline.governance.retention import apply_retention, verify_retention
from workdev_pipeline.governance.warehouse import LocalGovernedWarehouse
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.ingest.local_store import LocalEventFiles
from workdev_pipeline.migrate import migrate

SEED = 42
RETENTION_USERS = 2_000
RETENTION_YEARS_DAYS = 8 * 365 + 2
RETENTION_BAR_SECONDS = 10.0
EXPIRED_TARGET = 1_000_000
ERASURE_USERS, ERASURE_DAYS = 20_000, 30.0
DENSE_USERS, DENSE_DAYS = 2_000, 7.0
ERASURE_BAR_SECONDS = 2.0
CONSUMER = "local"
COPY_BATCH = 100_000
STORE_COLUMNS = ("event_id", "event_type", "event_category", "user_id", "entity_type", "entity_id", "event_data",
                 "metadata", "source", "timestamp", "session_id")
STORE_TYPES = ("uuid", "text", "text", "uuid", "text", "text", "jsonb", "jsonb", "text", "timestamptz", "uuid")


def log(message: str) -> None:
    print(f"[bench_governance] {message}", file=sys.stderr, flush=True)


def seconds_figure(name: str, runs: Sequence[float], *, events: int, bar: float | None = None,
                   **context: Any) -> dict[str, Any]:
    value = statistics.median(runs)
    figure: dict[str, Any] = {"figure": name, "value": round(value, 3), "unit": "s", "events": events,
                              "seconds": round(value, 3), "runs_seconds": [round(r, 3) for r in runs],
                              "statistic": f"median of {len(runs)} run(s)", **context}
    if bar is not None:
        figure["bar"] = bar
        figure["meets_bar"] = value <= bar
    return figure


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def governed(url: str, root: Path) -> LocalGovernedWarehouse:
    return LocalGovernedWarehouse(Ingestor(url, LocalEventFiles(root), consumer=CONSUMER))


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


def checkpoint(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def sweep(url: str, root: Path) -> None:
    outcome, seconds = timed(lambda: Ingestor(url, LocalEventFiles(root), consumer=CONSUMER).sweep(run_id="bench"))
    if outcome.status != "loaded":
        raise RuntimeError(f"the sweep ended {outcome.status}: {outcome.error}")
    log(f"swept {outcome.events_loaded:,} events into {len(outcome.days):,} day(s) in {seconds:.1f} s")


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
                      rounds: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    as_of = now - timedelta(days=1)  # the next day's run (as of now) is the steady state
    figures: list[dict[str, Any]] = []
    with throwaway_database(admin) as template, tempfile.TemporaryDirectory(prefix="wd-bench-gov-") as tmp:
        migrate(template)
        root = Path(tmp) / "template"
        log(f"{name}: {shape}")
        events = load_windows(template, windows, now)
        sweep(template, root)
        expired = expired_now(template, as_of)
        with psycopg.connect(template) as conn:
            partitions = conn.execute("SELECT count(*) FROM event_store_partitions()").fetchone()[0]
        log(f"{expired:,} of {events:,} events expired as of {as_of:%Y-%m-%d %H:%M}; {partitions} partitions")

        dry_runs = []
        for r in range(1, rounds + 1):
            checkpoint(template)
            report, seconds = timed(lambda: apply_retention(template, [governed(template, root)], as_of=as_of,
                                                            dry_run=True, run_id="bench"))
            dry_runs.append(seconds)
            log(f"round {r}/{rounds} dry run: {report.postgres_total:,} would go in {seconds:.2f} s")
        dry_total = report.postgres_total

        runs, daily, postgres_s, warehouse_s = [], [], [], []
        detail: dict[str, Any] = {}
        for r in range(1, rounds + 1):
            with clone(admin, template) as url:
                copy = Path(tmp) / f"round-{r}"
                shutil.copytree(root, copy, copy_function=os.link)
                checkpoint(url)
                warehouse = governed(url, copy)
                report, seconds = timed(lambda u=url, w=warehouse: apply_retention(u, [w], as_of=as_of,
                                                                                    run_id="bench"))
                runs.append(seconds)
                postgres_s.append(report.seconds["postgres"])
                warehouse_s.append(report.seconds[f"warehouse:{CONSUMER}"])
                held = report.warehouse(CONSUMER)
                if report.postgres_total != expired or report.postgres_total != dry_total:
                    raise RuntimeError(f"retention removed {report.postgres_total:,}, expected {expired:,}")
                detail = {"postgres_events": report.postgres_total, "postgres_by_category": report.postgres,
                          "warehouse_events": sum(held.events.values()), "partitions_dropped":
                          len(report.partitions_dropped), "partitions_trimmed": len(report.partitions_trimmed),
                          "warehouse_days_removed": len(held.days_removed),
                          "warehouse_days_rewritten": len(held.days_rewritten)}
                log(f"round {r}/{rounds}: {report.postgres_total:,} events gone in {seconds:.2f} s (PostgreSQL "
                    f"{report.seconds['postgres']:.2f} s: {len(report.partitions_dropped)} partitions dropped, "
                    f"{len(report.partitions_trimmed)} trimmed; warehouse {held.seconds:.2f} s: "
                    f"{len(held.days_removed):,} days removed, {len(held.days_rewritten):,} rewritten)")
                next_day, day_seconds = timed(lambda u=url, w=warehouse: apply_retention(u, [w], run_id="bench"))
                daily.append(day_seconds)
                log(f"round {r}/{rounds}: the next day's run removed {next_day.postgres_total:,} in "
                    f"{day_seconds:.2f} s")
                found = verify_retention(url, [warehouse])
                if not found.passed:
                    raise RuntimeError(f"expired events remain: {found}")
                shutil.rmtree(copy)
    context = {"shape": shape, "store_events": events, "as_of": as_of.isoformat()}
    figures.append(seconds_figure(f"{name}_seconds", runs, events=expired, bar=RETENTION_BAR_SECONDS, **context,
                                  postgres_seconds=[round(s, 3) for s in postgres_s],
                                  warehouse_seconds=[round(s, 3) for s in warehouse_s], **detail,
                                  path="apply_retention(as_of) on a fresh clone: PostgreSQL, then the local warehouse"))
    figures.append({"figure": f"{name}_events_per_s", "value": round(expired / statistics.median(runs), 1),
                    "unit": "events/s", "events": expired, "seconds": round(statistics.median(runs), 3)})
    figures.append(seconds_figure(f"{name}_dry_run_seconds", dry_runs, events=dry_total, **context,
                                  path="apply_retention(as_of, dry_run=True): counts only"))
    figures.append(seconds_figure(f"{name}_next_day_seconds", daily, events=next_day.postgres_total,
                                  path="the next day's run (as of now) right after: the 02:00 job's steady state"))
    return figures


# -- erasure ----------------------------------------------------------------------------------------------------

def users_by_activity(url: str) -> list[tuple[str, int, int]]:
    """(user_id, events, days) of every user, fewest events first."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT user_id::text, count(*), count(DISTINCT (\"timestamp\" AT TIME ZONE 'UTC')::date) "
            "FROM platform_event_store WHERE user_id IS NOT NULL GROUP BY 1 ORDER BY 2, 1").fetchall()


def measure_erasure(admin: str, events: int, users: int, days: float, rounds: int, name: str,
                    rebuild_alternative: bool) -> list[dict[str, Any]]:
    with throwaway_database(admin) as url, tempfile.TemporaryDirectory(prefix="wd-bench-gov-") as tmp:
        migrate(url)
        root = Path(tmp) / "warehouse"
        log(f"{name}: {events:,} demo events, {users:,} users over {days:g} days (seed {SEED})")
        report = load_demo(url, users=users, events=events, days=days, seed=SEED)
        log(f"  loaded in {report.seconds:.1f} s")
        sweep(url, root)
        ranked = users_by_activity(url)
        middle = len(ranked) // 2
        chosen = ranked[middle:middle + rounds]
        runs, postgres_s, warehouse_s, rewritten, rebuilds, reaggregations = [], [], [], [], [], []
        for r, (user_id, user_events, user_days) in enumerate(chosen, 1):
            checkpoint(url)
            warehouse = governed(url, root)
            batch, seconds = timed(lambda u=user_id, w=warehouse: erase_users(url, [u], [w], requested_by="bench"))
            (result,) = batch.results
            refresh = batch.refreshes[0]
            if result.status != "erased" or result.store_rows != user_events:
                raise RuntimeError(f"erasure of {user_id}: {result.summary}")
            runs.append(seconds)
            postgres_s.append(batch.seconds["postgres"])
            warehouse_s.append(batch.seconds[f"warehouse:{CONSUMER}"])
            rewritten.append(sum(refresh.days.values()))
            log(f"round {r}/{rounds}: a user with {user_events} events on {user_days} day(s) erased in "
                f"{seconds:.2f} s (PostgreSQL {batch.seconds['postgres']:.2f} s incl. the warehouse scan, warehouse "
                f"{refresh.seconds:.2f} s: {len(refresh.days)} day(s), {rewritten[-1]:,} rows rewritten)")
            again, reaggregation_seconds = timed(lambda: reaggregate_erasures(url, LocalEventFiles(root)))
            reaggregations.append(reaggregation_seconds)
            log(f"  then its {again.periods_recomputed} closed aggregation period(s) recomputed in "
                f"{reaggregation_seconds:.2f} s")
            if rebuild_alternative and r == 1:
                ingestor, days_touched = Ingestor(url, LocalEventFiles(root), consumer=CONSUMER), sorted(refresh.days)
                _, rebuild_seconds = timed(lambda i=ingestor, d=days_touched: i.rebuild(d))
                rebuilds.append(rebuild_seconds)
                log(f"  the alternative, rebuilding those {len(refresh.days)} day(s) from PostgreSQL: "
                    f"{rebuild_seconds:.2f} s")
        found = verify_erasures(url, [governed(url, root)])
        if found.errors:
            raise RuntimeError(f"erasure left traces: {found.errors[:5]}")
    figures = [seconds_figure(
        f"{name}_seconds", runs, events=events, bar=ERASURE_BAR_SECONDS,
        shape=f"demo, {users:,} users, {events:,} events over {days:g} days, swept; users of median activity",
        user_events=[c[1] for c in chosen], user_days=[c[2] for c in chosen], warehouse_rows_rewritten=rewritten,
        postgres_seconds=[round(s, 3) for s in postgres_s], warehouse_seconds=[round(s, 3) for s in warehouse_s],
        path="erase_users([user]): PostgreSQL (anonymise, queue, dead letter, profile, ledger) + warehouse refresh")]
    figures.append(seconds_figure(f"{name}_reaggregation_seconds", reaggregations, events=events,
                                  path="reaggregate_erasures() after each round's erasure: the closed hours, days "
                                       "and weeks of the user's events recomputed (the Dagster job's next step)"))
    if rebuilds:
        figures.append(seconds_figure("erasure_rebuild_alternative_seconds", rebuilds, events=events,
                                      warehouse_rows_rewritten=rewritten[:1],
                                      path="Ingestor.rebuild(the days of round 1's user): re-extracting whole days "
                                           "from PostgreSQL instead of refreshing the user's rows"))
    return figures


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
    parser.add_argument("--skip-backlog", action="store_true", help="leave out the 8-year backlog retention case")
    parser.add_argument("--skip-catchup", action="store_true", help="leave out the 5-week catch-up retention case")
    parser.add_argument("--admin-url", help="superuser URL (default: $WORKDEV_BENCH_ADMIN_URL, else local)")
    args = parser.parse_args(argv)
    if min(args.rounds, args.retention_events, args.erasure_events) < 1:
        parser.error("--rounds and the event counts must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    admin = resolve_admin_url(args.admin_url)
    if not args.skip_retention:
        for name, (windows, shape) in reversed(retention_scenarios(args.retention_events).items()):
            if (name == "retention_backlog" and args.skip_backlog) or (name == "retention" and args.skip_catchup):
                continue
            for figure in measure_retention(admin, name, windows, shape, args.rounds):
                emit_figure(figure)
    if not args.skip_erasure:
        for figure in measure_erasure(admin, args.erasure_events, ERASURE_USERS, ERASURE_DAYS, args.rounds,
                                      "erasure", rebuild_alternative=True):
            emit_figure(figure)
        if not args.skip_dense:
            for figure in measure_erasure(admin, args.erasure_events, DENSE_USERS, DENSE_DAYS, args.rounds,
                                          "erasure_dense", rebuild_alternative=False):
                emit_figure(figure)
    log(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
