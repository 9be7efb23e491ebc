"""Deliveries from the lake to a warehouse engine (BigQuery, Redshift): each engine loads what the lake committed
since the last lake version it delivered, and records the new one in PostgreSQL (``lake_deliveries``).

One delivery, under the engine's advisory lock (deliveries, day replaces and governance of one engine take turns):

1. read the engine's delivered version and take a snapshot of the lake (version ``v``);
2. read the Delta log's add/remove actions of the commits after the delivered version, up to ``v``
   (:meth:`EventLake.actions`, one commit at a time), and plan per day:

   * a day some of whose files (that the engine holds) a commit removed with a data change -- a rebuild's
     overwrite, retention's delete, an erasure's rewrite -- is **replaced**: ``replace_day(day, <every file the
     snapshot's day holds>)``, atomically (no files: the day is emptied);
   * any other day with added files gets them **merged**: ``merge_files(day, <the added files>)`` (MERGE on
     event_id, so a redo loads nothing twice);
   * a compaction (``dataChange: false``: same rows, new files) of files the engine already holds needs nothing;
     one that took in files the engine has not received yet has its new files merged;

3. run the loads, each retried on the engine's ``transient_errors`` with exponential backoff and jitter;
4. record ``v`` (with the Delta table's id) in ``lake_deliveries``.

**Exactly once.** The version is recorded only after every load; a run killed in between (``crash_point
("after_remote_load")``) leaves the old version, and the next run plans from it again: merges on event_id and
whole-day replaces are idempotent, so the engine ends with one copy of each event whatever the lake committed
meanwhile.

**Full delivery** -- every day of the snapshot replaced (the days the engine holds no row of are filled together by
``fill_days``: the same result, without reading the table), and the engine's days the lake does not have emptied
-- when the engine has never delivered, when the log entry of a commit after its version is gone (the lake's log was
cleaned up past it: ``FileNotFoundError``), and when the lake's version or table id says the table was re-created.

**Vacuum.** A delivery only ever reads files of its snapshot (a replaced day's current files, added files still in
the table), never files the lake removed, so a vacuum (which deletes removed files only) cannot take what an engine
has not delivered yet: an engine down for a while loads what the lake holds when it is back. Should a data file of
the snapshot vanish during the loads (a newer commit removed it and a vacuum with zero retention ran), the delivery
plans again from a new snapshot.

**Where the files are read.** A lake on this machine's file system gives the engines local paths. A lake in object
storage gives an engine the files' URIs when it loads that scheme itself (``uri_schemes``: BigQuery's load jobs
read ``gs://``); for any other engine (Redshift: COPY from the lake's own ``s3://`` objects would need a manifest,
not done yet) the day's files are copied to a temporary directory first. A file some of whose rows lack their typed
amount (``amount_overflow`` NULL: written before the column existed, or rewritten since by delta-rs) is loaded from
a filled copy instead (``engine_rows``), so an engine's ``amount`` is there for every event.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TypeVar

import psycopg
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake.fs import DeltaStorageHandler
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from workdev_pipeline.ingest.faults import crash_point
from workdev_pipeline.lake.events import EventLake, LakeSnapshot, engine_rows
from workdev_pipeline.sql_files import query
from workdev_pipeline.warehouses.remote import RemoteEventTable, Source

log = logging.getLogger(__name__)

#: Times a delivery plans again when a data file of its snapshot vanished under it.
MAX_PLANS = 3

T = TypeVar("T")


@dataclass
class DeliveryPlan:
    """What one delivery loads: the days to replace (with every file the snapshot's day holds, possibly none) and
    the days to merge files into. ``mode``: ``idle`` (nothing new), ``incremental`` or ``full``."""

    engine: str
    delivered: int | None
    version: int | None
    table_id: str | None
    mode: str
    replace: dict[date, list[str]] = field(default_factory=dict)
    merge: dict[date, list[str]] = field(default_factory=dict)
    #: days the engine holds no row of (a full delivery knows which): loaded by ``fill_day``, replace_day's result
    fill: dict[date, list[str]] = field(default_factory=dict)
    reason: str = ""


@dataclass
class Delivery:
    """What one delivery (or day replace) did in one engine."""

    engine: str
    status: str  # delivered | idle | replaced
    mode: str  # idle | incremental | full | replace
    from_version: int | None = None
    to_version: int | None = None
    days_replaced: list[date] = field(default_factory=list)
    days_merged: list[date] = field(default_factory=list)
    days: dict[date, int] = field(default_factory=dict)  # rows loaded per day
    day_files: dict[date, int] = field(default_factory=dict)  # the lake's data files loaded per day
    day_bytes: dict[date, int] = field(default_factory=dict)  # their bytes
    #: seconds of each day loaded on its own (a replace or a merge, retries included); days filled together have none
    day_seconds: dict[date, float] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0
    retries: int = 0
    plans: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.days.values())

    @property
    def events_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@contextmanager
def engine_lock(conn: psycopg.Connection, engine: str) -> Iterator[None]:
    """Hold ``engine``'s lock (session level, on an autocommit connection): everything that writes the engine's
    ``platform_events`` takes turns under it."""
    conn.execute(query("lake/lock_engine"), {"engine": engine})
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute(query("lake/unlock_engine"), {"engine": engine})


def delivered_version(conn: psycopg.Connection, engine: str) -> tuple[int | None, str | None]:
    """(lake version, Delta table id) the engine last delivered; (None, None) when it never did."""
    row = conn.execute(query("lake/delivered_version"), {"engine": engine}).fetchone()
    return (None, None) if row is None else (int(row[0]), row[1])


def delivered_versions(conn: psycopg.Connection) -> dict[str, int]:
    """Every engine's delivered lake version (what the lake's log cleanup may keep behind: a cleaned-up commit an
    engine has not delivered makes its next delivery a full one)."""
    return {engine: int(version) for engine, version, _, _ in conn.execute(query("lake/deliveries"))}


def table_id(snapshot: LakeSnapshot) -> str | None:
    return None if snapshot.table is None else str(snapshot.table.metadata().id)


class LakeDelivery:
    """Deliveries from ``lake`` into one engine's ``platform_events`` (``table``), recorded in the PostgreSQL of
    ``database_url``."""

    def __init__(self, database_url: str, lake: EventLake, table: RemoteEventTable, *, retries: int = 3,
                 backoff_seconds: float = 0.5) -> None:
        self.database_url = database_url
        self.lake = lake
        self.table = table
        self.engine = table.engine
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self._count_lock = threading.Lock()

    @contextmanager
    def locked(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection holding the engine's lock."""
        with psycopg.connect(self.database_url, autocommit=True) as conn, engine_lock(conn, self.engine):
            yield conn

    # -- planning ------------------------------------------------------------------------------------------
    def plan(self, snapshot: LakeSnapshot, delivered: int | None, delivered_table: str | None) -> DeliveryPlan:
        """What to load to bring the engine from ``delivered`` to the snapshot (see the module's documentation)."""
        version, lake_table = snapshot.version, table_id(snapshot)
        plan = DeliveryPlan(self.engine, delivered, version, lake_table, "idle")
        if version is None:
            plan.reason = "the lake has no table yet"
            return plan
        files = _files_by_day(snapshot)
        if delivered is None:
            return self._full(plan, files, "first delivery")
        if delivered_table is not None and delivered_table != lake_table:
            return self._full(plan, files, f"the lake's table was re-created (id {delivered_table} -> {lake_table})")
        if delivered > version:
            return self._full(plan, files, f"the lake is at version {version}, behind the delivered {delivered}")
        if delivered == version:
            plan.reason = "up to date"
            return plan
        try:
            added, replaced = self._changes(delivered, version)
        except FileNotFoundError as exc:
            return self._full(plan, files, f"the lake's log no longer has a commit after version {delivered} "
                                           f"({type(exc).__name__})")
        current = {path for paths in files.values() for path in paths}
        for path, day in sorted(added.items()):
            if day in replaced:
                continue
            if path not in current:  # cannot happen with a consistent log: the day is replaced to be sure
                replaced.add(day)
                plan.merge.pop(day, None)
                continue
            plan.merge.setdefault(day, []).append(path)
        plan.replace = {day: files.get(day, []) for day in sorted(replaced)}
        plan.mode = "incremental"
        return plan

    def _full(self, plan: DeliveryPlan, files: dict[date, list[str]], reason: str) -> DeliveryPlan:
        plan.mode, plan.reason = "full", reason
        held = self.table.days()
        plan.fill = {day: paths for day, paths in files.items() if day not in held}
        plan.replace = {day: files.get(day, []) for day in sorted(held)}  # a day the lake does not have: emptied
        plan.replace.update({day: paths for day, paths in files.items() if day in held})
        plan.replace = dict(sorted(plan.replace.items()))
        return plan

    def _changes(self, after: int, upto: int) -> tuple[dict[str, date], set[date]]:
        """Files added since ``after`` that the engine has not received (net of later removals), and the days
        whose received files a data change removed. Read one commit at a time, to tell compactions apart."""
        added: dict[str, date] = {}
        replaced: set[date] = set()
        for version in range(after + 1, upto + 1):
            actions = self.lake.actions(version - 1, version)
            rearranging = not actions.data_change  # compaction, z-order: every file action ``dataChange: false``
            taken_in: set[date] = set()  # days where a compaction took in files the engine has not received
            for path, day in actions.removed.items():
                if added.pop(path, None) is not None:
                    taken_in.add(day)
                elif not rearranging:
                    replaced.add(day)
            for path, day in actions.added.items():
                if rearranging and day not in taken_in:
                    continue  # the same rows as files the engine holds
                added[path] = day
        return added, replaced

    # -- delivering ----------------------------------------------------------------------------------------
    def deliver(self, run_id: str | None = None) -> Delivery:
        """Bring the engine up to the lake's latest version, exactly once (see the module's documentation)."""
        started = time.perf_counter()
        with self.locked() as conn:
            self._ensure_table()
            for attempt in range(1, MAX_PLANS + 1):
                snapshot = self.lake.snapshot()
                delivered, delivered_table = delivered_version(conn, self.engine)
                plan = self.plan(snapshot, delivered, delivered_table)
                outcome = Delivery(self.engine, "idle", plan.mode, delivered, plan.version, plans=attempt)
                if plan.mode == "idle":
                    outcome.to_version = delivered
                    outcome.notes.append(plan.reason)
                    outcome.seconds = time.perf_counter() - started
                    return outcome
                if plan.reason:
                    outcome.notes.append(plan.reason)
                try:
                    self._load(snapshot, plan.replace, plan.merge, outcome, fill=plan.fill)
                except FileNotFoundError as exc:
                    if attempt == MAX_PLANS:
                        raise
                    log.warning("%s delivery: a file of lake version %s vanished (%s); planning again", self.engine,
                                plan.version, exc)
                    continue
                crash_point("after_remote_load")
                conn.execute(query("lake/record_delivery"), {
                    "engine": self.engine, "lake_version": plan.version, "lake_table_id": plan.table_id,
                    "mode": plan.mode, "days_replaced": len(outcome.days_replaced),
                    "days_merged": len(outcome.days_merged), "rows_loaded": outcome.rows, "run_id": run_id})
                outcome.status = "delivered"
                outcome.seconds = time.perf_counter() - started
                log.info("%s: lake %s -> %s (%s): %d day(s) replaced, %d merged, %d rows in %.2f s", self.engine,
                         delivered, plan.version, plan.mode, len(outcome.days_replaced), len(outcome.days_merged),
                         outcome.rows, outcome.seconds)
                return outcome
        raise AssertionError("unreachable")

    def replace_days(self, days: Sequence[date], run_id: str | None = None) -> Delivery:
        """Make each of ``days`` hold exactly the lake's current rows of it (one atomic replace per day; a day the
        lake does not have is emptied). The delivered version is left as it is: the next delivery replaces again
        any of these days a later commit changed (idempotent)."""
        started = time.perf_counter()
        with self.locked():
            self._ensure_table()
            snapshot = self.lake.snapshot()
            files = _files_by_day(snapshot)
            outcome = Delivery(self.engine, "replaced", "replace", to_version=snapshot.version, plans=1)
            self._load(snapshot, {day: files.get(day, []) for day in sorted(set(days))}, {}, outcome)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _ensure_table(self) -> None:
        """The engine's table exists, with every column of the schema (retried like a load)."""
        self._retrying(self.table.ensure_table, Delivery(self.engine, "", ""))

    def _load(self, snapshot: LakeSnapshot, replace: dict[date, list[str]], merge: dict[date, list[str]],
              outcome: Delivery, fill: dict[date, list[str]] | None = None) -> None:
        """Run the plan's loads, each retried on transient errors: the days to fill (the engine holds nothing of
        them) together, by ``fill_days`` (they count as replaced: they are, from nothing); then one load per day,
        ``parallel_loads`` of them at a time when the engine takes concurrent loads (days are disjoint: the order
        does not matter)."""
        fill = fill or {}
        started = time.perf_counter()
        listing = snapshot.files()
        sizes = dict(zip(listing.column("path").to_pylist(), listing.column("size_bytes").to_pylist(), strict=True))
        tag = f"{outcome.from_version if outcome.from_version is not None else 'none'}-{outcome.to_version}"
        loads = {day: ("replace", replace[day]) for day in replace}
        loads.update({day: ("merge", paths) for day, paths in merge.items() if day not in loads})
        methods = {"replace": self.table.replace_day, "merge": self.table.merge_files}
        sources = _Sources(self.lake, snapshot, self.table.uri_schemes)
        rows: dict[date, int] = {}
        fill = {day: paths for day, paths in fill.items() if day not in loads}
        # days the engine holds nothing of: together (one load where the files are read in place), else day by day
        batches = [fill] if sources.in_place else [{day: paths} for day, paths in sorted(fill.items())]
        for batch in batches:
            if not batch:
                continue
            first, last = min(batch), max(batch)
            load_id = f"lake-{outcome.mode}-{tag}-{first:%Y%m%d}-{last:%Y%m%d}"
            with ExitStack() as stack:
                files = {day: stack.enter_context(sources.files(paths)) for day, paths in batch.items()}
                rows.update(self._retrying(lambda: self.table.fill_days(files, load_id), outcome))  # noqa: B023

        def load(day: date) -> int:
            kind, paths = loads[day]
            day_started = time.perf_counter()
            with sources.files(paths) as files:
                loaded = self._retrying(lambda: methods[kind](day, files, f"lake-{outcome.mode}-{tag}-{day:%Y%m%d}"),
                                        outcome)
            outcome.day_seconds[day] = time.perf_counter() - day_started  # one key per thread: no lock needed
            return loaded

        workers = max(1, min(int(getattr(self.table, "parallel_loads", 1)), len(loads)))
        if workers == 1:
            rows.update({day: load(day) for day in sorted(loads)})
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix=f"{self.engine}-load") as pool:
                futures = {day: pool.submit(load, day) for day in sorted(loads)}
                rows.update({day: future.result() for day, future in futures.items()})
        loads.update({day: ("fill", paths) for day, paths in fill.items()})
        for day in sorted(loads):
            kind, paths = loads[day]
            (outcome.days_merged if kind == "merge" else outcome.days_replaced).append(day)
            outcome.days[day] = rows[day]
            outcome.day_files[day] = len(paths)
            outcome.day_bytes[day] = sum(int(sizes.get(p) or 0) for p in paths)
            outcome.files += outcome.day_files[day]
            outcome.bytes += outcome.day_bytes[day]
        outcome.load_seconds += time.perf_counter() - started

    def _retrying(self, action: Callable[[], T], outcome: Delivery) -> T:
        """``action`` retried on the engine's transient errors (not on a vanished file: that needs a new plan)."""

        def transient(exc: BaseException) -> bool:
            return isinstance(exc, self.table.transient_errors) and not isinstance(exc, FileNotFoundError)

        def count(_state) -> None:
            with self._count_lock:
                outcome.retries += 1

        retrying = Retrying(stop=stop_after_attempt(self.retries + 1), reraise=True,
                            wait=wait_random_exponential(multiplier=self.backoff_seconds, max=30),
                            retry=retry_if_exception(transient), before_sleep=count)
        return retrying(action)


