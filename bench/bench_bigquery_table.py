"""Benchmark the BigQuery table's load path through the real google-cloud-bigquery client, against the local
emulator (``bqemulator``, started as in the tests: ``tests/bq_emulator.py``).

Writes ``--rows`` synthetic warehouse rows (the Redshift benchmark's rows: demo-like payloads, both structs
filled) to Parquet files of ``--file-rows`` rows, then, for each load mode (``file_uri``: load jobs reading
``file://`` URIs, what the table uses with an emulator; ``upload``: load_table_from_file, what real BigQuery
gets), median of ``--rounds``:

* ``bigquery_merge_rows_per_s[mode]``: ``merge_files`` of all the files into an empty day (staging table,
  one load job for all the files with ``file_uri``, one per file with ``upload``, the MERGE, staging dropped);
* ``bigquery_remerge_rows_per_s[mode]``: the same files merged again (every row matched and updated);
* ``bigquery_replace_rows_per_s[mode]``: ``replace_day`` with the same files;
* ``bigquery_fill_rows_per_s[mode]``: ``fill_days`` of the same files into the emptied day (what a delivery from
  scratch does with the days the table holds nothing of: one INSERT, no MERGE).

What it says about BigQuery: only the client side (hashing the files for job ids, uploads, the number of API
calls per load) carries over; the server side is DuckDB's. Prints one JSON line per figure. Usage::

    .venv/bin/python bench/bench_bigquery_table.py [--rows 50000] [--file-rows 25000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_redshift_table import DAY, synthetic_rows
from tests.bq_emulator import start_bqemulator
from workdev_pipeline.warehouses.bigquery import BigQueryEventTable, emulator_client


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(figure: str, value: float, unit: str, rows: int, seconds: float, runs: list[float]) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 1), "unit": unit, "rows": rows,
                      "seconds": round(seconds, 4), "runs_seconds": [round(r, 4) for r in runs]}), flush=True)


def timed(rounds: int, before: Callable[[], None], run: Callable[[], int], rows: int) -> tuple[float, list[float]]:
    runs = []
    for _ in range(rounds):
        before()
        started = time.perf_counter()
        loaded = run()
        runs.append(time.perf_counter() - started)
        assert loaded == rows, (loaded, rows)
    return statistics.median(runs), runs


def bench_mode(table: BigQueryEventTable, mode: str, paths: list[Path], rows: int, rounds: int) -> None:
    table.ensure_table()
    loads = iter(range(1_000_000))

    def empty() -> None:
        table.replace_day(DAY, [], "bench-empty")

    def merge() -> int:
        return table.merge_files(DAY, paths, f"bench-{next(loads)}")

    def replace() -> int:
        return table.replace_day(DAY, paths, f"bench-{next(loads)}")

    def fill() -> int:
        return table.fill_days({DAY: paths}, f"bench-{next(loads)}")[DAY]

    try:
        for figure, before, run in (("merge", empty, merge), ("remerge", lambda: None, merge),
                                    ("replace", lambda: None, replace), ("fill", empty, fill)):
            seconds, runs = timed(rounds, before, run, rows)
            emit(f"bigquery_{figure}_rows_per_s[{mode}]", rows / seconds, "rows/s", rows, seconds, runs)
        assert sum(table.day_counts(DAY).values()) == rows
    finally:
        table.client.delete_dataset(table.dataset, delete_contents=True, not_found_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--file-rows", type=int, default=25_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wd_bench_bq_") as tmp:
        paths = []
        for start in range(0, args.rows, args.file_rows):
            path = Path(tmp) / f"part-{start:08d}.parquet"
            pq.write_table(synthetic_rows(start, min(args.file_rows, args.rows - start)), path, compression="zstd")
            paths.append(path)
        log(f"{args.rows:,} rows in {len(paths)} files, {sum(p.stat().st_size for p in paths) / 1e6:.1f} MB")

        emulator = start_bqemulator(Path(tmp) / "emulator")
        try:
            client = emulator_client(emulator.endpoint, emulator.project)
            for mode, local in (("file_uri", True), ("upload", False)):
                bench_mode(BigQueryEventTable(client, f"bench_{uuid.uuid4().hex[:8]}", local_file_uris=local),
                           mode, paths, args.rows, args.rounds)
            client.close()
        finally:
            emulator.stop()


if __name__ == "__main__":
    main()
