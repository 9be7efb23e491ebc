"""The stores' part in retention and erasure: what every store of the enriched events implements
(:class:`GovernedWarehouse`), and the lake's implementation (Delta commits under the lake consumer's lock, then a
vacuum of the files that still held the data). BigQuery and Redshift implement it in place, with statements run
in the engine (:mod:`workdev_pipeline.governance.engines`).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from workdev_pipeline.governance.common import PAIR_SEPARATOR
from workdev_pipeline.governance.personal import Removed, erase_own
from workdev_pipeline.governance.policy import RetentionPolicy
from workdev_pipeline.governance.traces import TraceSearch
from workdev_pipeline.ingest.extract import EventReader
from workdev_pipeline.ingest.faults import crash_point
from workdev_pipeline.ingest.ingest_times import IngestTimes
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.ingest.transform import Failures
from workdev_pipeline.lake.events import LAKE_SCHEMA, LakeSnapshot, days_predicate, to_lake
from workdev_pipeline.lake.integrity import diagnose, require_intact
from workdev_pipeline.sql_files import query

#: The lake's pages read with their checksums verified (as the deep check reads them).
VERIFIED = ds.ParquetFragmentScanOptions(page_checksum_verification=True)
#: Hours a retention run's vacuum keeps the files it removed from the lake (time travel); erasure vacuums at once.
RETENTION_VACUUM_ENV = "WORKDEV_LAKE_RETENTION_VACUUM_HOURS"

log = logging.getLogger(__name__)

@dataclass
class WarehouseRetention:
    """What retention removed from one warehouse (or would, in a dry run)."""

    consumer: str
    dry_run: bool
    events: dict[str, int] = field(default_factory=dict)  # category -> events
    days_removed: list[date] = field(default_factory=list)  # every event of the day expired
    days_rewritten: list[date] = field(default_factory=list)  # some did
    seconds: float = 0.0


@dataclass
class WarehouseRefresh:
    """What an erasure's refresh rewrote in one warehouse."""

    consumer: str
    rows_by_request: dict[int | None, int] = field(default_factory=dict)  # the warehouse's rows of queued events
    days: dict[date, int] = field(default_factory=dict)  # rows each rewritten day holds now
    rows_appended: int = 0  # the events' current (anonymised) rows written back
    files_replaced: int = 0  # data files rewritten (a lake's)
    seconds: float = 0.0


class GovernedWarehouse(Protocol):
    """One warehouse engine's part in retention and erasure."""

    #: The consumer name (its watermark, dead letter, sync status and refresh queue are kept under it).
    consumer: str

    def apply_retention(self, policy: RetentionPolicy, *, dry_run: bool = False,
                        run_id: str | None = None) -> WarehouseRetention:
        """Remove every expired event (a dry run only counts them), by category."""
        ...

    def user_rows(self, user_id: str) -> list[tuple[str, datetime, str | None]]:
        """(event_id, timestamp, event_type) of every row the warehouse holds for ``user_id``."""
        ...

    def prepare(self, user_id: str) -> PreparedErasure:
        """Begin the store's part of ``user_id``'s erasure before PostgreSQL's (its rows of the user, and whatever
        the store can do ahead of its refresh)."""
        ...

    def refresh(self, conn: psycopg.Connection, *, run_id: str | None = None) -> WarehouseRefresh:
        """Re-derive the rows of the events queued for this consumer in ``warehouse_event_refresh`` from
        PostgreSQL (their rows dropped, their current rows written back), and dequeue them."""
        ...

    def traces(self, search: TraceSearch, pairs: TraceSearch, user_types: Collection[str]) -> int:
        """Feed every string the store holds to ``search`` and the (IP address, user agent) pairs of its rows
        without a user to ``pairs``; return how many rows without a user of a type in ``user_types`` (which
        require one: only an erasure leaves them so) still carry personal data by the catalog."""
        ...


def governed_warehouses(warehouses: Any, database_url: str) -> list[GovernedWarehouse]:
    """The governed stores of resources (one, or a list: the lake first, then BigQuery/Redshift, which offer their
    own ``governance(database_url)``): the engines' erasure reads the lake's refreshed rows."""
    from workdev_pipeline.resources.lake import LakeResource

    found: list[GovernedWarehouse] = []
    for warehouse in warehouses if isinstance(warehouses, list | tuple) else [warehouses]:
        if isinstance(warehouse, LakeResource):
            found.insert(0, LakeGovernedWarehouse(warehouse.ingestor(database_url)))
            continue
        governance = getattr(warehouse, "governance", None)
        if not callable(governance):
            raise TypeError(f"no retention/erasure support for warehouse {type(warehouse).__name__}")
        found += governance(database_url)
    return found


