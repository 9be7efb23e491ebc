"""Benchmark the lake's Parquet settings (``lake/parquet_settings.py``): the sweep's write and a day's aggregation
read, for the chosen settings and the alternatives, side by side in one run.

No database. Generates one UTC day of realistic demo events (``workdev_pipeline.demo``: 2,000 users, seed 42;
device info and geo location enriched as the sweep does; ``ingested_at`` one instant per 30-second sweep) as the
sweep's warehouse batches, before any timing. Then, after one untimed warm-up, in ``--rounds`` interleaved rounds
(the variants' order rotates each round), each variant:

* **writes** the day into a fresh lake with ``EventLake.append`` (the sweep's writer, ``lake/day_files.py``, with
  the variant's ``FileSettings``; one commit): wall seconds, process CPU seconds (every thread), bytes of the data
  files;
* **encodes** the same rows alone: ``pyarrow.parquet.write_table`` of the day (all batches, as one table) into
  memory with the variant's options -- the Parquet part of the write, without the day split, the staging and the
  commit around it (one thread: wall = CPU);
* **reads** it with ``Aggregator.compute`` of the day's 24 hours (the aggregation assets' reader: the snapshot's
  Arrow dataset in DuckDB, exact distinct users and sessions, amounts): wall and CPU seconds.

Prints one JSON line per variant and figure on stdout (medians of the rounds, every run listed, ratio to the chosen
settings), then per column (``column_dictionary``): the column alone encoded with and without a dictionary
(interleaved, the same number of rounds; CPU seconds and bytes, which one ``FILE_SETTINGS`` chose), and the load
average;
progress goes to stderr. Usage::

    .venv/bin/python bench/bench_parquet.py [--events N] [--rounds N] [--variant NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from workdev_pipeline.aggregations.engine import Aggregator
from workdev_pipeline.aggregations.periods import HOURLY
from workdev_pipeline.catalog import EVENT_TYPES, EVENT_TYPES_BY_NAME
from workdev_pipeline.demo import generate_events, generate_users
from workdev_pipeline.enrichment import GeoLocator, device_info
from workdev_pipeline.ingest.schema import warehouse_table
from workdev_pipeline.lake.events import LAKE_SCHEMA, PARTITION_COLUMN, EventLake, to_lake
from workdev_pipeline.lake.location import LakeLocation
from workdev_pipeline.lake.parquet_settings import FILE_SETTINGS, FileSettings

DAY = date(2026, 11, 2)
USERS = 2_000
SEED = 42
BATCH_ROWS = 50_000
SWEEP_SECONDS = 30
#: Every top-level column but the structs (a log statistic of a struct is not a min/max) and the partition.
ALL_FLAT_COLUMNS = tuple(f.name for f in LAKE_SCHEMA if not pa.types.is_struct(f.type) and f.name != PARTITION_COLUMN)
VARIANTS: dict[str, FileSettings] = {
    "chosen": FILE_SETTINGS,
    "dictionary_everywhere": replace(FILE_SETTINGS, plain_columns=()),
    "plain_five": replace(FILE_SETTINGS,
                          plain_columns=("event_id", "timestamp", "session_id", "entity_id", "event_data")),
    "no_dictionary": replace(FILE_SETTINGS, plain_columns=None),
    "compressed_everywhere": replace(FILE_SETTINGS, uncompressed_columns=()),
    "zstd_3": replace(FILE_SETTINGS, compression_level=3),
    "snappy": replace(FILE_SETTINGS, compression="snappy", compression_level=None),
    "lz4": replace(FILE_SETTINGS, compression="lz4", compression_level=None),
    "statistics_everywhere": replace(FILE_SETTINGS, stats_columns=ALL_FLAT_COLUMNS),
    "row_groups_32ki": replace(FILE_SETTINGS, row_group_rows=32 * 1024),
    "row_groups_1mi": replace(FILE_SETTINGS, row_group_rows=1024 * 1024),
}


def log(message: str) -> None:
    print(f"[bench_parquet] {message}", file=sys.stderr, flush=True)


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def demo_day(events: int) -> list[pa.Table]:
    """``events`` demo events of ``DAY`` as the sweep's enriched warehouse batches (``BATCH_ROWS`` each)."""
    midnight = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    users = generate_users(USERS, seed=SEED, now=midnight)
    roles = {u.user_id: (u.role, u.signed_up_at) for u in users}
    columns: dict[str, list[Any]] = {name: [] for name in (
        "event_id", "event_type", "event_category", "user_id", "user_role", "user_tenure_days", "entity_type",
        "entity_id", "event_data", "metadata", "source", "timestamp", "session_id")}
    agents: list[str | None] = []
    ips: list[str | None] = []
    end = midnight + timedelta(days=1)
    for event in generate_events(users, events, seed=SEED, now=end - timedelta(microseconds=1), days=1.0):
        user = event.get("user_id")
        role, signed_up = roles.get(user, (None, None))
        stamp = event["timestamp"]
        meta = event.get("metadata") or {}
        columns["event_id"].append(str(event["event_id"]))
        columns["event_type"].append(event["event_type"])
        columns["event_category"].append(EVENT_TYPES_BY_NAME[event["event_type"]].category.name)
        columns["user_id"].append(None if user is None else str(user))
        columns["user_role"].append(role)
        columns["user_tenure_days"].append(None if signed_up is None else (stamp - signed_up).days)
        columns["entity_type"].append(event.get("entity_type"))
        columns["entity_id"].append(event.get("entity_id"))
        columns["event_data"].append(orjson.dumps(event["event_data"]).decode())
        columns["metadata"].append(orjson.dumps(meta).decode())
        columns["source"].append(event.get("source"))
        columns["timestamp"].append(stamp)
        columns["session_id"].append(None if event.get("session_id") is None else str(event["session_id"]))
        agents.append(meta.get("user_agent"))
        ips.append(meta.get("ip_address"))
    stamps = pa.array(columns.pop("timestamp"), pa.timestamp("us", tz="UTC"))
    batch = pa.RecordBatch.from_pydict({**{k: pa.array(v, pa.string()) for k, v in columns.items()
                                           if k != "user_tenure_days"},
                                        "user_tenure_days": pa.array(columns["user_tenure_days"], pa.int32()),
                                        "timestamp": stamps})
    seconds = [int((s - midnight).total_seconds()) // SWEEP_SECONDS * SWEEP_SECONDS + SWEEP_SECONDS
               for s in stamps.to_pylist()]
    ingested = pa.array([midnight + timedelta(seconds=s) for s in seconds], pa.timestamp("us", tz="UTC"))
    geo = GeoLocator.from_env()
    batches = []
    for start in range(0, batch.num_rows, BATCH_ROWS):
        piece = batch.slice(start, BATCH_ROWS)
        rows = len(piece)
        batches.append(warehouse_table(piece, geo.locate(ips[start:start + rows]),
                                       device_info(agents[start:start + rows]), ingested.slice(start, rows)))
    return batches


