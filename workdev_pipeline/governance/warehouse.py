"""The stores' part in retention and erasure: what every store of the enriched events implements
(:class:`GovernedWarehouse`), and the lake's implementation (Delta commits under the lake consumer's lock, then a
vacuum of the files that still held the data). BigQuery and Redshift implement it in place, with statements run
in the engine (:mod:`workdev_pipeline.governance.engines`).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from functools import partial
from typing import Any, Protocol

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from workdev_pipeline.governance.common import PAIR_SEPARATOR, keyed_hash
from workdev_pipeline.governance.policy import RetentionPolicy
from workdev_pipeline.ingest.extract import EventReader
from workdev_pipeline.ingest.faults import crash_point
from workdev_pipeline.ingest.ingest_times import IngestTimes
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.ingest.transform import Failures
from workdev_pipeline.lake.events import days_predicate
from workdev_pipeline.sql_files import query

#: Hours a retention run's vacuum keeps the files it removed from the lake (time travel); erasure vacuums at once.
RETENTION_VACUUM_ENV = "WORKDEV_LAKE_RETENTION_VACUUM_HOURS"
#: The payload keys the seed's anonymise statement removes (``event_data - 'email' - 'phone' - 'address'``).
PERSONAL_DATA_KEYS = ("email", "phone", "address")


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
    seconds: float = 0.0


@dataclass
class WarehouseTraces:
    """Rows of one warehouse still carrying a hashed value: {hash: rows} per kind (``user_id``, ``email``, ...)."""

    consumer: str
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    anonymised_with_personal_data: int = 0  # user-less rows of user-requiring types with a personal payload key
    anonymised_values: dict[str, int] = field(default_factory=dict)  # hash -> such rows with it as a string value

    def add_anonymised(self, key: bytes, wanted: set[str], *texts: str | None) -> None:
        """Count, for an anonymised row, each string of its JSON ``texts`` (payload, metadata) whose keyed hash is
        ``wanted``, whatever its key."""
        for text in texts:
            for value in json_strings(json.loads(text) if text else None):
                h = keyed_hash(key, value)
                if h in wanted:
                    self.anonymised_values[h] = self.anonymised_values.get(h, 0) + 1

    def add(self, key: bytes, hashes: Mapping[str, set[str]], kind: str, value: str | None, rows: int) -> None:
        """Count ``rows`` under ``kind`` when ``value``'s keyed hash is one of ``hashes[kind]``."""
        if value is None:
            return
        h = keyed_hash(key, value)
        if h in hashes.get(kind, ()):
            self.rows.setdefault(kind, {})
            self.rows[kind][h] = self.rows[kind].get(h, 0) + rows


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

    def refresh(self, conn: psycopg.Connection, *, run_id: str | None = None) -> WarehouseRefresh:
        """Re-derive the rows of the events queued for this consumer in ``warehouse_event_refresh`` from
        PostgreSQL (their rows dropped, their current rows written back), and dequeue them."""
        ...

    def traces(self, key: bytes, hashes: Mapping[str, set[str]], user_types: Collection[str]) -> WarehouseTraces:
        """Rows carrying any hashed value of ``hashes`` ({kind: hashes}; kinds ``user_id``, ``email``, ``phone``,
        ``address``, ``ip_user_agent`` -- the last on rows without a user only), and rows without a user of a type
        in ``user_types`` (which require one: only an erasure leaves them so) that still carry a personal key."""
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

    # -- reading -------------------------------------------------------------------------------------------
    def _query(self, sql: str, parameters: list[Any], tables: Mapping[str, pa.Table] | None = None) -> list[tuple]:
        """DuckDB over the lake's latest snapshot (``{events}``: its rows, with ``event_date``)."""
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
        finally:
            con.close()

    def expired_by_day(self, policy: RetentionPolicy) -> dict[date, dict[str, tuple[int, int]]]:
        """{day: {category: (expired, total)}} over the days that may hold expired events."""
        rows = self._query(
            'SELECT e.event_date, e.event_category, count(*) FILTER (WHERE e."timestamp" < c.cutoff), count(*) '
            "FROM {events} e LEFT JOIN cutoffs c ON c.event_type = e.event_type "
            "WHERE e.event_date <= ? GROUP BY ALL",
            [policy.newest_cutoff.date()], {"cutoffs": policy.cutoff_table()})
        plan: dict[date, dict[str, tuple[int, int]]] = {}
        for day, category, expired, total in rows:
            plan.setdefault(day, {})[category] = (expired, total)
        return plan

    # -- retention -----------------------------------------------------------------------------------------
    def apply_retention(self, policy: RetentionPolicy, *, dry_run: bool = False, run_id: str | None = None,
                        before_release: Callable[[], None] | None = None) -> WarehouseRetention:
        """One Delta DELETE of every expired event (days wholly expired by partition, the others by each type's
        cut-off: the predicate names only dates, types and instants), planned and done under the lake's lock, then
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
            'SELECT event_id, "timestamp", event_type FROM {events} WHERE user_id = ?', [user_id])]

    def refresh(self, conn: psycopg.Connection, *, run_id: str | None = None) -> WarehouseRefresh:
        """The queued events' days overwritten in one commit -- their rows dropped and written back as PostgreSQL
        now holds them, enriched as a rebuild would -- then the queue emptied and the lake vacuumed at once (the
        log names only the days)."""
        started = time.perf_counter()
        result = WarehouseRefresh(self.consumer)
        with self.ingestor.locked() as locked:
            self.ingestor.finish_running_sweep(locked, run_id)
            queued = locked.execute(query("governance/queued_refresh"), {"consumer": self.consumer}).fetchall()
            if not queued:
                return result
            owners: dict[str, int | None] = {str(event_id): request_id for event_id, _, request_id in queued}
            days = sorted({timestamp.astimezone(UTC).date() for _, timestamp, _ in queued})
            ids = pa.array(list(owners), pa.string())
            counted: Counter[int | None] = Counter()
            appended = Counter()
            failures = Failures()
            snapshot = self.lake.snapshot()
            watermark = locked.execute(query("ingest/consumer_watermark"), {"consumer": self.consumer}).fetchone()[0]
            transformer = self.ingestor.transformer(locked)
            ingest_times = IngestTimes(locked, self.consumer)
            kept: Counter[date] = Counter()

            def tables() -> Iterator[pa.Table]:
                with EventReader(self.ingestor.url, batch_bytes=self.ingestor.batch_bytes) as reader:
                    for day in days:
                        for batch in snapshot.dataset(days=[day]).to_batches():
                            hit = pc.is_in(batch.column("event_id"), value_set=ids)
                            if pc.any(hit).as_py():
                                counted.update(owners[e] for e in batch.column("event_id").filter(hit).to_pylist())
                                table = without_rows(pa.Table.from_batches([batch]), hit)
                            else:
                                table = pa.Table.from_batches([batch])
                            kept[day] += table.num_rows
                            yield table
                        start = datetime.combine(day, dtime.min, tzinfo=UTC)
                        for chunk in reader.stream("governance/refreshed_events", consumer=self.consumer,
                                                   tx_high=watermark, day_start=start,
                                                   day_end=start + timedelta(days=1)):
                            table, bad = transformer.transform(chunk, ingest_times)
                            failures.extend(bad)
                            appended[day] += table.num_rows
                            yield table

            self.lake.replace_days(days, tables())
            crash_point("after_commit")
            with locked.transaction():
                self.ingestor.record_failures(locked, failures)
                locked.execute(query("governance/dequeue_refresh"),
                               {"consumer": self.consumer, "event_ids": list(owners)})
            self.lake.vacuum(0)
        result.rows_by_request = dict(counted)
        result.days = {day: kept[day] + appended[day] for day in days}
        result.rows_appended = sum(appended.values())
        result.seconds = time.perf_counter() - started
        return result

    def traces(self, key: bytes, hashes: Mapping[str, set[str]], user_types: Collection[str]) -> WarehouseTraces:
        found = WarehouseTraces(self.consumer)
        # a cheap text test first, the JSON parsed only where a personal key may be
        may_hold = " OR ".join(f"contains(event_data::VARCHAR, '\"{k}\"')" for k in PERSONAL_DATA_KEYS)
        holds = " OR ".join(f"json_exists(event_data, '$.{k}')" for k in PERSONAL_DATA_KEYS)

        add = partial(found.add, key, hashes)

        if user_types:
            rows = self._query(f"SELECT count(*) FROM {{events}} WHERE user_id IS NULL AND ({may_hold}) "
                               f"AND list_contains(?, event_type) AND ({holds})", [sorted(user_types)])
            found.anonymised_with_personal_data = rows[0][0] if rows else 0
            wanted = set().union(*(hashes.get(k, set()) for k in ("user_id", *PERSONAL_DATA_KEYS)))
            if wanted:  # every string of the anonymised rows' payloads and metadata, whatever its key
                for data, metadata in self._query("SELECT event_data::VARCHAR, metadata::VARCHAR FROM {events} "
                                                  "WHERE user_id IS NULL AND list_contains(?, event_type)",
                                                  [sorted(user_types)]):
                    found.add_anonymised(key, wanted, data, metadata)
        if hashes.get("user_id"):
            for user_id, rows in self._query(
                    "SELECT user_id, count(*) FROM {events} WHERE user_id IS NOT NULL GROUP BY ALL", []):
                add("user_id", user_id, rows)
        if any(hashes.get(k) for k in PERSONAL_DATA_KEYS):
            extract = ", ".join(f"json_extract_string(event_data, '$.{k}')" for k in PERSONAL_DATA_KEYS)
            for *values, rows in self._query(f"SELECT {extract}, count(*) FROM {{events}} WHERE {may_hold} "
                                             "GROUP BY ALL", []):
                for k, value in zip(PERSONAL_DATA_KEYS, values, strict=True):
                    add(k, value, rows)
        if hashes.get("ip_user_agent"):  # the pipeline never loads them; checked all the same
            for ip, ua, rows in self._query(
                    "SELECT json_extract_string(metadata, '$.ip_address'), json_extract_string(metadata, "
                    "'$.user_agent'), count(*) FROM {events} WHERE user_id IS NULL AND "
                    "contains(metadata::VARCHAR, '\"ip_address\"') GROUP BY ALL", []):
                if ip is not None and ua is not None:
                    add("ip_user_agent", ip + PAIR_SEPARATOR + ua, rows)
        return found


def json_strings(value: Any) -> Iterator[str]:
    """Every string value in a JSON value (not its keys)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from json_strings(v)


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
