"""The ingestion engine: sweeps, day rebuilds and replays of one consumer (warehouse), exactly once.

* **Sweep** (what the sensor's runs do): under the consumer's advisory lock, claim the transaction-id range
  [watermark, snapshot xmin) in ``ingestion_sweeps`` (committed before anything is written), stream its
  events, validate and enrich them, write one file per UTC day, publish the files, then -- in one
  transaction -- dead-letter the invalid events, finish the sweep and advance the watermark. A run killed
  anywhere finds its sweep still 'running' and redoes exactly that range, replacing its own files.
* **Rebuild** of a day (materializing a partition, a backfill): everything of that day below the watermark,
  except the dead letter, written anew and swapped in whole.
* **Replay** of the dead letter: events that now pass are resolved and their days queued for a rebuild in
  one transaction; the queue is drained before every operation, so a crash in between loses nothing.

Transient failures (file system, lost connections) retry with exponential backoff and jitter, at most
``retries`` times; a sweep that still fails sends its events to the dead letter (``retry_count``), from
where a replay brings them back once the cause is fixed.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import adbc_driver_manager
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from workdev_pipeline.enrichment import GeoLocator, SchemaValidator
from workdev_pipeline.ingest.extract import BATCH_BYTES, EventReader
from workdev_pipeline.ingest.faults import crash_point
from workdev_pipeline.ingest.ingest_times import IngestTimes
from workdev_pipeline.ingest.local_store import SYNC_THREADS, DayFileWriter, LocalEventFiles, fsync_path
from workdev_pipeline.ingest.transform import EventTransformer, Failures
from workdev_pipeline.sql_files import query
from workdev_pipeline.warehouses.remote import RemoteEventTable

log = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OSError, psycopg.OperationalError, adbc_driver_manager.OperationalError,
                    adbc_driver_manager.InternalError)
_LOCK = "SELECT {}(hashtext('workdev.ingest'), hashtext(%s))"
#: Rows a day rewrite (rewrite_days) reads at a time: files up to this size are read whole, larger ones a row group
#: at a time, and a row group larger than ``REWRITE_GROUP_ROWS`` in batches of this size.
REWRITE_BATCH_ROWS = 65_536
REWRITE_GROUP_ROWS = 4 * REWRITE_BATCH_ROWS
#: A piece of a file loses few enough rows to be cut into slices rather than filtered (``_kept_rows``) when it keeps
#: on average this many rows between two it drops (a file of 65,536 rows: up to 64 dropped).
SLICE_MIN_RUN = 1_024
#: Rewritten days swapped in together (their directory syncs shared).
REWRITE_SWAP_DAYS = 64


@dataclass
class LoadOutcome:
    """What one sweep, rebuild or replay did (it becomes the materialization's metadata)."""

    status: str  # loaded | idle | busy | failed
    kind: str  # sweep | rebuild | replay
    events_loaded: int = 0
    events_failed: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    days: dict[date, int] = field(default_factory=dict)  # rows written per day
    sweep_id: int | None = None
    tx_range: tuple[int, int] | None = None
    redone: bool = False
    retries: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    failure_samples: list[tuple[str, str, str]] = field(default_factory=list)  # (event_id, type, message)

    @property
    def events_per_second(self) -> float:
        return self.events_loaded / self.seconds if self.seconds > 0 else 0.0


def _keep_mask(mask: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """A ``keep`` callback's answer as one boolean array, null meaning dropped (as ``Table.filter`` takes it)."""
    mask = mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask
    return pc.fill_null(mask, False) if mask.null_count else mask


def _pieces(parquet: pq.ParquetFile, columns: list[str] | None) -> Iterator[pa.Table]:
    """A file's rows in order, a row group at a time (the file's own chunks: re-batching them costs ~40 % more),
    a larger one than ``REWRITE_GROUP_ROWS`` in batches of ``REWRITE_BATCH_ROWS``; the same pieces whatever the
    columns."""
    for group in range(parquet.num_row_groups):
        if parquet.metadata.row_group(group).num_rows <= REWRITE_GROUP_ROWS:
            yield parquet.read_row_group(group, columns=columns, use_threads=False)
        else:
            for batch in parquet.iter_batches(batch_size=REWRITE_BATCH_ROWS, row_groups=[group], columns=columns,
                                              use_threads=False):
                yield pa.Table.from_batches([batch])


def _joined(schema: pa.Schema, first: pa.Table, second: pa.Table) -> pa.Table:
    """The same rows read as two sets of columns, as one table of ``schema``'s columns in its order."""
    return pa.Table.from_arrays([(first if name in first.column_names else second).column(name)
                                 for name in schema.names], schema=schema)


def _kept_rows(table: pa.Table, mask: pa.BooleanArray) -> pa.Table:
    """The rows of ``table`` where ``mask`` is true. A few dropped rows (an erasure's in a day of other users'
    events) are cut out with zero-copy slices; a filter would copy every column of every kept row."""
    dropped = len(mask) - mask.true_count
    if not dropped:
        return table
    if dropped * SLICE_MIN_RUN > len(mask):
        return table.filter(mask)
    parts: list[pa.Table] = []
    start = 0
    for cut in pc.indices_nonzero(pc.invert(mask)).to_pylist():
        if cut > start:
            parts.append(table.slice(start, cut - start))
        start = cut + 1
    if start < table.num_rows:
        parts.append(table.slice(start))
    return pa.concat_tables(parts) if parts else table.slice(0, 0)


class Ingestor:
    """Moves events of the store into the local warehouse's files for one consumer -- and, for a remote engine
    (``remote``), from those files (its mirror) into the engine's table: see ``warehouses/remote.py``."""

    def __init__(self, database_url: str, files: LocalEventFiles, *, consumer: str = "local",
                 geoip_database: str | None = None, retries: int = 3, backoff_seconds: float = 0.5,
                 batch_bytes: int = BATCH_BYTES, sleep: Callable[[float], None] = time.sleep,
                 remote: RemoteEventTable | None = None) -> None:
        self.url = database_url
        self.files = files
        self.consumer = consumer
        self.remote = remote
        self.transient_errors = TRANSIENT_ERRORS + (remote.transient_errors if remote is not None else ())
        self._remote_ready = False
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.batch_bytes = batch_bytes
        self._sleep = sleep
        self._locator = GeoLocator(geoip_database)
        self._transformer: EventTransformer | None = None

    # -- public operations ---------------------------------------------------------------------------
    def sweep(self, run_id: str | None = None) -> LoadOutcome:
        """Load everything committed since the last sweep (or redo a killed one)."""
        started = time.perf_counter()
        try:
            outcome = self._retrying(lambda: self._sweep_once(run_id))
        except self.transient_errors as exc:
            outcome = self._fail_sweep(run_id, exc)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def rebuild(self, days: Sequence[date], run_id: str | None = None,
                on_day: Callable[[date, int], None] | None = None) -> LoadOutcome:
        """Rewrite whole days from PostgreSQL (idempotent: the same input gives the same rows); ``on_day(day,
        rows)`` after each requested day (progress bars, run logs)."""
        started = time.perf_counter()
        outcome = LoadOutcome("loaded", "rebuild")
        remaining = sorted(set(days))

        def attempt() -> LoadOutcome:  # retried whole (lock included): a dropped connection takes the lock along
            with self._locked(wait=True) as conn:
                self._drain_rebuild_queue(conn, run_id, outcome)
                if self.remote is not None:  # a crash between the engine's load and the mirror's swap redoes them
                    conn.execute(query("ingest/queue_rebuilds"), {"consumer": self.consumer, "days": remaining,
                                                                  "reason": "rebuild"})
                while remaining:
                    self._rebuild_day(conn, remaining[0], run_id, outcome)
                    day = remaining.pop(0)
                    if on_day is not None:
                        on_day(day, outcome.days.get(day, 0))
            return outcome

        self._retrying(attempt)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def replay(self, run_id: str | None = None) -> LoadOutcome:
        """Send the dead letter back through: what passes now is loaded (its days rebuilt), the rest stays."""
        started = time.perf_counter()
        outcome = self._retrying(lambda: self._replay_once(run_id))
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _replay_once(self, run_id: str | None) -> LoadOutcome:
        outcome = LoadOutcome("loaded", "replay")
        with self._locked(wait=True) as conn:
            passing: list[str] = []
            still = Failures()
            with self._reader() as reader:
                for batch in reader.stream("ingest/open_failures", consumer=self.consumer):
                    table, failures = self.transformer(conn).transform(batch, datetime.now(UTC))
                    passing += table.column("event_id").to_pylist()
                    still.extend(failures)
            with conn.transaction():
                self._record_failures(conn, still)
                conn.execute(query("ingest/resolve_failures"), {"event_ids": passing, "consumer": self.consumer})
            crash_point("after_resolve")
            outcome.notes.append(f"{len(passing)} event(s) pass now, {len(still)} still fail")
            outcome.events_failed = len(still)
            self._drain_rebuild_queue(conn, run_id, outcome)
        return outcome

    def rewrite_days(self, days: Iterable[date], *, keep: Callable[[date, pa.Table], pa.Array] | None = None,
                     keep_columns: Sequence[str] = (), append: str | None = None,
                     after_day: Callable[[psycopg.Connection, date], None] | None = None,
                     run_id: str | None = None, workers: int = 2, compact: bool = False,
                     remove: Iterable[date] = (), before_release: Callable[[], None] | None = None) -> LoadOutcome:
        """Rewrite whole days of the warehouse from their own files (retention, erasure) under the consumer's
        lock -- no sweep, rebuild or replay runs meanwhile -- each day swapped in whole, exactly like a rebuild
        (staged, marked, renamed; a crash in between is finished by the next operation):

        * ``keep(day, table)`` returns, for rows of one file (``table`` has at least ``keep_columns``, every
          column when that is empty), a boolean array: rows where it is false are dropped. A file that loses no
          row is carried over untouched (hard link); the others are rewritten under their own name, so a sweep's
          file stays that sweep's (``remove_sweep_files`` before a redo still finds it). No ``keep``: every row
          stays.
        * ``append`` names a statement of ``sql/queries/`` streamed with the day's bounds and the consumer's
          watermark, as ``ingest/day_events`` is; its rows are validated and enriched exactly as a rebuild's
          (same ``ingested_at``) and written to a file of their own; failures go to the dead letter.
        * ``compact``: the kept rows of all the day's files go into one file, ``part-day.parquet`` (as a rebuild
          writes it: a day swept every 30 s holds thousands of small files), except the files of a sweep left
          running by a killed run, which keep their name so that its redo still replaces them.
        * A day left without rows is removed.
        * ``after_day(conn, day)`` runs on the locked connection, in the transaction recording the day's
          dead-lettered rows, once the day is swapped in (to dequeue its work: a crash before it redoes the day).
        * ``remove``: whole days removed first, under the same lock, as :meth:`remove_days` removes them (0 rows
          in ``outcome.days``).
        * ``before_release()`` runs last, the lock still held (retention waits there for PostgreSQL's deletes,
          running meanwhile: no day rebuild can bring an expired event back from the store in between).

        Files are filtered by ``workers`` threads (a batch's largest days first), each file written fsynced at once
        by ``SYNC_THREADS`` threads (its writeback overlaps the filtering of the next days); appends and swaps run
        in day order on this thread, the swaps in batches of ``REWRITE_SWAP_DAYS`` once every file of the batch is
        synced, sharing their directory syncs (``swap_in_days``). Not retried (callers are
        idempotent and re-run whole). ``outcome.days`` holds the rows each day keeps (0: removed),
        ``events_loaded`` the rows appended.
        """
        started = time.perf_counter()
        outcome = LoadOutcome("loaded", "rewrite")
        todo = sorted(set(days))
        gone = sorted(set(remove) - set(todo))
        with self._locked(wait=True) as conn:
            self.files.ensure_writable()
            if gone:
                outcome.days.update(dict.fromkeys(self._remove_locked(gone), 0))
            running = conn.execute(query("ingest/running_sweep"), {"consumer": self.consumer}).fetchone()
            separate = {self.files.sweep_file_name(running[0])} if running else set()
            # each new file is fsynced as soon as it is written, by ``syncs`` (its writeback overlaps the filtering
            # of the next days), and the batch of days swapped in once they all are
            with ThreadPoolExecutor(max_workers=SYNC_THREADS, thread_name_prefix="sync-day") as syncs, \
                    ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="rewrite-day") as pool:
                # the files are filtered while this thread loads what the appends need (schemas, GeoIP, a reader);
                # a batch's largest days first, so that its last day does not run alone at the end
                futures: dict[date, Future[tuple[Path, int, int, list[Path], list[Future[None]]]]] = {}
                for first in range(0, len(todo), REWRITE_SWAP_DAYS):
                    for day in sorted(todo[first:first + REWRITE_SWAP_DAYS], key=self.files.day_bytes, reverse=True):
                        futures[day] = pool.submit(self._filter_day, day, keep, keep_columns, compact, separate,
                                                   syncs)
                pending = [(day, futures[day]) for day in todo]
                reader: EventReader | None = None
                try:
                    watermark = conn.execute(query("ingest/consumer_watermark"),
                                             {"consumer": self.consumer}).fetchone()[0]
                    transformer = self.transformer(conn) if append else None
                    ingest_times = IngestTimes(conn, self.consumer) if append else None
                    if append and todo:
                        reader = EventReader(self.url, batch_bytes=self.batch_bytes)
                    # days are swapped in batches, sharing their syncs (thousands of small days otherwise pay
                    # three fsyncs and a transaction each)
                    for first in range(0, len(pending), REWRITE_SWAP_DAYS):
                        batch = pending[first:first + REWRITE_SWAP_DAYS]
                        staged: dict[date, Path] = {}
                        new_files: dict[date, list[Path]] = {}
                        emptied: list[date] = []
                        done: list[tuple[date, int, int, int, Failures, datetime]] = []
                        syncing: list[Future[None]] = []
                        for day, future in batch:
                            day_started = datetime.now(UTC)
                            new_dir, kept, size, day_files, day_syncs = future.result()
                            syncing += day_syncs
                            failures = Failures()
                            appended = 0
                            if append:
                                start = datetime.combine(day, dtime.min, tzinfo=UTC)
                                writer = DayFileWriter(new_dir / f"part-r{uuid.uuid4().hex[:12]}.parquet",
                                                       sync=False, make_dir=False)
                                for chunk in reader.stream(append, consumer=self.consumer, tx_high=watermark,
                                                           day_start=start, day_end=start + timedelta(days=1)):
                                    table, bad = transformer.transform(chunk, ingest_times)
                                    writer.write(table)
                                    failures.extend(bad)
                                size += writer.close()
                                appended = writer.rows
                                if appended:
                                    day_files.append(writer.path)
                                    syncing.append(syncs.submit(fsync_path, writer.path))
                            if kept + appended:
                                staged[day] = new_dir
                                new_files[day] = sorted(day_files)
                            else:
                                shutil.rmtree(new_dir, ignore_errors=True)
                                emptied.append(day)
                            done.append((day, kept, appended, size, failures, day_started))
                        for day in sorted(staged):
                            self._load_remote_day(day, new_files[day], "rewrite")
                        for day in emptied:
                            self._load_remote_day(day, [], "rewrite")
                        for synced in syncing:
                            synced.result()
                        self.files.swap_in_days(staged, pool=syncs)
                        self.files.remove_days(emptied)
                        if after_day is not None or any(f for *_, f, _ in done):
                            with conn.transaction():
                                for day, _, appended, size, failures, day_started in done:
                                    self._record_failures(conn, failures)
                                    if after_day is not None:
                                        after_day(conn, day)
                                    if appended or failures:
                                        self._sync_status(conn, day, f"rewrite-{day.isoformat()}", run_id,
                                                          "succeeded", appended + len(failures), appended,
                                                          len(failures), size, day_started)
                        for day, kept, appended, size, failures, _ in done:
                            outcome.days[day] = kept + appended
                            outcome.events_loaded += appended
                            outcome.events_failed += len(failures)
                            outcome.bytes_written += size
                except BaseException:
                    for _, future in pending:
                        future.cancel()
                    raise
                finally:
                    if reader is not None:
                        reader.close()
            if before_release is not None:
                before_release()
        outcome.status = "loaded" if todo or outcome.days else "idle"
        outcome.seconds = time.perf_counter() - started
        return outcome

    def remove_days(self, days: Iterable[date], run_id: str | None = None) -> LoadOutcome:
        """Remove whole days of the warehouse (retention: every event of them has expired) under the consumer's
        lock, each directory renamed away atomically (see ``LocalEventFiles.remove_days``); nothing is read.
        ``outcome.days`` maps each day that existed to 0."""
        started = time.perf_counter()
        outcome = LoadOutcome("loaded", "remove")
        with self._locked(wait=True):
            outcome.days = dict.fromkeys(self._remove_locked(days), 0)
        outcome.status = "loaded" if outcome.days else "idle"
        outcome.notes.append(f"{len(outcome.days)} day(s) removed" + (f" (run {run_id})" if run_id else ""))
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _remove_locked(self, days: Iterable[date]) -> list[date]:
        """Remove whole days (the lock held): the remote engine's first, then the mirror's."""
        days = sorted(set(days))
        for day in days:
            if self.files.day_dir(day).is_dir():
                self._load_remote_day(day, [], "remove")
        return self.files.remove_days(days)

    def _filter_day(self, day: date, keep: Callable[[date, pa.Table], pa.Array] | None,
                    keep_columns: Sequence[str], compact: bool = False, separate: Collection[str] = (),
                    syncs: Executor | None = None) -> tuple[Path, int, int, list[Path], list[Future[None]]]:
        """One day's files, filtered into a new staging directory: (that directory, rows kept, bytes written, the
        files it holds, the fsyncs of those it wrote). With ``compact`` the kept rows of every file but those named
        in ``separate`` go into one file. Each file written is fsynced by ``syncs`` (here without)."""
        new_dir = self.files.rebuild_dir(day)
        columns = list(keep_columns) or None
        merged = DayFileWriter(new_dir / "part-day.parquet", sync=False, make_dir=False) if compact else None
        kept = size = 0
        written: list[Path] = []
        syncing: list[Future[None]] = []

        def finish(writer: DayFileWriter) -> int:
            closed = writer.close()
            written.append(writer.path)
            if syncs is None:
                fsync_path(writer.path)
            else:
                syncing.append(syncs.submit(fsync_path, writer.path))
            return closed

        for path in self.files.day_files(day):
            parquet = pq.ParquetFile(path, pre_buffer=False)  # small files: pre-buffering costs ~15 % of the read
            rows = parquet.metadata.num_rows
            into = merged if merged is not None and path.name not in separate else None
            if keep is None and into is None:
                self.files.carry_over(path, new_dir)
                written.append(new_dir / path.name)
                kept += rows
                continue
            # use_threads=False: the days are the parallelism (Arrow's own threads on top of them run ~3x slower)
            whole = parquet.read(use_threads=False) if rows <= REWRITE_BATCH_ROWS else None
            if keep is None:
                masks = None
            elif whole is not None:
                masks = [_keep_mask(keep(day, whole.select(columns) if columns else whole))]
            else:  # the keep columns first: a file that loses no row is not read whole
                keyed = list(_pieces(parquet, columns))
                masks = [_keep_mask(keep(day, piece)) for piece in keyed]
            stays = rows if masks is None else sum(m.true_count for m in masks)
            kept += stays
            if stays == rows and into is None:
                self.files.carry_over(path, new_dir)
                written.append(new_dir / path.name)
            elif stays:
                writer = into or DayFileWriter(new_dir / path.name, sync=False, make_dir=False)
                if whole is not None:
                    pieces: Iterable[pa.Table] = [whole]
                elif columns and masks is not None:  # the keep columns already read are not decoded again
                    schema = parquet.schema_arrow
                    rest = [name for name in schema.names if name not in columns]
                    pieces = (_joined(schema, have, more) for have, more in zip(keyed, _pieces(parquet, rest),
                                                                                strict=True))
                else:
                    pieces = _pieces(parquet, None)
                for k, piece in enumerate(pieces):
                    writer.write(piece if masks is None else _kept_rows(piece, masks[k]))
                if into is None:
                    size += finish(writer)
        if merged is not None and merged.rows:
            size += finish(merged)
        return new_dir, kept, size, written, syncing

    def transformer(self, conn: psycopg.Connection) -> EventTransformer:
        if self._transformer is None:
            schemas = dict(conn.execute(query("ingest/event_schemas")).fetchall())
            self._transformer = EventTransformer(SchemaValidator(schemas), self._locator)
        return self._transformer

    # -- sweeps ----------------------------------------------------------------------------------------
    def _sweep_once(self, run_id: str | None) -> LoadOutcome:
        with self._locked(wait=False) as conn:
            if conn is None:
                return LoadOutcome("busy", "sweep", notes=["another sweep or rebuild of this warehouse is running"])
            outcome = LoadOutcome("loaded", "sweep")
            self._drain_rebuild_queue(conn, run_id, outcome)
            conn.execute(query("ingest/register_consumer"), {"consumer": self.consumer})
            running = conn.execute(query("ingest/running_sweep"), {"consumer": self.consumer}).fetchone()
            if running is not None:
                sweep_id, tx_low, tx_high, claimed_at = running
                outcome.redone = True
                removed = self.files.remove_sweep_files(sweep_id)
                outcome.notes.append(f"redoing sweep {sweep_id} left unfinished ({removed} published file(s) replaced)")
            else:
                tx_low, tx_high, has_events = conn.execute(query("ingest/sweep_bounds"),
                                                           {"consumer": self.consumer}).fetchone()
                if tx_high <= tx_low or not has_events:
                    if tx_high > tx_low:  # transactions that wrote no events: just move past them
                        conn.execute(query("ingest/advance_watermark"),
                                     {"consumer": self.consumer, "tx_high": tx_high})
                    outcome.status = "idle"
                    return outcome
                sweep_id, claimed_at = conn.execute(query("ingest/claim_sweep"), {
                    "consumer": self.consumer, "tx_low": tx_low, "tx_high": tx_high, "run_id": run_id}).fetchone()
            outcome.sweep_id, outcome.tx_range = sweep_id, (tx_low, tx_high)
            crash_point("after_claim")
            started_at = datetime.now(UTC)

            self.files.ensure_writable()
            splitter = self.files.sweep_splitter(sweep_id)
            failures = Failures()
            transformer = self.transformer(conn)
            with self._reader() as reader:
                for batch in reader.stream("ingest/sweep_events", consumer=self.consumer,
                                           tx_low=tx_low, tx_high=tx_high):
                    table, bad = transformer.transform(batch, claimed_at)
                    splitter.write(table)
                    failures.extend(bad)
            written = splitter.close()
            crash_point("after_write")
            self.files.publish_sweep(sweep_id, written)
            crash_point("after_publish")
            if self.remote is not None:  # MERGE on event_id: a redo after a crash here loads each event once
                for day in sorted(written):
                    path = self.files.day_dir(day) / self.files.sweep_file_name(sweep_id)
                    self._remote_table().merge_files(day, [path], f"sweep-{sweep_id}-{day.isoformat()}")
                crash_point("after_remote_load")

            outcome.days = {day: rows for day, (rows, _) in written.items()}
            outcome.events_loaded = sum(outcome.days.values())
            outcome.events_failed = len(failures)
            outcome.bytes_written = sum(size for _, size in written.values())
            outcome.failure_samples = list(zip(failures.event_ids, failures.event_types, failures.messages,
                                               strict=True))[:20]
            with conn.transaction():
                self._record_failures(conn, failures)
                conn.execute(query("ingest/finish_sweep"), {"sweep_id": sweep_id, "events": outcome.events_loaded,
                                                            "events_failed": outcome.events_failed})
                conn.execute(query("ingest/advance_watermark"), {"consumer": self.consumer, "tx_high": tx_high})
                for day, (rows, size) in sorted(written.items()):
                    self._sync_status(conn, day, f"sweep-{sweep_id}", run_id, "succeeded", rows, rows, 0, size,
                                      started_at)
                if failures and not written:
                    self._sync_status(conn, None, f"sweep-{sweep_id}", run_id, "succeeded", len(failures), 0,
                                      len(failures), 0, started_at)
            return outcome

    def _fail_sweep(self, run_id: str | None, exc: BaseException) -> LoadOutcome:
        """The sweep's writes kept failing: its events go to the dead letter and the sweep is finished."""
        message = f"transient failure after {self.retries} retries: {type(exc).__name__}: {exc}"[:2000]
        outcome = LoadOutcome("failed", "sweep", error=message, retries=self.retries)
        with self._locked(wait=True) as conn:
            running = conn.execute(query("ingest/running_sweep"), {"consumer": self.consumer}).fetchone()
            if running is None:
                raise exc
            sweep_id, tx_low, tx_high, _ = running
            outcome.sweep_id, outcome.tx_range = sweep_id, (tx_low, tx_high)
            try:
                self.files.remove_sweep_files(sweep_id)
            except OSError as cleanup:  # the replay's day rebuilds replace whatever is left
                outcome.notes.append(f"could not remove the sweep's files: {cleanup}")
            with conn.transaction():
                failed = conn.execute(query("ingest/fail_sweep_range"), {
                    "consumer": self.consumer, "message": message, "retry_count": self.retries,
                    "tx_low": tx_low, "tx_high": tx_high}).rowcount
                conn.execute(query("ingest/finish_sweep"), {"sweep_id": sweep_id, "events": 0,
                                                            "events_failed": failed})
                conn.execute(query("ingest/advance_watermark"), {"consumer": self.consumer, "tx_high": tx_high})
                self._sync_status(conn, None, f"sweep-{sweep_id}", run_id, "failed", failed, 0, failed, 0,
                                  datetime.now(UTC), message)
            outcome.events_failed = failed
        log.error("sweep %s failed: %s", outcome.sweep_id, message)
        return outcome

    # -- day rebuilds ------------------------------------------------------------------------------
    def _drain_rebuild_queue(self, conn: psycopg.Connection, run_id: str | None, outcome: LoadOutcome) -> None:
        queued = [r[0] for r in conn.execute(query("ingest/queued_rebuilds"), {"consumer": self.consumer})]
        for day in queued:
            self._rebuild_day(conn, day, run_id, outcome)

    def _rebuild_day(self, conn: psycopg.Connection, day: date, run_id: str | None, outcome: LoadOutcome) -> None:
        started_at = datetime.now(UTC)
        watermark = conn.execute(query("ingest/consumer_watermark"), {"consumer": self.consumer}).fetchone()[0]
        start = datetime.combine(day, dtime.min, tzinfo=UTC)
        self.files.ensure_writable()
        new_dir = self.files.rebuild_dir(day)
        writer = DayFileWriter(new_dir / "part-day.parquet")
        failures = Failures()
        transformer = self.transformer(conn)
        ingest_times = IngestTimes(conn, self.consumer)
        with self._reader() as reader:
            for batch in reader.stream("ingest/day_events", consumer=self.consumer, tx_high=watermark,
                                       day_start=start, day_end=start + timedelta(days=1)):
                table, bad = transformer.transform(batch, ingest_times)
                writer.write(table)
                failures.extend(bad)
        size = writer.close()
        self._load_remote_day(day, [writer.path] if writer.rows else [], "rebuild")
        self.files.swap_in(day, new_dir)
        with conn.transaction():
            self._record_failures(conn, failures)
            conn.execute(query("ingest/dequeue_rebuild"), {"consumer": self.consumer, "event_date": day})
            self._sync_status(conn, day, f"rebuild-{day.isoformat()}", run_id, "succeeded",
                              writer.rows + len(failures), writer.rows, len(failures), size, started_at)
        outcome.days[day] = writer.rows
        outcome.events_loaded += writer.rows
        outcome.events_failed += len(failures)
        outcome.bytes_written += size

    # -- plumbing ----------------------------------------------------------------------------------
    def _load_remote_day(self, day: date, paths: Sequence[Path], kind: str) -> None:
        """Make the remote engine's day hold exactly ``paths`` (before the mirror's swap: a crash in between
        leaves the work to redo -- queued rebuilds, re-run retention or erasure -- and the replace is idempotent)."""
        if self.remote is not None:
            self._remote_table().replace_day(day, paths, f"{kind}-{day.isoformat()}")
            crash_point("after_remote_load")

    def _remote_table(self) -> RemoteEventTable:
        """The remote engine's table, created or evolved at its first use by this engine (an engine down fails
        here, after the sweep's claim: retried, then its events dead-lettered for replay)."""
        assert self.remote is not None
        if not self._remote_ready:
            self.remote.ensure_table()
            self._remote_ready = True
        return self.remote

    def _retrying(self, action: Callable[[], LoadOutcome]) -> LoadOutcome:
        retrying = Retrying(stop=stop_after_attempt(self.retries + 1), reraise=True, sleep=self._sleep,
                            wait=wait_random_exponential(multiplier=self.backoff_seconds, max=30),
                            retry=retry_if_exception_type(self.transient_errors),
                            before_sleep=lambda state: log.warning(
                                "attempt %d failed (%s); retrying", state.attempt_number, state.outcome.exception()))
        result = retrying(action)
        retries = retrying.statistics.get("attempt_number", 1) - 1
        if retries and isinstance(result, LoadOutcome):
            result.retries = retries
        return result

    @contextmanager
    def _locked(self, *, wait: bool) -> Iterator[psycopg.Connection | None]:
        """The consumer's session-level advisory lock (released by PostgreSQL if this process dies)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            if wait:
                conn.execute(_LOCK.format("pg_advisory_lock"), (self.consumer,))
            elif not conn.execute(_LOCK.format("pg_try_advisory_lock"), (self.consumer,)).fetchone()[0]:
                yield None
                return
            for note in self.files.recover():
                log.warning("recovered: %s", note)
            yield conn

    @contextmanager
    def _reader(self) -> Iterator[EventReader]:
        reader = EventReader(self.url, batch_bytes=self.batch_bytes)
        try:
            yield reader
        finally:
            reader.close()

    def _record_failures(self, conn: psycopg.Connection, failures: Failures) -> None:
        for kind in sorted(set(failures.kinds)):
            conn.execute(query("ingest/record_failures"),
                         {"consumer": self.consumer, "error_kind": kind, "retry_count": 0, **failures.of_kind(kind)})

    def _sync_status(self, conn: psycopg.Connection, day: date | None, batch_id: str, run_id: str | None,
                     status: str, total: int, loaded: int, failed: int, size: int, started_at: datetime,
                     error: str | None = None) -> None:
        conn.execute(query("ingest/record_sync_status"), {
            "warehouse": self.consumer, "partition_key": day.isoformat() if day else None, "batch_id": batch_id,
            "run_id": run_id, "status": status, "events_total": total, "events_loaded": loaded,
            "events_failed": failed, "bytes_written": size,
            "duration_seconds": (datetime.now(UTC) - started_at).total_seconds(), "error_message": error,
            "started_at": started_at})
