"""Benchmark the remote engines: the same 1,000,000-event backlog swept into the local warehouse, into BigQuery (the
real client against the bqemulator) and into Redshift (the real redshift-connector against PostgreSQL behind the
test stand-in), in one run, side by side.

For each engine, one ``Ingestor.sweep()`` of the whole backlog (demo traffic: 2,000 users, 7 days, seed 42) from
empty bookkeeping, with the engine's table wrapped in a timer, so the figure splits into:

* ``<engine>_sweep_events_per_s``: events loaded per second, end to end (extraction, validation, enrichment, the
  mirror's Parquet, the engine's loads, bookkeeping);
* ``<engine>_ratio_to_local``: that over the local warehouse's figure measured in the same run;
* ``<engine>_load_seconds``: time inside the engine's table (``ensure_table`` + ``merge_files``: upload/insert
  and merge), and ``<engine>_rest_seconds``: everything else (what the local warehouse also does);
* ``<engine>_rebuild_day_seconds``: ``Ingestor.rebuild([day])`` of one day (a load of one day is O(day): its
  statements are bounded by the day's timestamp range), with ``<engine>_rebuild_day_events``;
* ``<engine>_aggregations_day_seconds``: delivering one full day's hourly and daily aggregations (the rows of the
  local aggregation files, ``deliver_aggregations``) into the engine's ``event_aggregations``, beside
  ``local_aggregations_day_seconds``, the local rebuild of those periods (DuckDB over the day's files, PostgreSQL
  and the aggregation files) that the delivery follows.

The emulator and the stand-in are local stand-ins, not the services: the figures say what this code costs around
them (and where the time goes), not what BigQuery or Redshift would take. Prints one JSON line per figure on
stdout; progress on stderr. Usage::

    .venv/bin/python bench/bench_engines.py [--events N] [--engines bigquery,redshift] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: the emulator and the stand-in
import psycopg
from bench_emit import emit_figure, resolve_admin_url, throwaway_database
from bench_ingest import load_events

from workdev_pipeline.aggregations.delivery import deliver_aggregations
from workdev_pipeline.aggregations.engine import Aggregator
from workdev_pipeline.aggregations.files import AggregateFiles
from workdev_pipeline.aggregations.periods import DAILY, HOURLY
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.ingest.local_store import LocalEventFiles
from workdev_pipeline.migrate import migrate
from workdev_pipeline.warehouses.remote import RemoteAggregationTable, RemoteEventTable


def log(message: str) -> None:
    print(f"[bench_engines] {message}", file=sys.stderr, flush=True)


class TimedTable:
    """A remote table whose loading calls are timed (everything else passes through)."""

    def __init__(self, table: RemoteEventTable) -> None:
        self.table = table
        self.engine = table.engine
        self.transient_errors = table.transient_errors
        self.seconds = 0.0
        self.calls = 0

    def _timed(self, name: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return getattr(self.table, name)(*args)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1

    def ensure_table(self) -> None:
        self._timed("ensure_table")

    def merge_files(self, day: date, paths: Sequence[Path], load_id: str) -> int:
        return self._timed("merge_files", day, paths, load_id)

    def replace_day(self, day: date, paths: Sequence[Path], load_id: str) -> int:
        return self._timed("replace_day", day, paths, load_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.table, name)


def bigquery_table(tmp: Path) -> tuple[RemoteEventTable, Any]:
    from tests.bq_emulator import start_bqemulator
    from workdev_pipeline.warehouses.bigquery import BigQueryEventTable, emulator_client

    emulator = start_bqemulator(tmp / "bq")
    table = BigQueryEventTable(emulator_client(emulator.endpoint, emulator.project), f"bench_{secrets.token_hex(3)}")
    return table, emulator.stop


def redshift_table(admin_url: str, url: str) -> tuple[RemoteEventTable, Any]:
    from tests.redshift_standin import RedshiftStandin, standin_connect
    from workdev_pipeline.warehouses.redshift import RedshiftEventTable

    standin = RedshiftStandin.in_front_of(admin_url).start()
    database = str(conninfo_to_dict(url)["dbname"])
    table = RedshiftEventTable(lambda: standin_connect(standin, database, admin_url), schema="redshift_wh",
                               dialect="postgres")
    return table, standin.stop


def aggregation_table(table: RemoteEventTable) -> RemoteAggregationTable:
    """The engine's ``event_aggregations`` beside its events table (same client or connection)."""
    if table.engine == "bigquery":
        from workdev_pipeline.warehouses.bigquery_aggregations import BigQueryAggregationTable

        return BigQueryAggregationTable(table.client, table.dataset)
    from workdev_pipeline.warehouses.redshift_aggregations import RedshiftAggregationTable

    return RedshiftAggregationTable(table._connect, schema=table.schema, dialect=table.dialect)