class LakeGovernedWarehouse:
    """The lake: read through one snapshot with DuckDB, changed by Delta commits under the lake consumer's lock
    (:meth:`Ingestor.locked`), each followed by a vacuum so that no old file keeps what was removed."""

    def __init__(self, ingestor: Ingestor, *, retention_vacuum_hours: float | None = None) -> None:
        self.ingestor = ingestor
        self.lake = ingestor.lake
        self.consumer = ingestor.consumer
        self.retention_vacuum_hours = (float(os.environ.get(RETENTION_VACUUM_ENV, "0"))
                                       if retention_vacuum_hours is None else retention_vacuum_hours)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lake-erasure")
        self._enrichment: Future[None] | None = None  # the enrichment's data, loaded on a thread by :meth:`prepare`
        self._read_ahead: list[Future[None]] = []
        self._files_read: dict[str, pa.Table] = {}  # data files read ahead by :meth:`prepare`, by path

    # -- reading -------------------------------------------------------------------------------------------
    def _query(self, sql: str, parameters: list[Any], operation: str,
               tables: Mapping[str, pa.Table] | None = None) -> list[tuple]:
        """DuckDB over the lake's latest snapshot (``{events}``: its rows, with ``event_date``); a read that fails
        on a damaged file raises :class:`LakeDamaged` (``operation`` refused, naming the file and the fix)."""
        import duckdb

        snapshot = self.lake.snapshot()
        if snapshot.table is None:
            return []
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            snapshot.register(con, "lake_events")
            for name, table in (tables or {}).items():
                con.register(name, table)
            return con.execute(sql.replace("{events}", "lake_events"), parameters).fetchall()
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            diagnose(snapshot, None, operation, exc)
            raise
        finally:
            con.close()

    def expired_by_day(self, policy: RetentionPolicy) -> dict[date, dict[str, tuple[int, int]]]:
        """{day: {category: (expired, total)}} over the days that may hold expired events."""
        rows = self._query(
            'SELECT e.event_date, e.event_category, count(*) FILTER (WHERE e."timestamp" < c.cutoff), count(*) '
            "FROM {events} e LEFT JOIN cutoffs c ON c.event_type = e.event_type "
            "WHERE e.event_date <= ? GROUP BY ALL",
            [policy.newest_cutoff.date()], "retention", {"cutoffs": policy.cutoff_table()})
        plan: dict[date, dict[str, tuple[int, int]]] = {}
        for day, category, expired, total in rows:
            plan.setdefault(day, {})[category] = (expired, total)
        return plan

    # -- retention -----------------------------------------------------------------------------------------
    def apply_retention(self, policy: RetentionPolicy, *, dry_run: bool = False, run_id: str | None = None,
                        before_release: Callable[[], None] | None = None) -> WarehouseRetention:
        """One Delta DELETE of every expired event (days wholly expired by partition, the others by each type's
        cut-off: the predicate names only dates, types and instants), planned and done under the lake's lock (refused
        with :class:`LakeDamaged` when a day it reads holds a damaged file), then
        a vacuum (``WORKDEV_LAKE_RETENTION_VACUUM_HOURS``, default 0: at once). ``before_release()`` runs before
        the lock is let go (:func:`apply_retention` waits there for PostgreSQL's deletes, run meanwhile: no rebuild
        can bring an expired event back from the store in between)."""
        started = time.perf_counter()
        result = WarehouseRetention(self.consumer, dry_run)
        if dry_run:
            self._plan(policy, result)
            result.seconds = time.perf_counter() - started
            return result
        with self.ingestor.locked() as conn:
            self.ingestor.finish_running_sweep(conn, run_id)
            self._plan(policy, result)
            # the delete rewrites the partly expired days: never from a damaged file (whole days just go)
            require_intact(self.lake.snapshot(), result.days_rewritten, "retention")
            if result.days_removed or result.days_rewritten:
                self.lake.delete(retention_predicate(policy, result.days_removed, result.days_rewritten),
                                 days=len(result.days_rewritten))
                self.lake.vacuum(self.retention_vacuum_hours)
            if before_release is not None:
                before_release()
        result.seconds = time.perf_counter() - started
        return result

    def _plan(self, policy: RetentionPolicy, result: WarehouseRetention) -> None:
        """What the policy removes: days wholly expired, days partly so, and events per category."""
        events: Counter[str] = Counter()
        for day, categories in sorted(self.expired_by_day(policy).items()):
            expired = {c: e for c, (e, _) in categories.items() if e}
            if not expired:
                continue
            events.update(expired)
            gone = policy.day_wholly_expired(day) or all(e == t for e, t in categories.values())
            (result.days_removed if gone else result.days_rewritten).append(day)
        result.events = dict(events)

    # -- erasure -------------------------------------------------------------------------------------------
    def user_rows(self, user_id: str) -> list[tuple[str, datetime, str | None]]:
        return [tuple(r) for r in self._query(
            'SELECT event_id, "timestamp", event_type FROM {events} WHERE user_id = ?', [user_id], "erasure")]

    def prepare(self, user_id: str) -> PreparedErasure:
        """Begin the lake's part of ``user_id``'s erasure on threads while PostgreSQL's runs: the enrichment's data
        loaded (:meth:`Ingestor.preload_enrichment`, for the refresh's transform); the user's rows (what PostgreSQL's
        transaction queues), then the files holding them read ahead (verified, within the write budget) for
        :meth:`refresh`, which uses those still in the table when it runs."""
        if self._enrichment is None:
            self._enrichment = self.ingestor.preload_enrichment()
            self._read_ahead.append(self._enrichment)
        future = self._executor.submit(self.user_rows, user_id)
        self._read_ahead.append(self._executor.submit(self._read_files_of, future))
        return PreparedErasure(future)

    def _read_files_of(self, rows: Future[list[tuple[str, datetime, str | None]]]) -> None:
        snapshot = self.lake.snapshot()
        paths = snapshot.files_holding(stamp for _, stamp, _ in rows.result())
        fragments = _fragments(snapshot, paths)
        held = sum(t.nbytes for t in self._files_read.values())
        for path in sorted(paths):
            if held > self.lake.write_budget_bytes:
                break
            if path not in self._files_read and path in fragments:
                self._files_read[path] = table = _read(fragments[path])
                held += table.nbytes

    def _files_read_ahead(self) -> dict[str, pa.Table]:
        """What :meth:`prepare` read, once all its work ahead has ended (what failed is only logged: the refresh
        does it again, and fails there if it must)."""
        for future in self._read_ahead:
            try:
                future.result()
            except Exception as exc:
                log.warning("the lake's work ahead of an erasure failed: %s", type(exc).__name__)
        self._read_ahead.clear()
        files, self._files_read = self._files_read, {}
        return files

    def refresh(self, conn: psycopg.Connection, *, run_id: str | None = None) -> WarehouseRefresh:
        """Only the data files holding queued events replaced, in one commit (:meth:`EventLake.replace_files`):
        each such file's other rows kept, the events' rows dropped and written back as PostgreSQL now holds them
        (enriched as a rebuild would), in files of their own per replaced file; then the queue emptied and the lake
        vacuumed at once (the log names only files and days). The files come from the events' timestamps and the
        files' ``timestamp`` statistics. Refused with :class:`LakeDamaged` (the work stays queued) when one of
        those files is damaged."""
        started = time.perf_counter()
        result = WarehouseRefresh(self.consumer)
        read_ahead = self._files_read_ahead()
        with self.ingestor.locked() as locked:
            self.ingestor.finish_running_sweep(locked, run_id)
            queued = locked.execute(query("governance/queued_refresh"), {"consumer": self.consumer}).fetchall()
            if not queued:
                return result
            owners: dict[str, int | None] = {str(event_id): request_id for event_id, _, request_id in queued}
            ids = pa.array(list(owners), pa.string())
            counted: Counter[int | None] = Counter()
            failures = Failures()
            snapshot = self.lake.snapshot()
            candidates = snapshot.files_holding(timestamp for _, timestamp, _ in queued)
            watermark = locked.execute(query("ingest/consumer_watermark"), {"consumer": self.consumer}).fetchone()[0]
            transformer = self.ingestor.transformer(locked)
            ingest_times = IngestTimes(locked, self.consumer)
            # A damaged file is never rewritten (its damage would persist): footers and row counts checked here,
            # every page by the rewrite's own read below (checksums verified), which names the damaged files if it
            # fails.
            require_intact(snapshot, None, "erasure", deep=False, paths=candidates)
            days = sorted({timestamp.astimezone(UTC).date() for _, timestamp, _ in queued})
            current: list[pa.Table] = []
            with EventReader(self.ingestor.url, batch_bytes=self.ingestor.batch_bytes) as reader:
                start = datetime.combine(days[0], dtime.min, tzinfo=UTC)
                for chunk in reader.stream("governance/refreshed_events", consumer=self.consumer, tx_high=watermark,
                                           day_start=start, day_end=datetime.combine(days[-1], dtime.min, tzinfo=UTC)
                                           + timedelta(days=1)):
                    table, bad = transformer.transform(chunk, ingest_times)
                    failures.extend(bad)
                    current.append(to_lake(table))
            fresh = pa.concat_tables(current) if current else None
            placed = pa.array([], pa.string())
            rewritten: Counter[date] = Counter()
            fragments = _fragments(snapshot, candidates)

            def groups() -> Iterator[tuple[list[str], pa.Table]]:
                """Each file holding queued events: its other rows and the events' current rows (the file's
                replacement); then the current rows of events no file held."""
                nonlocal placed
                for path in sorted(candidates):
                    table = read_ahead.pop(path, None)
                    if table is None:
                        table = _read(fragments[path])
                    hit = pc.is_in(table.column("event_id"), value_set=ids)
                    if not pc.any(hit).as_py():
                        continue
                    found = table.column("event_id").filter(hit)
                    counted.update(owners[e] for e in found.to_pylist())
                    parts = [without_rows(table, hit)]
                    if fresh is not None:
                        parts.append(fresh.filter(pc.is_in(fresh.column("event_id"), value_set=found)))
                        placed = pa.concat_arrays([placed, found.combine_chunks()])
                    group = pa.concat_tables(parts)
                    rewritten[candidates[path]] += group.num_rows
                    yield [path], group
                if fresh is not None:
                    rest = fresh.filter(pc.invert(pc.is_in(fresh.column("event_id"), value_set=placed)))
                    for entry in pc.value_counts(rest.column("event_date")).to_pylist() if rest.num_rows else []:
                        rewritten[entry["values"]] += entry["counts"]
                    yield [], rest

            try:
                commit = self.lake.replace_files(groups())
            except Exception as exc:
                diagnose(snapshot, None, "erasure", exc, paths=candidates)
                raise
            crash_point("after_commit")
            with locked.transaction():
                self.ingestor.record_failures(locked, failures)
                locked.execute(query("governance/dequeue_refresh"),
                               {"consumer": self.consumer, "event_ids": list(owners)})
            self.lake.vacuum(0)
        result.rows_by_request = dict(counted)
        result.days = dict(sorted(rewritten.items()))
        result.files_replaced = commit.files_removed
        result.rows_appended = 0 if fresh is None else fresh.num_rows
        result.seconds = time.perf_counter() - started
        return result

    def traces(self, search: TraceSearch, pairs: TraceSearch, user_types: Collection[str]) -> int:
        """Every row of every data file on disk (a local lake: those of older versions too, until vacuumed; an
        object store: the current snapshot's), and the Delta log's files as text."""
        place = f"warehouse:{self.consumer}"
        columns = ["event_type", "user_id", "session_id", "event_data", "metadata"]
        root = self.lake.location.local_path(self.lake.NAME)
        if root is not None:
            files = [p for p in sorted(Path(root).rglob("*.parquet")) if "_delta_log" not in p.parts]
            batches: Iterable[pa.RecordBatch] = (
                b for f in files for b in pq.ParquetFile(f).iter_batches(columns=columns))
            for log_file in sorted((Path(root) / "_delta_log").glob("*")):
                if log_file.is_file():
                    if log_file.suffix == ".parquet":  # a checkpoint: the log's actions as a table
                        search.text("lake_log", json.dumps(pq.read_table(log_file).to_pylist(), default=str))
                    else:
                        search.text("lake_log", log_file.read_text(errors="replace"))
        else:
            snapshot = self.lake.snapshot()
            batches = snapshot.dataset().to_batches(columns=columns) if snapshot.table is not None else iter(())
        return scan_rows(place, (tuple(row.values()) for b in batches for row in b.to_pylist()), search, pairs,
                         user_types)


