"""Benchmark the remote engines fed from the lake: one 1,000,000-event backlog swept into the lake (the pipeline's
one sweep: extraction, validation, enrichment, one Delta commit), then delivered from the lake into BigQuery (the
real client against the bqemulator) and Redshift (the real redshift-connector against PostgreSQL behind the test
stand-in), in one run, side by side.

* ``lake_sweep_events_per_s``: ``Ingestor.sweep()`` of the backlog into the lake (the reference);
* ``<engine>_delivery_events_per_s``: the engine's first delivery of that lake version (``LakeDelivery.deliver``:
  every day replaced from the lake's files), end to end -- planning, the engine's loads, bookkeeping;
* ``<engine>_ratio_to_sweep``: that over the sweep's figure, same run (BigQuery's bar: >= 0.6);
* ``<engine>_load_seconds`` / ``<engine>_rest_seconds``: time inside the engine's table (``ensure_table``,
  ``replace_day``/``merge_files``: load jobs or INSERT batches, the statement that applies them) / everything
  else (the lake's snapshot and log, PostgreSQL's lock and record);
* ``<engine>_incremental_seconds``: the next delivery after a sweep of ``--increment`` new events (the added files
  merged into their days), what the sensor's deliveries cost in steady state;
* ``<engine>_replace_day_seconds``: replacing one full day from the lake (the table asset's partition), with the
  whole backlog in the table (its statements are bounded by the day);
* ``<engine>_after_compaction_seconds``: the delivery after the lake's compaction of every day (same rows in new
  files: nothing to load).

The emulator and the stand-in are local stand-ins, not the services: the figures say what this code costs around
them (and where the time goes), not what BigQuery or Redshift would take. Prints one JSON line per figure on
stdout; progress on stderr. Usage::

    .venv/bin/python bench/bench_engines.py [--events N] [--increment N] [--engines bigquery,redshift]
"""

from __future__ import annotations

import argparse
import resource
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: the emulator and the stand-in
from bench_emit import emit_figure, resolve_admin_url, throwaway_database
from bench_ingest import SEED, USERS, load_events

from workdev_pipeline.demo_loader import load_demo
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake import EventLake, LakeLocation
from workdev_pipeline.lake.delivery import LakeDelivery
from workdev_pipeline.migrate import migrate
from workdev_pipeline.warehouses.remote import RemoteEventTable, Source


def log(message: str) -> None:
    print(f"[bench_engines] {message}", file=sys.stderr, flush=True)


