"""Benchmark the Redshift table's INSERT load path (no S3) through the real redshift_connector.

Writes ``--rows`` synthetic warehouse rows (payloads of demo-like size: ~250 bytes of event_data, both
structs filled) to Parquet files of ``--file-rows`` rows, then into a throw-away database
``wd_bench_rs_<random>`` on the PostgreSQL stand-in (``tests/redshift_standin.py``, dialect "postgres"):

* ``redshift_insert_rows_per_s[batch_rows=N]``: ``merge_files`` of all the files (one transaction: staging,
  batched multi-row INSERTs, delete+insert merge), median of ``--rounds``, for each ``--batch-rows``;
* ``redshift_small_merges_rows_per_s``: ``--small-loads`` merges of 1,234 rows each on one connection (a
  sweep's typical day file: the driver's per-statement costs, amortized or not, show here);
* ``redshift_convert_rows_per_s``: the Python side alone (Parquet -> bound parameter tuples), no database.

What it says about Redshift: only the client side (conversion and the driver's encoding of ~16 parameters
per row) carries over; the server side is PostgreSQL's. Prints one JSON line per figure. Usage::

    .venv/bin/python bench/bench_redshift_table.py [--rows 100000] [--batch-rows 500 1000 2000] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from itertools import chain
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redshift_standin import RedshiftStandin, standin_connect
from workdev_pipeline.aggregations.amounts import event_amounts
from workdev_pipeline.enrichment import DEVICE_INFO_TYPE, GEO_LOCATION_TYPE
from workdev_pipeline.ingest.schema import JSON, WAREHOUSE_SCHEMA
from workdev_pipeline.warehouses.redshift import COLUMNS, RedshiftEventTable, _column_values

DAY = date(2024, 3, 10)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(figure: str, value: float, unit: str, rows: int, seconds: float) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 1), "unit": unit, "rows": rows,
                      "seconds": round(seconds, 4)}), flush=True)


def synthetic_rows(start: int, n: int) -> pa.Table:
    ids = range(start, start + n)
    noon = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    payload = ('{{"job_id": "job-{i}", "title": "Senior data engineer (remote)", "budget": {{"min": 40, "max": 90}}, '
               '"skills": ["python", "sql", "dagster"], "path": "/jobs/{i}", "referrer": "https://example.com/s?q={i}"}}')
    columns = {
        "event_id": pa.array([f"{i:08x}-0000-4000-8000-{i:012x}" for i in ids]),
        "event_type": pa.array([("page_view", "job_view", "proposal_submitted")[i % 3] for i in ids]),
        "event_category": pa.array(["interaction"] * n),
        "user_id": pa.array([f"{i % 2000:08x}-1111-4000-8000-000000000000" for i in ids]),
        "user_role": pa.array([("client", "freelancer")[i % 2] for i in ids]),
        "user_tenure_days": pa.array([i % 900 for i in ids], pa.int32()),
        "entity_type": pa.array(["job"] * n),
        "entity_id": pa.array([f"job-{i}" for i in ids]),
        "event_data": pa.ExtensionArray.from_storage(JSON, pa.array([payload.format(i=i) for i in ids])),
        "metadata": pa.ExtensionArray.from_storage(JSON, pa.array(
            [f'{{"ip_address": "203.0.113.{i % 250}", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"}}'
             for i in ids])),
        "source": pa.array(["web"] * n),
        "timestamp": pa.array([noon + timedelta(microseconds=i * 800) for i in ids], pa.timestamp("us", tz="UTC")),
        "session_id": pa.array([f"{i // 20:08x}-2222-4000-8000-000000000000" for i in ids]),
        "geo_location": pa.array([{"country": "DE", "region": "Berlin", "city": "Berlin"}] * n, GEO_LOCATION_TYPE),
        "device_info": pa.array([{"device_type": "desktop", "browser": "Firefox", "os": "Linux"}] * n,
                                DEVICE_INFO_TYPE),
        "ingested_at": pa.repeat(pa.scalar(datetime(2024, 3, 11, tzinfo=UTC), pa.timestamp("us", tz="UTC")), n),
    }
    columns["amount"], columns["amount_overflow"] = event_amounts(columns["event_type"], columns["event_data"])
    return pa.Table.from_arrays([columns[f.name] for f in WAREHOUSE_SCHEMA], schema=WAREHOUSE_SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--file-rows", type=int, default=50_000)
    parser.add_argument("--batch-rows", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small-loads", type=int, default=20)
    parser.add_argument("--admin-url", default=os.environ.get("WORKDEV_BENCH_ADMIN_URL",
                                                              "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wd_bench_rs_") as tmp:
        paths = []
        for start in range(0, args.rows, args.file_rows):
            path = Path(tmp) / f"part-{start:08d}.parquet"
            pq.write_table(synthetic_rows(start, min(args.file_rows, args.rows - start)), path)
            paths.append(path)
        log(f"{args.rows:,} rows in {len(paths)} files, {sum(p.stat().st_size for p in paths) / 1e6:.1f} MB")

        started = time.perf_counter()
        converted = 0
        for path in paths:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1000, columns=list(COLUMNS)):
                values = [_column_values(batch.column(i), name) for i, name in enumerate(COLUMNS)]
                converted += len(tuple(chain.from_iterable(zip(*values, strict=True)))) // len(COLUMNS)
        seconds = time.perf_counter() - started
        emit("redshift_convert_rows_per_s", converted / seconds, "rows/s", converted, seconds)

        name = f"wd_bench_rs_{secrets.token_hex(4)}"
        with psycopg.connect(args.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        standin = RedshiftStandin.in_front_of(args.admin_url).start()
        try:
            for batch_rows in args.batch_rows:
                table = RedshiftEventTable(lambda: standin_connect(standin, name, args.admin_url), dialect="postgres",
                                           batch_rows=batch_rows)
                table.ensure_table()
                times = []
                for _ in range(args.rounds):
                    table.replace_day(DAY, [], "bench-empty")
                    started = time.perf_counter()
                    loaded = table.merge_files(DAY, paths, "bench")
                    times.append(time.perf_counter() - started)
                    assert loaded == args.rows, loaded
                seconds = statistics.median(times)
                emit(f"redshift_insert_rows_per_s[batch_rows={table.batch_rows}]", args.rows / seconds, "rows/s",
                     args.rows, seconds)
                table.close()
            table = RedshiftEventTable(lambda: standin_connect(standin, name, args.admin_url), dialect="postgres")
            small = []
            for index in range(args.small_loads):
                path = Path(tmp) / f"small-{index}.parquet"
                pq.write_table(synthetic_rows(10_000_000 + index * 1_234, 1_234), path)
                small.append(path)
            started = time.perf_counter()
            for index, path in enumerate(small):
                table.merge_files(DAY, [path], f"small-{index}")
            seconds = time.perf_counter() - started
            emit("redshift_small_merges_rows_per_s", 1_234 * len(small) / seconds, "rows/s", 1_234 * len(small),
                 seconds)
            table.close()
        finally:
            standin.stop()
            with psycopg.connect(args.admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