def scan_rows(place: str, rows: Iterable[tuple[str, str | None, str | None, str | None, str | None]],
              search: TraceSearch, pairs: TraceSearch, user_types: Collection[str]) -> int:
    """Feed (event_type, user_id, session_id, event_data, metadata) rows to the searches; count the rows without a
    user of ``user_types`` that still carry personal data by the catalog."""
    anonymised_with_personal_data = 0
    for event_type, user_id, session_id, data, metadata in rows:
        search.values(place, (user_id, session_id))
        payload = json.loads(data) if data else None
        meta = json.loads(metadata) if metadata else None
        search.document(place, payload)
        search.document(place, meta)
        if user_id is None and isinstance(meta, dict):
            pairs.values(place, ip_user_agent_pairs(meta))
        if user_id is None and event_type in user_types and erase_own(event_type, payload, meta, Removed()) != (
                payload, meta):
            anonymised_with_personal_data += 1
    return anonymised_with_personal_data


def ip_user_agent_pairs(metadata: Any) -> list[str]:
    """The (IP address, user agent) pair of an event's metadata, as the ledger hashes it (routable IPs only)."""
    if isinstance(metadata, dict):
        ip, agent = metadata.get("ip_address"), metadata.get("user_agent")
        if isinstance(ip, str) and isinstance(agent, str) and is_routable(ip):
            return [ip + PAIR_SEPARATOR + agent]
    return []