def aggregate_day(url: str, files: LocalEventFiles, start: datetime) -> tuple[float, int]:
    """The local hourly + daily rebuild of the day starting at ``start``: (seconds, rows written)."""
    aggregator = Aggregator(files)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        rows = sum(aggregator.rebuild(conn, granularity, start, start + timedelta(days=1)).rows_written
                   for granularity in (HOURLY, DAILY))
    return time.perf_counter() - started, rows


def deliver_day(files: LocalEventFiles, table: RemoteAggregationTable, start: datetime) -> tuple[float, int]:
    """The day's hourly + daily aggregations into the engine: (seconds, rows)."""
    aggregates = AggregateFiles(files.root)
    started = time.perf_counter()
    rows = sum(deliver_aggregations(aggregates, table, granularity, start, start + timedelta(days=1)).rows
               for granularity in (HOURLY, DAILY))
    return time.perf_counter() - started, rows


def sweep(url: str, root: Path, consumer: str, remote: TimedTable | None) -> tuple[Ingestor, float, int]:
    ingestor = Ingestor(url, LocalEventFiles(root), consumer=consumer, remote=remote)
    started = time.perf_counter()
    outcome = ingestor.sweep(run_id="bench")
    seconds = time.perf_counter() - started
    if outcome.status != "loaded":
        raise RuntimeError(f"{consumer} sweep ended {outcome.status}: {outcome.error}")
    return ingestor, seconds, outcome.events_loaded


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--engines", default="bigquery,redshift")
    parser.add_argument("--admin-url", default=None)
    args = parser.parse_args(argv)
    admin = resolve_admin_url(args.admin_url)
    engines = [e for e in args.engines.split(",") if e]
    with throwaway_database(admin) as url, tempfile.TemporaryDirectory(prefix="bench_engines_") as tmp_dir:
        tmp = Path(tmp_dir)
        migrate(url)
        load_events(url, args.events, days=7.0)
        _, local_seconds, local_events = sweep(url, tmp / "local", "local", None)
        local_rate = local_events / local_seconds
        log(f"local: {local_events:,} events in {local_seconds:.1f} s")
        emit_figure({"name": "local_sweep_events_per_s", "value": round(local_rate), "unit": "events/s",
                     "events": local_events, "seconds": round(local_seconds, 2)})
        local_files = LocalEventFiles(tmp / "local")
        full_day = sorted(local_files.days())[-2]  # the last day is partial
        day_start = datetime.combine(full_day, clock(), tzinfo=UTC)
        aggregation_seconds, aggregation_rows = aggregate_day(url, local_files, day_start)
        emit_figure({"name": "local_aggregations_day_seconds", "value": round(aggregation_seconds, 2), "unit": "s",
                     "rows": aggregation_rows, "day": full_day.isoformat()})
        for engine in engines:
            table, stop = bigquery_table(tmp) if engine == "bigquery" else redshift_table(admin, url)
            try:
                timed = TimedTable(table)
                ingestor, seconds, events = sweep(url, tmp / engine, engine, timed)
                rate = events / seconds
                log(f"{engine}: {events:,} events in {seconds:.1f} s ({timed.seconds:.1f} s in the engine's table)")
                emit_figure({"name": f"{engine}_sweep_events_per_s", "value": round(rate), "unit": "events/s",
                             "events": events, "seconds": round(seconds, 2), "loads": timed.calls})
                emit_figure({"name": f"{engine}_ratio_to_local", "value": round(rate / local_rate, 3),
                             "unit": "ratio", "note": "same backlog, same run"})
                emit_figure({"name": f"{engine}_load_seconds", "value": round(timed.seconds, 2), "unit": "s",
                             "note": "inside the engine's table: create/evolve, upload or insert, merge"})
                emit_figure({"name": f"{engine}_rest_seconds", "value": round(seconds - timed.seconds, 2),
                             "unit": "s", "note": "extraction, enrichment, mirror Parquet, bookkeeping"})
                day = max(ingestor.files.days())
                timed.seconds = 0.0
                started = time.perf_counter()
                outcome = ingestor.rebuild([day], run_id="bench")
                emit_figure({"name": f"{engine}_rebuild_day_seconds", "value": round(time.perf_counter() - started, 2),
                             "unit": "s", "day_events": outcome.events_loaded,
                             "load_seconds": round(timed.seconds, 2)})
                aggregations = aggregation_table(table)
                seconds, rows = deliver_day(local_files, aggregations, day_start)
                log(f"{engine}: the day's {rows:,} aggregation rows delivered in {seconds:.2f} s")
                emit_figure({"name": f"{engine}_aggregations_day_seconds", "value": round(seconds, 2), "unit": "s",
                             "rows": rows, "local_rebuild_seconds": round(aggregation_seconds, 2),
                             "note": "hourly + daily of one day, after the local rebuild"})
            finally:
                table.close()
                stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
