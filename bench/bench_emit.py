"""Benchmark event emission into the Postgres event store, against the raw binary-COPY ceiling.

Creates a throw-away database, migrates it, generates realistic demo events once, then measures:

* ``single_emit_events_per_s``: ``AnalyticsClient.track`` one event at a time (one commit each), 1 connection;
* ``emit_many_events_per_s`` / ``emit_many_supplied_ids_events_per_s`` / ``emit_many_supplied_v7_ids_events_per_s``:
  ``AnalyticsClient.emit_many`` in calls of 100,000 events (one transaction each), without producer ids, with
  random (UUIDv4) and with time-ordered (UUIDv7) producer-supplied ids;
* ``raw_binary_copy_rows_per_s``: the same rows ``COPY ... (FORMAT BINARY)`` straight into the event store
  (its partitions and every index);
* ``emit_many_ratio_to_raw_copy``: the first emit_many figure over the raw ceiling;
* ``emit_many_supplied_to_generated_ratio`` / ``emit_many_supplied_v7_to_generated_ratio``: emit_many with
  supplied ids (random / time-ordered) over emit_many with generated ids;
* ``emit_many_phases``: where emit_many's time goes (row preparation, staging COPY, ``emit_staged_events``).

Bulk figures are medians of interleaved runs (the machine is noisy). Prints one JSON line per figure on
stdout; progress goes to stderr. Usage::

    .venv/bin/python bench/bench_emit.py [--events N] [--single N] [--batch-size N] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Buffer, Dumper
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import Format

from workdev_pipeline.client import AnalyticsClient, chunked
from workdev_pipeline.demo import generate_events, generate_users
from workdev_pipeline.demo_loader import store_users
from workdev_pipeline.events import StagingCopy, new_event_id, to_json_object
from workdev_pipeline.migrate import migrate

LOCAL_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DIR = Path(__file__).resolve().parent
EMBEDDED_HOME = BENCH_DIR / ".workdev-bench"

USERS = 2_000
EVENT_DAYS = 2.0  # within existing partitions (migrate creates now-1 month .. now+3 months)
EVENTS_PER_CALL = 100_000  # one emit_many call / one raw COPY transaction
SINGLE_BAR = 2_500
EMIT_MANY_BAR = 30_000
RATIO_GOAL = 0.6
SUPPLIED_RATIO_GOAL = 0.9
SEED_NO_IDS, SEED_SUPPLIED_IDS, SEED_SINGLE, SEED_SUPPLIED_V7 = 101, 202, 303, 404

RAW_TABLE = "bench_raw_copy"  # the single-emit ceiling's index-free table
STORE = "platform_event_store"
RAW_COLUMNS = ("event_id", "event_type", "event_category", "user_id", "entity_type", "entity_id", "event_data",
               "metadata", "source", "timestamp", "session_id")
RAW_TYPES = ("uuid", "text", "text", "uuid", "text", "text", "jsonb", "jsonb", "text", "timestamptz", "uuid")
RAW_NOTE = ("binary COPY straight into platform_event_store (routed to its monthly partitions, every index of "
            "the store maintained, created_at/tx_id defaults evaluated); event_id, event_category and the JSON "
            "text of event_data/metadata are prepared before timing (jsonb sent as b'\\x01' + pre-serialised "
            "text by a custom binary dumper), so unlike emit_many the ceiling excludes Python-side JSON "
            "serialisation, validation, id generation and de-duplication")


def log(message: str) -> None:
    """Progress and information: stderr only (stdout carries the JSON figures)."""
    print(f"[bench_emit] {message}", file=sys.stderr, flush=True)


def emit_figure(figure: dict[str, Any]) -> None:
    """One JSON line on stdout."""
    print(json.dumps(figure, default=str), flush=True)


# -- database lifecycle ------------------------------------------------------------------------------------


def _reachable(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def resolve_admin_url(explicit: str | None) -> str:
    """``--admin-url``, else ``WORKDEV_BENCH_ADMIN_URL``, else the local server, else the embedded one."""
    url = explicit or os.environ.get("WORKDEV_BENCH_ADMIN_URL")
    if url:
        return url
    if _reachable(LOCAL_ADMIN_URL):
        return LOCAL_ADMIN_URL
    from workdev_pipeline.embedded import embedded_database_url

    log(f"{LOCAL_ADMIN_URL} does not answer: using the embedded server under {EMBEDDED_HOME}")
    return embedded_database_url(home=EMBEDDED_HOME, database="postgres")


def database_url_for(admin: str, name: str) -> str:
    params = conninfo_to_dict(admin)
    params.update(dbname=name)
    return make_conninfo(**params)


@contextmanager
def throwaway_database(admin: str) -> Iterator[str]:
    """A new database ``wd_bench_<pid>_<random>``, dropped on the way out (also on failure)."""
    name = f"wd_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    log(f"created database {name}")
    try:
        yield database_url_for(admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        log(f"dropped database {name}")


# -- data ------------------------------------------------------------------------------------------------


@dataclass
class Workload:
    """Everything generated once, before any timing."""

    no_ids: list[dict[str, Any]]
    supplied_ids: list[dict[str, Any]]
    supplied_v7_ids: list[dict[str, Any]]
    single: list[dict[str, Any]]
    raw_rows: list[tuple[Any, ...]] = field(default_factory=list)


def generate_workload(url: str, events: int, single: int) -> Workload:
    """Demo users (stored in ``user_profiles``) and three event sets of different seeds."""
    now = datetime.now(UTC).replace(microsecond=0)
    users = generate_users(USERS, now=now)
    with psycopg.connect(url) as conn:
        store_users(conn, users)

    def make(count: int, seed: int, keep_ids: bool) -> list[dict[str, Any]]:
        out = list(generate_events(users, count, days=EVENT_DAYS, seed=seed, now=now))
        if not keep_ids:
            for event in out:
                del event["event_id"]
        return out

    supplied_v7 = make(events, SEED_SUPPLIED_V7, True)
    for event in supplied_v7:  # a producer following docs/architecture.md: time-ordered UUIDv7 ids
        event["event_id"] = new_event_id()
    return Workload(no_ids=make(events, SEED_NO_IDS, False), supplied_ids=make(events, SEED_SUPPLIED_IDS, True),
                    supplied_v7_ids=supplied_v7, single=make(single, SEED_SINGLE, False))


def raw_rows(url: str, events: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows emit_many would store for ``events``, in ``RAW_COLUMNS`` order, JSON already serialised."""
    with psycopg.connect(url) as conn:
        categories = dict(conn.execute("SELECT event_type, event_category FROM event_schemas").fetchall())
    return [
        (new_event_id(), e["event_type"], categories[e["event_type"]], e["user_id"], e["entity_type"],
         e["entity_id"], to_json_object(e["event_data"], "event_data"), to_json_object(e["metadata"], "metadata"),
         e["source"], e["timestamp"], e["session_id"])
        for e in events
    ]