def is_routable(ip: str) -> bool:
    """Whether an address identifies a network on the internet: private, loopback, link-local, documentation
    and malformed ones are shared by countless devices, so they identify nobody (and are not looked for)."""
    try:
        return ipaddress.ip_address(ip.strip()).is_global
    except ValueError:
        return False


def retention_predicate(policy: RetentionPolicy, whole_days: Iterable[date], partial_days: Iterable[date]) -> str:
    """The Delta predicate of a retention run: the days wholly expired by partition, and in the partly expired
    days each type's events older than its cut-off (types, dates and instants only: nothing personal)."""
    parts = []
    whole = sorted(set(whole_days))
    if whole:
        parts.append(f"({days_predicate(whole)})")
    partial = sorted(set(partial_days))
    if partial:
        by_type = " OR ".join(f"(event_type = '{t}' AND \"timestamp\" < '{c.astimezone(UTC).isoformat()}')"
                              for t, c in sorted(policy.cutoffs.items()) if _is_plain(t))
        parts.append(f"(({days_predicate(partial)}) AND ({by_type}))")
    return " OR ".join(parts)


def _is_plain(event_type: str) -> bool:
    """A catalog event type (``word.word``): safe inside a predicate's quotes."""
    if not all(ch.isalnum() or ch in "._-" for ch in event_type):
        raise ValueError(f"unexpected event type {event_type!r} in the retention policy")
    return True