def measured(action: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, process CPU seconds, result) of ``action``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def run_variant(settings: FileSettings, batches: list[pa.Table], day_rows: pa.Table, work: Path) -> dict[str, Any]:
    """One write, one encoding of ``day_rows`` (the day's file rows) and one read of the day with ``settings``."""
    options = settings.pyarrow_options(day_rows.schema)
    _, encode_cpu, _ = measured(lambda: pq.write_table(day_rows, pa.BufferOutputStream(), **options))
    root = work / "lake"
    shutil.rmtree(root, ignore_errors=True)
    lake = EventLake(LakeLocation.from_env(str(root)), file_settings=settings)
    write_wall, write_cpu, commit = measured(lambda: lake.append(batches, app_id="bench", version=1))
    midnight = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    fields = {t.name: t.amount_field for t in EVENT_TYPES if t.amount_field}
    aggregator = Aggregator(lake)
    read_wall, read_cpu, (rows, _) = measured(
        lambda: aggregator.compute(HOURLY, midnight, midnight + timedelta(days=1), fields))
    events = sum(b.num_rows for b in batches)
    counted = sum(rows.column("total_events").to_pylist())
    if counted != events:
        raise RuntimeError(f"the day's aggregation counted {counted} events of {events}")
    return {"write_seconds": write_wall, "write_cpu_seconds": write_cpu, "encode_cpu_seconds": encode_cpu,
            "file_bytes": commit.bytes_written,
            "files": commit.files, "read_seconds": read_wall, "read_cpu_seconds": read_cpu}