# -- runs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def timed(action: Callable[[], int]) -> Run:
    """Run ``action`` (which returns how many events it wrote) and time it."""
    started = time.perf_counter()
    count = action()
    return Run(count, time.perf_counter() - started)


def reset(url: str, *tables: str) -> None:
    """Truncate ``tables`` (as superuser) and checkpoint, so every run starts from the same state."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in tables)))
        conn.execute("CHECKPOINT")


def run_single(client: AnalyticsClient, events: Sequence[dict[str, Any]]) -> int:
    """One ``track`` (one ``emit_platform_event`` commit) per event; server-generated ids."""
    for e in events:
        client.track(e["event_type"], e["event_data"], entity_type=e["entity_type"], entity_id=e["entity_id"],
                     user_id=e["user_id"], event_id=None, timestamp=e["timestamp"], metadata=e["metadata"])
    return len(events)


def run_emit_many(client: AnalyticsClient, events: list[dict[str, Any]], batch_size: int) -> int:
    """``emit_many`` in calls of ``EVENTS_PER_CALL`` events; returns how many were inserted."""
    inserted = sum(client.emit_many(chunk, batch_size=batch_size).inserted
                   for chunk in chunked(events, EVENTS_PER_CALL))
    if inserted != len(events):
        raise RuntimeError(f"emit_many inserted {inserted} of {len(events)} events")
    return inserted


class PreSerialisedJsonbBinaryDumper(Dumper):
    """jsonb in binary COPY from JSON text that is already serialised (version byte 1, then UTF-8)."""

    format = Format.BINARY
    oid = psycopg.adapters.types["jsonb"].oid

    def dump(self, obj: Any) -> Buffer | None:
        return b"\x01" + obj.encode()


def raw_connection(url: str) -> psycopg.Connection:
    """A connection whose binary COPY takes pre-serialised JSON text for jsonb columns."""
    conn = psycopg.connect(url)
    conn.adapters.register_dumper(None, PreSerialisedJsonbBinaryDumper)
    return conn


def create_raw_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE platform_event_store INCLUDING DEFAULTS)")
                     .format(sql.Identifier(RAW_TABLE)))


def run_raw_copy(conn: psycopg.Connection, rows: list[tuple[Any, ...]], batch_size: int) -> int:
    """Binary COPY of ``rows`` into the store: one transaction per ``EVENTS_PER_CALL``, one COPY per
    ``batch_size``."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(STORE), sql.SQL(", ").join(sql.Identifier(c) for c in RAW_COLUMNS))
    written = 0
    for call in chunked(rows, EVENTS_PER_CALL):
        with conn.transaction(), conn.cursor() as cur:
            for batch in chunked(call, batch_size):
                with cur.copy(statement) as copy:
                    copy.set_types(list(RAW_TYPES))
                    for row in batch:
                        copy.write_row(row)
                written += cur.rowcount
    if written != len(rows):
        raise RuntimeError(f"raw COPY wrote {written} of {len(rows)} rows")
    return written