def _files_by_day(snapshot: LakeSnapshot) -> dict[date, list[str]]:
    files = snapshot.files()
    found: dict[date, list[str]] = {}
    for path, day in zip(files.column("path").to_pylist(), files.column("event_date").to_pylist(), strict=True):
        found.setdefault(day, []).append(path)
    return {day: sorted(paths) for day, paths in sorted(found.items())}


class _Sources:
    """The lake's data files as an engine takes them: local paths for a local lake; URIs for an object-store lake
    whose scheme the engine loads itself; otherwise copies in a temporary directory, kept for the load."""

    def __init__(self, lake: EventLake, snapshot: LakeSnapshot, uri_schemes: Sequence[str]) -> None:
        self.lake = lake
        self.snapshot = snapshot
        self.local = lake.location.is_local
        self.direct = not self.local and lake.uri.startswith(tuple(uri_schemes))
        #: the engine reads the files where they are (no copies on this machine)
        self.in_place = self.local or self.direct

    @contextmanager
    def files(self, paths: Sequence[str]) -> Iterator[list[Source]]:
        """The files as the engine loads them. A file some of whose rows lack their typed amount (written before
        the ``amount`` columns existed, or rewritten since by delta-rs, which keeps their NULLs) is given as a
        filled copy instead (``engine_rows``): the engine's ``amount`` is never NULL for want of a fill."""
        if self.direct and not any(map(self._needs_amounts, paths)):
            yield [self.snapshot.file_uri(p) for p in paths]
            return
        with tempfile.TemporaryDirectory(prefix="workdev_lake_files_") as folder:
            sources: list[Source] = []
            for i, path in enumerate(paths):
                local = Path(self.snapshot.file_uri(path)) if self.local else None
                if local is None:
                    local = Path(folder) / f"{i:05d}.parquet"
                    with self._fs().open_input_stream(path) as source, open(local, "wb") as sink:
                        shutil.copyfileobj(source, sink, 1 << 20)
                if _needs_amounts(pq.ParquetFile(local)):
                    filled = Path(folder) / f"{i:05d}-amounts.parquet"
                    _write_with_amounts(local, filled)
                    local = filled
                sources.append(local)
            yield sources

    def _fs(self) -> pafs.FileSystem:
        return pafs.PyFileSystem(DeltaStorageHandler(self.lake.uri, options=self.lake.storage_options))

    def _needs_amounts(self, path: str) -> bool:
        with self._fs().open_input_file(path) as stream:
            return _needs_amounts(pq.ParquetFile(stream))


def _needs_amounts(file: pq.ParquetFile) -> bool:
    """Whether some rows of the data file lack their typed amount (``amount_overflow`` NULL or missing)."""
    if "amount_overflow" not in file.schema_arrow.names:
        return True
    return file.read(columns=["amount_overflow"]).column(0).null_count > 0


def _write_with_amounts(source: Path, target: Path) -> None:
    """``source``'s rows with their typed amounts (``engine_rows``), batch by batch, as a Parquet file."""
    file = pq.ParquetFile(source)
    writer: pq.ParquetWriter | None = None
    try:
        for batch in file.iter_batches(batch_size=64 * 1024):
            rows = engine_rows(pa.Table.from_batches([batch]))
            if writer is None:
                writer = pq.ParquetWriter(target, rows.schema, compression="zstd")
            writer.write_table(rows)
        if writer is None:  # no rows
            writer = pq.ParquetWriter(target, engine_rows(file.schema_arrow.empty_table()).schema)
    finally:
        if writer is not None:
            writer.close()