def without_rows(table: pa.Table, drop: pa.BooleanArray) -> pa.Table:
    """``table`` without the rows where ``drop`` is true: zero-copy slices around a few dropped rows (an erasure's
    in a day of other users' events: a ``filter`` would copy every column of every kept row), a filter otherwise."""
    cuts = pc.indices_nonzero(drop).to_pylist()
    if len(cuts) * 1_024 > table.num_rows:
        return table.filter(pc.invert(drop))
    parts, start = [], 0
    for cut in cuts:
        if cut > start:
            parts.append(table.slice(start, cut - start))
        start = cut + 1
    if start < table.num_rows:
        parts.append(table.slice(start))
    return pa.concat_tables(parts) if parts else table.slice(0, 0)


def _fragments(snapshot: LakeSnapshot, paths: Mapping[str, date]) -> dict[str, _Fragment]:
    """The snapshot's fragments of the data files ``paths`` (as the log names them, with their days), by path."""
    if snapshot.table is None or not paths:
        return {}
    dataset = snapshot.dataset(days=set(paths.values()))
    wanted = {unquote(p): p for p in paths}
    return {wanted[f.path]: _Fragment(f, dataset.schema) for f in dataset.get_fragments() if f.path in wanted}


@dataclass(frozen=True)
class _Fragment:
    fragment: ds.Fragment
    schema: pa.Schema


def _read(fragment: _Fragment) -> pa.Table:
    """A data file's rows as lake rows (``event_date`` included), its pages' checksums verified."""
    rows = fragment.fragment.to_table(schema=fragment.schema, fragment_scan_options=VERIFIED)
    return rows.select(LAKE_SCHEMA.names).cast(LAKE_SCHEMA)


class PreparedErasure:
    """A store's part of one user's erasure, begun before PostgreSQL's (:meth:`GovernedWarehouse.prepare`)."""

    def __init__(self, rows: Future[list[tuple[str, datetime, str | None]]]) -> None:
        self._rows = rows

    @classmethod
    def of(cls, rows: list[tuple[str, datetime, str | None]]) -> PreparedErasure:
        """A part already done: the store's rows of the user."""
        future: Future[list[tuple[str, datetime, str | None]]] = Future()
        future.set_result(rows)
        return cls(future)

    def user_rows(self) -> list[tuple[str, datetime, str | None]]:
        """(event_id, timestamp, event_type) of every row the store holds for the user (waits for them)."""
        return self._rows.result()