def column_dictionaries(day_rows: pa.Table, rounds: int) -> list[dict[str, Any]]:
    """Per top-level column: the column alone encoded with the chosen settings, with and without a dictionary
    (interleaved, ``rounds`` each): median CPU seconds and bytes of each, and which one the settings chose."""
    lines = []
    for name in day_rows.column_names:
        column = day_rows.select([name])
        cpu: dict[bool, list[float]] = {True: [], False: []}
        size: dict[bool, int] = {}
        for r in range(rounds):
            for dictionary in (True, False) if r % 2 == 0 else (False, True):
                options = replace(FILE_SETTINGS, plain_columns=() if dictionary else (name,)).pyarrow_options(
                    column.schema)
                sink = pa.BufferOutputStream()
                _, seconds, _ = measured(lambda c=column, s=sink, o=options: pq.write_table(c, s, **o))
                cpu[dictionary].append(seconds)
                size[dictionary] = sink.getvalue().size
        on, off = statistics.median(cpu[True]), statistics.median(cpu[False])
        lines.append({"figure": "column_dictionary", "column": name, "dictionary_cpu_seconds": round(on, 4),
                      "plain_cpu_seconds": round(off, 4), "cpu_plain_to_dictionary": round(off / on, 3) if on else None,
                      "dictionary_bytes": size[True], "plain_bytes": size[False],
                      "bytes_plain_to_dictionary": round(size[False] / size[True], 3),
                      "chosen": "dictionary" if FILE_SETTINGS.dictionary(name) else "plain"})
    return lines


FIGURES = {"write_seconds": "s", "write_cpu_seconds": "CPU-s", "encode_cpu_seconds": "CPU-s", "file_bytes": "bytes",
           "read_seconds": "s",
           "read_cpu_seconds": "CPU-s"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS),
                        help="the variants to compare with the chosen settings (default: all)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = ["chosen", *[v for v in (args.variant or VARIANTS) if v != "chosen"]]
    loads = {"start": load_average()}
    started = time.perf_counter()
    log(f"generating {args.events:,} demo events of {DAY} ...")
    batches = demo_day(args.events)
    events = sum(b.num_rows for b in batches)
    day_rows = to_lake(pa.concat_tables(batches)).drop_columns([PARTITION_COLUMN])
    loads["generated"] = load_average()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    work = Path(tempfile.mkdtemp(prefix="wd_bench_parquet_"))
    try:
        run_variant(VARIANTS["chosen"], batches, day_rows, work)  # warm-up, untimed: imports, caches, DuckDB
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                result = run_variant(VARIANTS[name], batches, day_rows, work)
                runs[name].append(result)
                log(f"round {r + 1}/{args.rounds} {name}: write {result['write_seconds']:.2f} s "
                    f"({result['write_cpu_seconds']:.2f} CPU-s; encoding {result['encode_cpu_seconds']:.2f}), "
                    f"{result['file_bytes'] / 2**20:.1f} MiB, read "
                    f"{result['read_seconds']:.2f} s ({result['read_cpu_seconds']:.2f} CPU-s); load {load_average()}")
            loads[f"round_{r + 1}"] = load_average()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: {f: statistics.median(run[f] for run in runs[name]) for f in FIGURES} for name in names}
    common = {"events": events, "day": DAY.isoformat(), "rounds": args.rounds,
              "statistic": f"median of {args.rounds} interleaved rounds",
              "load": f"{events} demo events of one UTC day ({USERS} users, seed {SEED}), batches of {BATCH_ROWS}"}
    for name in names:
        settings = asdict(VARIANTS[name])
        for figure, unit in FIGURES.items():
            value, chosen = medians[name][figure], medians["chosen"][figure]
            emit({"figure": figure, "variant": name, "value": round(value, 3), "unit": unit,
                  "runs": [round(run[figure], 3) for run in runs[name]],
                  "ratio_to_chosen": round(value / chosen, 3) if chosen else None, "settings": settings,
                  "files": runs[name][-1]["files"], **common})
    for line in column_dictionaries(day_rows, args.rounds):
        emit(line | common)
    loads["end"] = load_average()
    emit({"figure": "load_average", "value": loads, "seconds": round(time.perf_counter() - started, 1)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