# -- figures ---------------------------------------------------------------------------------------------


def median_figure(name: str, runs: list[Run], **context: Any) -> dict[str, Any]:
    """A figure line for the median of ``runs`` (the individual runs included)."""
    return {
        "figure": name,
        "value": round(statistics.median(r.rate for r in runs), 1),
        "unit": "rows/s" if name.endswith("rows_per_s") else "events/s",
        "events": runs[0].events,
        "seconds": round(statistics.median(r.seconds for r in runs), 3),
        "runs_per_s": [round(r.rate, 1) for r in runs],
        "runs_seconds": [round(r.seconds, 3) for r in runs],
        "statistic": f"median of {len(runs)} interleaved runs",
        **context,
    }


def run_plain_inserts(conn: psycopg.Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    """The fsync ceiling of one-at-a-time emission: a plain INSERT of each row into the index-free raw table,
    autocommit (one commit each), same connection settings as the client."""
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(RAW_TABLE), sql.SQL(", ").join(sql.Identifier(c) for c in RAW_COLUMNS),
        sql.SQL(", ").join(sql.Placeholder() * len(RAW_COLUMNS)))
    for row in rows:
        conn.execute(statement, row)
    return len(rows)


def measure_single(url: str, events: list[dict[str, Any]], rounds: int) -> list[dict[str, Any]]:
    """``track`` per event vs a plain autocommit INSERT of the same rows, interleaved in ``rounds``: on a
    machine whose commits are fsync-bound the plain INSERT is the ceiling, so the ratio is what to compare."""
    log(f"single: {len(events)} track() calls and as many plain INSERTs on one connection, {rounds} rounds")
    rows = raw_rows(url, events)
    runs: dict[str, list[Run]] = {"emit": [], "insert": []}
    with AnalyticsClient(url, max_connections=1, source="bench") as client, \
            psycopg.connect(url, autocommit=True) as plain:
        for r in range(1, rounds + 1):
            part = slice((r - 1) * len(events) // rounds, r * len(events) // rounds)
            runs["emit"].append(timed(lambda part=part: run_single(client, events[part])))
            runs["insert"].append(timed(lambda part=part: run_plain_inserts(plain, rows[part])))
            log(f"round {r}/{rounds} single: {runs['emit'][-1].rate:,.0f}/s, "
                f"plain INSERT {runs['insert'][-1].rate:,.0f}/s")
    common = {"connections": 1, "commits": "one per event"}
    emit = median_figure("single_emit_events_per_s", runs["emit"], **common, bar=SINGLE_BAR,
                         path="AnalyticsClient.track -> emit_platform_event, autocommit")
    emit["meets_bar"] = emit["value"] >= SINGLE_BAR
    plain_figure = median_figure("single_plain_insert_rows_per_s", runs["insert"], **common,
                                 path="INSERT of the same row into an index-free table, autocommit (fsync ceiling)")
    ratio = {"figure": "single_emit_ratio_to_plain_insert", "value": round(emit["value"] / plain_figure["value"], 3),
             "unit": "ratio", "events": emit["events"], "seconds": emit["seconds"],
             "numerator": emit["figure"], "ratio_to": plain_figure["figure"],
             "per_round": [round(a.rate / b.rate, 3) for a, b in zip(runs["emit"], runs["insert"], strict=True)]}
    return [emit, plain_figure, ratio]


def measure_bulk(url: str, work: Workload, batch_size: int, rounds: int) -> list[dict[str, Any]]:
    """Rounds of (emit_many without ids, with random ids, with UUIDv7 ids, raw COPY), each run from a truncated
    store and a CHECKPOINT. The order rotates from round to round (A B C D, B C D A, ...): the run right after
    the first reset of a round measures slower, so each path takes each position equally often when ``rounds``
    is a multiple of 4."""
    runs: dict[str, list[Run]] = {"no_ids": [], "ids": [], "v7_ids": [], "raw": []}
    with AnalyticsClient(url, max_connections=1, source="bench") as client, raw_connection(url) as raw:
        paths: list[tuple[str, Callable[[], int]]] = [
            ("no_ids", lambda: run_emit_many(client, work.no_ids, batch_size)),
            ("ids", lambda: run_emit_many(client, work.supplied_ids, batch_size)),
            ("v7_ids", lambda: run_emit_many(client, work.supplied_v7_ids, batch_size)),
            ("raw", lambda: run_raw_copy(raw, work.raw_rows, batch_size)),
        ]
        for r in range(1, rounds + 1):
            shift = (r - 1) % len(paths)
            for key, action in paths[shift:] + paths[:shift]:
                reset(url, STORE)
                run = timed(action)
                runs[key].append(run)
                log(f"round {r}/{rounds} {key}: {run.rate:,.0f}/s ({run.seconds:.2f} s)")
    common = {"batch_size": batch_size, "events_per_transaction": EVENTS_PER_CALL, "connections": 1}
    no_ids = median_figure("emit_many_events_per_s", runs["no_ids"], **common, event_ids="generated (key dropped)",
                           bar=EMIT_MANY_BAR)
    ids = median_figure("emit_many_supplied_ids_events_per_s", runs["ids"], **common,
                        event_ids="producer-supplied (random UUIDv4, duplicate check runs)", bar=EMIT_MANY_BAR)
    v7_ids = median_figure("emit_many_supplied_v7_ids_events_per_s", runs["v7_ids"], **common,
                           event_ids="producer-supplied (time-ordered UUIDv7, duplicate check runs)", bar=EMIT_MANY_BAR)
    raw = median_figure("raw_binary_copy_rows_per_s", runs["raw"], **common, note=RAW_NOTE)
    for figure in (no_ids, ids, v7_ids):
        figure["meets_bar"] = figure["value"] >= EMIT_MANY_BAR
    ratio = no_ids["value"] / raw["value"]
    ratio_figure = {"figure": "emit_many_ratio_to_raw_copy", "value": round(ratio, 3), "unit": "ratio",
                    "events": no_ids["events"], "seconds": no_ids["seconds"], "ratio_to": raw["figure"],
                    "numerator": no_ids["figure"], "goal": RATIO_GOAL, "meets_goal": ratio >= RATIO_GOAL,
                    "per_round": [round(a.rate / b.rate, 3) for a, b in zip(runs["no_ids"], runs["raw"], strict=True)],
                    **common}

    def supplied_ratio(name: str, key: str, figure: dict[str, Any]) -> dict[str, Any]:
        value = figure["value"] / no_ids["value"]
        return {"figure": name, "value": round(value, 3), "unit": "ratio", "events": figure["events"],
                "seconds": figure["seconds"], "numerator": figure["figure"], "ratio_to": no_ids["figure"],
                "goal": SUPPLIED_RATIO_GOAL, "meets_goal": value >= SUPPLIED_RATIO_GOAL,
                "per_round": [round(a.rate / b.rate, 3) for a, b in zip(runs[key], runs["no_ids"], strict=True)],
                **common}

    return [no_ids, ids, v7_ids, raw, ratio_figure,
            supplied_ratio("emit_many_supplied_to_generated_ratio", "ids", ids),
            supplied_ratio("emit_many_supplied_v7_to_generated_ratio", "v7_ids", v7_ids)]


def measure_phases(url: str, work: Workload, batch_size: int) -> dict[str, Any]:
    """emit_many's steps timed one after the other (no overlap), batch by batch, for both event sets: preparing
    the rows in Python, the binary COPY into the session's batch table, and ``emit_staged_events`` (validation,
    de-duplication and the insert). Seconds per 10,000 events, medians over the batches."""
    phases: dict[str, dict[str, float]] = {}
    with AnalyticsClient(url, max_connections=1, source="bench") as client, psycopg.connect(url) as conn:
        for key, events in (("generated_ids", work.no_ids), ("supplied_ids", work.supplied_ids)):
            reset(url, STORE)
            timings: dict[str, list[float]] = {"prepare": [], "staging_copy": [], "emit_staged_events": []}
            for position, chunk in enumerate(chunked(events, batch_size)):
                started = time.perf_counter()
                batch = client._prepare(chunk, position * batch_size)
                prepared = time.perf_counter()
                if batch.error is not None:
                    raise batch.error
                with conn.cursor() as cur:
                    StagingCopy(cur).write(batch.rows)
                    copied = time.perf_counter()
                    cur.execute("SELECT emit_staged_events(%s)", (key == "supplied_ids",))
                conn.commit()
                done = time.perf_counter()
                scale = 10_000 / len(chunk)
                for name, seconds in (("prepare", prepared - started), ("staging_copy", copied - prepared),
                                      ("emit_staged_events", done - copied)):
                    timings[name].append(seconds * scale)
            phases[key] = {name: round(statistics.median(values), 4) for name, values in timings.items()}
    return {"figure": "emit_many_phases", "value": phases["supplied_ids"]["emit_staged_events"],
            "unit": "seconds per 10,000 events", "events": len(work.no_ids), "seconds": None,
            "statistic": f"median over batches of {batch_size}, steps run one after the other (emit_many overlaps "
                         "the next batch's preparation with the database's work on this one)",
            "phases": phases}


# -- main ------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per bulk run (default 200,000)")
    parser.add_argument("--single", type=int, default=5_000, help="events emitted one at a time (default 5,000)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="emit_many / COPY batch size")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved bulk rounds (default 3)")
    parser.add_argument("--admin-url", help="superuser URL (default: $WORKDEV_BENCH_ADMIN_URL, else local)")
    args = parser.parse_args(argv)
    if min(args.events, args.single, args.batch_size, args.rounds) < 1:
        parser.error("--events, --single, --batch-size and --rounds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    admin = resolve_admin_url(args.admin_url)
    with throwaway_database(admin) as url:
        migrate(url)
        create_raw_table(url)
        log(f"generating {USERS} users and {2 * args.events + args.single:,} events")
        work = generate_workload(url, args.events, args.single)
        work.raw_rows = raw_rows(url, work.no_ids)
        for figure in measure_single(url, work.single, args.rounds):
            emit_figure(figure)
        for figure in measure_bulk(url, work, args.batch_size, args.rounds):
            emit_figure(figure)
        emit_figure(measure_phases(url, work, args.batch_size))
    log(f"done in {time.perf_counter() - started:.1f} s")
    return 0


#: Runs a script given as the first argument (the rest are its own), then prints the process's own peak RSS
#: (VmHWM) as a last JSON line: ``ru_maxrss`` of a child counts the parent's RSS at the fork.
WITH_PEAK_RSS = """
import json, runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"vm_hwm_kib": peak}), flush=True)
"""


if __name__ == "__main__":
    sys.exit(main())

