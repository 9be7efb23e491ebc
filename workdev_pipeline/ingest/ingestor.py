"""The ingestion engine: sweeps, day rebuilds and replays of the lake, exactly once.

* **Sweep** (what the sensor's runs do): under the consumer's advisory lock, claim the transaction-id range
  [watermark, snapshot xmin) in ``ingestion_sweeps`` (committed before anything is written), stream its events,
  validate and enrich them, and append them to ``lake/platform_events`` in ONE Delta commit carrying the application
  transaction (consumer, sweep id); then -- in one PostgreSQL transaction -- dead-letter the invalid events, finish
  the sweep and advance the watermark. A run killed anywhere finds its sweep still 'running' and redoes it: when the
  lake already holds its commit (the transaction's version), nothing is appended again and only the bookkeeping is
  done. The sweep records the lake version holding its events (``ingestion_sweeps.lake_version``) and registers the
  warehouse engines fed from the lake (``lake_engines``): ``processed`` waits until each has delivered that version.
* **Rebuild** of days (materializing partitions, a backfill): everything of those days below the watermark, except
  the dead letter, written anew as ONE predicate overwrite of those days (readers see the old days or the new ones).
* **Replay** of the dead letter: events that now pass are resolved and their days queued for a rebuild in one
  transaction; the queue is drained before every operation, so a crash in between loses nothing.

Every write of the lake happens under the consumer's lock, after any sweep a killed run left unfinished has been
finished (a rebuild never overwrites a day whose sweep is committed but not yet counted by the watermark).
Transient failures (the database restarting, the network, the lake's storage read-only or full) retry with
exponential backoff and jitter for up to ``retry_seconds`` (``WORKDEV_RETRY_SECONDS``, 60 s: longer than a PostgreSQL
crash recovery). A sweep that still fails leaves its events pending and its range claimed (nothing is dead-lettered:
the dead letter is for events bad themselves), records the failed attempts (the events' ``retry_count``) and why
(``pipeline_watermarks.last_error_kind``), and returns ``failed``; the next sweep redoes the range exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from tenacity import Retrying, retry_if_exception_type, wait_exponential_jitter

from workdev_pipeline.arrow_memory import use_jemalloc
from workdev_pipeline.enrichment import GeoLocator, SchemaValidator, load_user_agent_rules
from workdev_pipeline.governance.redaction import redact_message
from workdev_pipeline.ingest.extract import BATCH_BYTES, EventReader
from workdev_pipeline.ingest.faults import crash_point
from workdev_pipeline.ingest.ingest_times import IngestTimes
from workdev_pipeline.ingest.transform import EventTransformer, Failures
from workdev_pipeline.ingest.transient import (
    MAX_WAIT_SECONDS,
    TRANSIENT_ERRORS,
    FaultBudget,
    configured_retry_seconds,
    error_kind,
    one_line,
)
from workdev_pipeline.lake.events import EventLake
from workdev_pipeline.sql_files import query

log = logging.getLogger(__name__)

LOCK_STATEMENT = "SELECT {}(hashtext('workdev.ingest'), hashtext(%s))"
# how many times the sweep asks for its bounds while a transaction nobody could attribute sets the upper one
BOUNDS_ATTEMPTS = 5


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
    day_bytes: dict[date, int] = field(default_factory=dict)  # data-file bytes written per day
    #: a rebuild's seconds per day: reading, validating, enriching and encoding the day's rows (the commit, shared by
    #: the days, is in ``seconds`` only)
    day_seconds: dict[date, float] = field(default_factory=dict)
    sweep_id: int | None = None
    tx_range: tuple[int, int] | None = None
    lake_version: int | None = None
    redone: bool = False
    retries: int = 0
    error: str | None = None
    error_kind: str | None = None  # a failed sweep's fault: database unavailable, network, lake file system: ...
    notes: list[str] = field(default_factory=list)
    failure_samples: list[tuple[str, str, str]] = field(default_factory=list)  # (event_id, type, message)
    first_event_read_at: float | None = None  # a sweep's: when its first batch of events arrived (epoch seconds)

    @property
    def events_per_second(self) -> float:
        return self.events_loaded / self.seconds if self.seconds > 0 else 0.0


def _noting_first(batches: Iterator[pa.RecordBatch], outcome: LoadOutcome) -> Iterator[pa.RecordBatch]:
    """``batches``, the wall time the first one arrived noted as ``outcome.first_event_read_at``."""
    for batch in batches:
        if outcome.first_event_read_at is None:
            outcome.first_event_read_at = time.time()
        yield batch


class Ingestor:
    """Moves events of the PostgreSQL store into the lake for one consumer."""

    def __init__(self, database_url: str, lake: EventLake, *, consumer: str = "lake",
                 engines: Sequence[str] | None = None, geoip_database: str | None = None,
                 retry_seconds: float | None = None, backoff_seconds: float = 0.5,
                 batch_bytes: int = BATCH_BYTES) -> None:
        self.url = database_url
        self.lake = lake
        self.consumer = consumer
        #: the warehouse engines fed from this lake (registered by each sweep in ``lake_engines``: they gate
        #: ``processed``); None leaves the registration as it is
        self.engines = None if engines is None else sorted(set(engines))
        self.transient_errors = TRANSIENT_ERRORS
        #: how long a transient failure is retried (None: WORKDEV_RETRY_SECONDS, default 60 s)
        self.retry_seconds = configured_retry_seconds() if retry_seconds is None else retry_seconds
        self.backoff_seconds = backoff_seconds
        self.batch_bytes = batch_bytes
        use_jemalloc()  # the process's Arrow pool: see arrow_memory.py
        self._locator = GeoLocator(geoip_database)
        self._transformer: EventTransformer | None = None
        self._enrichment_loaded: Future[None] | None = None
        self._claimed: int | None = None  # the sweep the current attempt works on
        self._failed_attempts: Counter[int] = Counter()  # per sweep id, in this sweep() call

    # -- public operations ---------------------------------------------------------------------------
    def sweep(self, run_id: str | None = None) -> LoadOutcome:
        """Load everything committed since the last sweep (or finish a killed or failed one). A transient fault that
        outlasts the retry budget gives a ``failed`` outcome (nothing dead-lettered, the events stay pending)."""
        started = time.perf_counter()
        self._failed_attempts = Counter()
        attempts = 0

        def attempt() -> LoadOutcome:
            nonlocal attempts
            attempts += 1
            self._claimed = None
            try:
                return self._sweep_once(run_id)
            except self.transient_errors:
                if self._claimed is not None:
                    self._failed_attempts[self._claimed] += 1
                raise

        try:
            outcome = self._retrying(attempt)
        except self.transient_errors as exc:
            outcome = self._record_failure(run_id, exc, attempts, time.perf_counter() - started)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def rebuild(self, days: Sequence[date], run_id: str | None = None,
                on_day: Callable[[date, int], None] | None = None) -> LoadOutcome:
        """Rewrite whole days from PostgreSQL in one commit (idempotent: the same input gives the same rows);
        ``on_day(day, rows)`` as each requested day's rows are written (progress bars, run logs), before the
        commit that makes them visible."""
        started = time.perf_counter()

        def attempt() -> LoadOutcome:  # retried whole (lock included): a dropped connection takes the lock along
            outcome = LoadOutcome("loaded", "rebuild")
            with self.locked() as conn:
                self._drain_rebuild_queue(conn, run_id, outcome)
                self._rebuild_days(conn, sorted(set(days)), run_id, outcome, on_day=on_day)
            return outcome

        outcome = self._retrying(attempt)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def replay(self, run_id: str | None = None) -> LoadOutcome:
        """Send the dead letter back through: what passes now is loaded (its days rebuilt), the rest stays."""
        started = time.perf_counter()
        outcome = self._retrying(lambda: self._replay_once(run_id))
        outcome.seconds = time.perf_counter() - started
        return outcome

    @contextmanager
    def locked(self, *, wait: bool = True) -> Iterator[psycopg.Connection | None]:
        """The consumer's session-level advisory lock (released by PostgreSQL if this process dies): every write of
        the lake happens inside, after :meth:`finish_running_sweep`. ``wait=False`` yields None when another
        process holds it."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            if wait:
                conn.execute(LOCK_STATEMENT.format("pg_advisory_lock"), (self.consumer,))
            elif not conn.execute(LOCK_STATEMENT.format("pg_try_advisory_lock"), (self.consumer,)).fetchone()[0]:
                yield None
                return
            yield conn

    def load_enrichment(self) -> None:
        """Load the enrichment's data now (the geo table or database, the user-agent rules: ~0.15 s in a fresh
        process) rather than in the first transform."""
        self._locator.load()
        load_user_agent_rules()

    def preload_enrichment(self) -> Future[None]:
        """:meth:`load_enrichment` on a thread of its own (once per ingestor), so that it overlaps what the caller
        does meanwhile (claiming a sweep, connecting, the first batches); the first transform waits for what is
        still loading. A load that fails fails again, with its error, in the transform that needs it."""
        if self._enrichment_loaded is None:
            loaded: Future[None] = Future()

            def load() -> None:
                try:
                    self.load_enrichment()
                    loaded.set_result(None)
                except BaseException as exc:  # held for whoever waits; the transform raises it again
                    loaded.set_exception(exc)

            threading.Thread(target=load, name="enrichment-load", daemon=True).start()
            self._enrichment_loaded = loaded
        return self._enrichment_loaded

    def transformer(self, conn: psycopg.Connection) -> EventTransformer:
        if self._transformer is None:
            schemas = dict(conn.execute(query("ingest/event_schemas")).fetchall())
            self._transformer = EventTransformer(SchemaValidator(schemas), self._locator)
        return self._transformer

    def _replay_once(self, run_id: str | None) -> LoadOutcome:
        outcome = LoadOutcome("loaded", "replay")
        with self.locked() as conn:
            self.finish_running_sweep(conn, run_id)
            passing: list[str] = []
            still = Failures()
            with self._reader() as reader:
                for batch in reader.stream("ingest/open_failures", consumer=self.consumer):
                    table, failures = self.transformer(conn).transform(batch, datetime.now(UTC))
                    passing += table.column("event_id").to_pylist()
                    still.extend(failures)
            with conn.transaction():
                self.record_failures(conn, still)
                conn.execute(query("ingest/resolve_failures"), {"event_ids": passing, "consumer": self.consumer})
            crash_point("after_resolve")
            outcome.notes.append(f"{len(passing)} event(s) pass now, {len(still)} still fail")
            outcome.events_failed = len(still)
            self._drain_rebuild_queue(conn, run_id, outcome)
        return outcome

    # -- sweeps ----------------------------------------------------------------------------------------
    def _sweep_once(self, run_id: str | None) -> LoadOutcome:
        with self.locked(wait=False) as conn:
            if conn is None:
                return LoadOutcome("busy", "sweep", notes=["another sweep or rebuild of the lake is running"])
            outcome = LoadOutcome("loaded", "sweep")
            conn.execute(query("ingest/register_consumer"), {"consumer": self.consumer})
            if self.engines is not None:
                conn.execute(query("ingest/register_engines"), {"engines": self.engines})
            running = conn.execute(query("ingest/running_sweep"), {"consumer": self.consumer}).fetchone()
            if running is None:
                self._drain_rebuild_queue(conn, run_id, outcome)
                tx_low, tx_high, has_events = self._sweep_bounds(conn)
                if tx_high <= tx_low or not has_events:
                    if tx_high > tx_low:  # transactions that wrote no events: just move past them
                        conn.execute(query("ingest/advance_watermark"),
                                     {"consumer": self.consumer, "tx_high": tx_high})
                    conn.execute(query("ingest/clear_consumer_failure"), {"consumer": self.consumer})
                    outcome.status = "idle"
                    return outcome
                sweep_id, claimed_at = conn.execute(query("ingest/claim_sweep"), {
                    "consumer": self.consumer, "tx_low": tx_low, "tx_high": tx_high, "run_id": run_id}).fetchone()
                running = (sweep_id, tx_low, tx_high, claimed_at)
                crash_point("after_claim")
            self._run_sweep(conn, running, run_id, outcome)
            self._drain_rebuild_queue(conn, run_id, outcome)
            return outcome

    def _sweep_bounds(self, conn: psycopg.Connection) -> tuple[int, int, bool]:
        """The next range to sweep and whether it holds events; asked again (a new snapshot) while an in-progress
        transaction nobody could attribute sets its upper bound."""
        for _ in range(BOUNDS_ATTEMPTS):
            tx_low, tx_high, has_events, unattributed = conn.execute(query("ingest/sweep_bounds"),
                                                                     {"consumer": self.consumer}).fetchone()
            if not unattributed:
                break
        return tx_low, tx_high, has_events

    def finish_running_sweep(self, conn: psycopg.Connection, run_id: str | None = None) -> LoadOutcome | None:
        """Finish the sweep a killed run left claimed (the lock held), if any."""
        running = conn.execute(query("ingest/running_sweep"), {"consumer": self.consumer}).fetchone()
        if running is None:
            return None
        outcome = LoadOutcome("loaded", "sweep")
        self._run_sweep(conn, running, run_id, outcome)
        log.warning("finished sweep %s left unfinished by a killed run", outcome.sweep_id)
        return outcome

    def _run_sweep(self, conn: psycopg.Connection, running: tuple, run_id: str | None,
                   outcome: LoadOutcome) -> None:
        """Append the claimed sweep's events in one lake commit -- unless the lake already holds that commit (a
        redo) -- then record its failures, finish it and advance the watermark, in one transaction."""
        sweep_id, tx_low, tx_high, claimed_at = running
        outcome.sweep_id, outcome.tx_range = sweep_id, (tx_low, tx_high)
        self._claimed = sweep_id
        self.preload_enrichment()
        committed = (self.lake.committed_version(self.consumer) or 0) >= sweep_id
        if committed:  # the lake's version now holds the commit (it may be later than the commit: never earlier)
            outcome.redone, outcome.lake_version = True, self.lake.version()
            outcome.notes.append(f"sweep {sweep_id} was committed to the lake by a killed run: bookkeeping finished")
        started_at = datetime.now(UTC)
        failures = Failures()
        counted: dict[date, int] = {}
        transformer = self.transformer(conn)
        with self._reader() as reader:
            tables = (self._transformed(transformer, batch, claimed_at, failures)
                      for batch in _noting_first(reader.stream("ingest/sweep_events", consumer=self.consumer,
                                                               tx_low=tx_low, tx_high=tx_high, parallel=False),
                                                 outcome))
            if committed:
                for table in tables:  # the failures and counts again; nothing is written
                    for day, rows in _day_counts(table).items():
                        counted[day] = counted.get(day, 0) + rows
            else:
                commit = self.lake.append(tables, app_id=self.consumer, version=sweep_id)
                counted, outcome.bytes_written, outcome.lake_version = commit.days, commit.bytes_written, commit.version
                outcome.day_bytes = dict(commit.day_bytes)
        crash_point("after_commit")
        outcome.days = dict(counted)
        outcome.events_loaded += sum(counted.values())
        outcome.events_failed += len(failures)
        outcome.failure_samples = list(zip(failures.event_ids, failures.event_types, failures.messages,
                                           strict=True))[:20]
        with conn.transaction():
            self.record_failures(conn, failures)
            conn.execute(query("ingest/finish_sweep"), {"sweep_id": sweep_id, "events": sum(counted.values()),
                                                        "events_failed": len(failures),
                                                        "retries": self._failed_attempts[sweep_id],
                                                        "lake_version": outcome.lake_version if counted else None})
            conn.execute(query("ingest/advance_watermark"), {"consumer": self.consumer, "tx_high": tx_high})
            conn.execute(query("ingest/clear_consumer_failure"), {"consumer": self.consumer})
            for day, rows in sorted(counted.items()):
                self._sync_status(conn, day, f"sweep-{sweep_id}", run_id, "succeeded", rows, rows, 0, 0, started_at)
            if failures and not counted:
                self._sync_status(conn, None, f"sweep-{sweep_id}", run_id, "succeeded", len(failures), 0,
                                  len(failures), 0, started_at)
        self._failed_attempts.pop(sweep_id, None)  # counted by the sweep now

    @staticmethod
    def _transformed(transformer: EventTransformer, batch: pa.RecordBatch, ingested_at: datetime | IngestTimes,
                     failures: Failures) -> pa.Table:
        table, bad = transformer.transform(batch, ingested_at)
        failures.extend(bad)
        crash_point("mid_write")
        return table

    def _record_failure(self, run_id: str | None, exc: BaseException, attempts: int,
                        seconds: float) -> LoadOutcome:
        """The sweep kept failing for a transient reason: nothing is released or dead-lettered (a claimed sweep stays
        claimed, the next run redoes it exactly once); its failed attempts and the reason are recorded -- when the
        database answers -- and a ``failed`` row goes to ``warehouse_sync_status``."""
        kind = error_kind(exc)
        message = (f"transient failure ({kind}) after {attempts} attempt(s) in {seconds:.1f} s: "
                   f"{one_line(exc)}")[:2000]
        outcome = LoadOutcome("failed", "sweep", error=message, error_kind=kind, retries=attempts - 1)
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn, conn.transaction():
                running = conn.execute(query("ingest/running_sweep"), {"consumer": self.consumer}).fetchone()
                if running is not None:
                    outcome.sweep_id, outcome.tx_range = running[0], (running[1], running[2])
                for sweep_id, failed in sorted(self._failed_attempts.items()):
                    conn.execute(query("ingest/record_sweep_failure"), {"sweep_id": sweep_id, "retries": failed})
                conn.execute(query("ingest/record_consumer_failure"), {
                    "consumer": self.consumer, "error_kind": kind, "error": message})
                self._sync_status(conn, None, f"sweep-{outcome.sweep_id or 'unclaimed'}", run_id, "failed", 0, 0, 0,
                                  0, datetime.now(UTC) - timedelta(seconds=seconds), message)
        except self.transient_errors as again:
            outcome.notes.append(f"the failure could not be recorded: {error_kind(again)}")
        self._failed_attempts.clear()
        log.error("sweep %s failed: %s", outcome.sweep_id, redact_message(message))  # stderr: the run's compute log
        return outcome

    # -- day rebuilds ------------------------------------------------------------------------------
    def _drain_rebuild_queue(self, conn: psycopg.Connection, run_id: str | None, outcome: LoadOutcome) -> None:
        queued = [r[0] for r in conn.execute(query("ingest/queued_rebuilds"), {"consumer": self.consumer})]
        if queued:
            self._rebuild_days(conn, queued, run_id, outcome)

    def _rebuild_days(self, conn: psycopg.Connection, days: list[date], run_id: str | None, outcome: LoadOutcome,
                      on_day: Callable[[date, int], None] | None = None) -> None:
        """Overwrite ``days`` with their events below the watermark (one commit), the lock held."""
        if not days:
            return
        self.finish_running_sweep(conn, run_id)
        self.preload_enrichment()
        started_at = datetime.now(UTC)
        watermark = conn.execute(query("ingest/consumer_watermark"), {"consumer": self.consumer}).fetchone()[0]
        failures = Failures()
        transformer = self.transformer(conn)
        ingest_times = IngestTimes(conn, self.consumer)
        written: dict[date, int] = {}
        seconds: dict[date, float] = {}

        def tables() -> Iterator[pa.Table]:
            with self._reader() as reader:
                for day in days:
                    start = datetime.combine(day, dtime.min, tzinfo=UTC)
                    rows, day_started = 0, time.perf_counter()
                    for batch in reader.stream("ingest/day_events", consumer=self.consumer, tx_high=watermark,
                                               day_start=start, day_end=start + timedelta(days=1)):
                        table = self._transformed(transformer, batch, ingest_times, failures)
                        rows += table.num_rows
                        yield table  # the writer's encoding runs meanwhile (it takes a couple of tables ahead)
                    written[day], seconds[day] = rows, time.perf_counter() - day_started
                    if on_day is not None:
                        on_day(day, rows)

        commit = self.lake.replace_days(days, tables())
        crash_point("after_commit")
        with conn.transaction():
            self.record_failures(conn, failures)
            conn.execute(query("ingest/mark_replayed_version"), {"consumer": self.consumer, "days": days,
                                                                  "lake_version": commit.version})
            for day in days:
                conn.execute(query("ingest/dequeue_rebuild"), {"consumer": self.consumer, "event_date": day})
                self._sync_status(conn, day, f"rebuild-{day.isoformat()}", run_id, "succeeded",
                                  written.get(day, 0), written.get(day, 0), 0, 0, started_at)
        for day in days:
            outcome.days[day] = written.get(day, 0)
            outcome.day_bytes[day] = commit.day_bytes.get(day, 0)
            outcome.day_seconds[day] = seconds.get(day, 0.0)
        outcome.events_loaded += sum(written.values())
        outcome.events_failed += len(failures)
        outcome.bytes_written += commit.bytes_written
        outcome.lake_version = commit.version

    # -- plumbing ----------------------------------------------------------------------------------
    def _retrying(self, action: Callable[[], LoadOutcome]) -> LoadOutcome:
        """``action`` retried on transient errors with exponential backoff and jitter, within ``retry_seconds``."""
        retrying = Retrying(stop=FaultBudget(self.retry_seconds), reraise=True,
                            wait=wait_exponential_jitter(multiplier=self.backoff_seconds, max=MAX_WAIT_SECONDS,
                                                         jitter=self.backoff_seconds),
                            retry=retry_if_exception_type(self.transient_errors),
                            before_sleep=lambda state: log.warning(
                                "attempt %d failed (%s); retrying in %.1f s", state.attempt_number,
                                error_kind(state.outcome.exception()), state.upcoming_sleep))
        result = retrying(action)
        retries = retrying.statistics.get("attempt_number", 1) - 1
        if retries and isinstance(result, LoadOutcome):
            result.retries = retries
        return result

    @contextmanager
    def _reader(self) -> Iterator[EventReader]:
        reader = EventReader(self.url, batch_bytes=self.batch_bytes)
        try:
            yield reader
        finally:
            reader.close()

    def record_failures(self, conn: psycopg.Connection, failures: Failures) -> None:
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


def _day_counts(table: pa.Table) -> dict[date, int]:
    """Rows per UTC day of ``timestamp``."""
    if not table.num_rows:
        return {}
    counts = pc.value_counts(pc.cast(table.column("timestamp"), pa.date32())).to_pylist()
    return {c["values"]: c["counts"] for c in counts}