class TimedTable:
    """A remote table whose writing calls are timed (everything else passes through)."""

    def __init__(self, table: RemoteEventTable) -> None:
        self.table = table
        self.engine = table.engine
        self.transient_errors = table.transient_errors
        self.uri_schemes = table.uri_schemes
        self.parallel_loads = table.parallel_loads
        self.seconds = 0.0
        self._lock = threading.Lock()
        self.calls = 0

    def _timed(self, name: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return getattr(self.table, name)(*args)
        finally:
            with self._lock:  # concurrent loads: the sum of their times (may exceed the wall clock)
                self.seconds += time.perf_counter() - started
                self.calls += 1

    def ensure_table(self) -> None:
        self._timed("ensure_table")

    def merge_files(self, day: date, paths: Sequence[Source], load_id: str) -> int:
        return self._timed("merge_files", day, paths, load_id)

    def replace_day(self, day: date, paths: Sequence[Source], load_id: str) -> int:
        return self._timed("replace_day", day, paths, load_id)

    def fill_days(self, days: Mapping[date, Sequence[Source]], load_id: str) -> dict[date, int]:
        return self._timed("fill_days", days, load_id)

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


def sweep(url: str, lake: EventLake) -> tuple[float, int, int | None]:
    """One sweep into the lake: (seconds, events, lake version)."""
    started = time.perf_counter()
    outcome = Ingestor(url, lake, consumer="lake").sweep(run_id="bench")
    seconds = time.perf_counter() - started
    if outcome.status != "loaded":
        raise RuntimeError(f"the lake's sweep ended {outcome.status}: {outcome.error}")
    return seconds, outcome.events_loaded, lake.version()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--increment", type=int, default=20_000, help="events of the steady-state delivery")
    parser.add_argument("--engines", default="bigquery,redshift")
    parser.add_argument("--admin-url", default=None)
    args = parser.parse_args(argv)
    admin = resolve_admin_url(args.admin_url)
    engines = [e for e in args.engines.split(",") if e]
    with throwaway_database(admin) as url, tempfile.TemporaryDirectory(prefix="bench_engines_") as tmp_dir:
        tmp = Path(tmp_dir)
        migrate(url)
        load_events(url, args.events, days=7.0)
        lake = EventLake(LakeLocation.from_env(str(tmp / "lake")))
        sweep_seconds, events, version = sweep(url, lake)
        sweep_rate = events / sweep_seconds
        files = lake.snapshot().files()
        log(f"lake: {events:,} events in {sweep_seconds:.1f} s (version {version}, {files.num_rows} files)")
        emit_figure({"name": "lake_sweep_events_per_s", "value": round(sweep_rate), "unit": "events/s",
                     "events": events, "seconds": round(sweep_seconds, 2), "files": files.num_rows,
                     "bytes": sum(files.column("size_bytes").to_pylist())})
        days = lake.snapshot().days()
        full_day = days[-2] if len(days) > 1 else days[-1]  # the last day is partial
        tables = {}
        try:
            for engine in engines:  # the first delivery of each engine, from the same lake version
                table, stop = bigquery_table(tmp) if engine == "bigquery" else redshift_table(admin, url)
                tables[engine] = (table, stop)
                timed = TimedTable(table)
                outcome = LakeDelivery(url, lake, timed).deliver(run_id="bench")
                if outcome.rows != events:
                    raise RuntimeError(f"{engine}: {outcome.rows:,} rows delivered of {events:,}")
                rate = outcome.rows / outcome.seconds
                log(f"{engine}: {outcome.rows:,} events in {outcome.seconds:.1f} s ({timed.seconds:.1f} s in the "
                    f"engine's table, {outcome.files} files, {len(outcome.days)} days)")
                emit_figure({"name": f"{engine}_delivery_events_per_s", "value": round(rate), "unit": "events/s",
                             "events": outcome.rows, "seconds": round(outcome.seconds, 2), "files": outcome.files,
                             "days": len(outcome.days), "mode": outcome.mode})
                emit_figure({"name": f"{engine}_ratio_to_sweep", "value": round(rate / sweep_rate, 3),
                             "unit": "ratio", "note": "first delivery of the lake over the lake's sweep, same run"})
                emit_figure({"name": f"{engine}_load_seconds", "value": round(timed.seconds, 2), "unit": "s",
                             "note": "inside the engine's table: create, load jobs or INSERT batches, the statement"})
                emit_figure({"name": f"{engine}_rest_seconds", "value": round(outcome.seconds - timed.seconds, 2),
                             "unit": "s", "note": "lake snapshot and log, PostgreSQL lock and record"})

            load_demo(url, users=USERS, events=args.increment, days=1.0, seed=SEED + 1, progress=False)
            seconds, added, version = sweep(url, lake)
            log(f"lake: {added:,} more events in {seconds:.1f} s (version {version})")
            for engine, (table, _) in tables.items():
                outcome = LakeDelivery(url, lake, table).deliver(run_id="bench")
                emit_figure({"name": f"{engine}_incremental_seconds", "value": round(outcome.seconds, 2),
                             "unit": "s", "events": outcome.rows, "days_merged": len(outcome.days_merged),
                             "days_replaced": len(outcome.days_replaced), "files": outcome.files})

            for engine, (table, _) in tables.items():
                outcome = LakeDelivery(url, lake, table).replace_days([full_day], run_id="bench")
                emit_figure({"name": f"{engine}_replace_day_seconds", "value": round(outcome.seconds, 2), "unit": "s",
                             "day": full_day.isoformat(), "day_events": outcome.rows})

            table = lake.table()
            started = time.perf_counter()
            compacted = table.optimize.compact()
            log(f"lake: compacted in {time.perf_counter() - started:.1f} s ({compacted.get('numFilesRemoved')} -> "
                f"{compacted.get('numFilesAdded')} files)")
            for engine, (table, _) in tables.items():
                outcome = LakeDelivery(url, lake, table).deliver(run_id="bench")
                emit_figure({"name": f"{engine}_after_compaction_seconds", "value": round(outcome.seconds, 2),
                             "unit": "s", "events": outcome.rows, "files": outcome.files,
                             "note": "same rows in new files: nothing to load"})
        finally:
            for table, stop in tables.values():
                table.close()
                stop()
        emit_figure({"name": "peak_rss_mib", "value": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                     "unit": "MiB", "note": "this process: the demo load, the sweep and every delivery"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
