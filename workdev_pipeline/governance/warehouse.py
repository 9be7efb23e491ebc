"""The warehouses' part in retention and erasure: what every engine implements (:class:`GovernedWarehouse`), and
the local engine's implementation (day-partitioned Parquet, rewritten under the consumer's lock).

Another engine gets the same treatment by implementing the protocol with its own statements -- e.g. BigQuery:
``DELETE FROM t WHERE DATE(timestamp) <= @last_day AND timestamp < cutoff(event_type)`` for retention, a MERGE
of the refreshed rows (``sql/queries/governance/refreshed_events.sql`` extracted as the sweep extracts) for
erasure -- and by being returned from :func:`governed_warehouses`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from workdev_pipeline.governance.common import PAIR_SEPARATOR, keyed_hash
from workdev_pipeline.governance.policy import RetentionPolicy
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.sql_files import query

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
    """The governed engines of warehouse resources (one, or a list: the local warehouse, and BigQuery/Redshift,
    which offer their own ``governance(database_url)``)."""
    from workdev_pipeline.resources.local import LocalWarehouseResource

    found: list[GovernedWarehouse] = []
    for warehouse in warehouses if isinstance(warehouses, list | tuple) else [warehouses]:
        if isinstance(warehouse, LocalWarehouseResource):
            found.append(LocalGovernedWarehouse(warehouse.ingestor(database_url)))
            continue
        governance = getattr(warehouse, "governance", None)
        if not callable(governance):
            raise TypeError(f"no retention/erasure support for warehouse {type(warehouse).__name__}")
        found += governance(database_url)
    return found


class LocalGovernedWarehouse:
    """The local warehouse: Parquet under ``event_date=YYYY-MM-DD/``, read with DuckDB, rewritten day by day under
    the consumer's lock with :meth:`Ingestor.rewrite_days` (each day swapped in whole)."""

    def __init__(self, ingestor: Ingestor, *, workers: int = 2) -> None:
        self.ingestor = ingestor
        self.files = ingestor.files
        self.consumer = ingestor.consumer
        self.workers = workers

    # -- reading -------------------------------------------------------------------------------------------
    def _query(self, sql: str, parameters: list[Any], tables: Mapping[str, pa.Table] | None = None) -> list[tuple]:
        """DuckDB over every file of the table (hive-partitioned by event_date); [] when there is none. Retried once
        when a file vanishes mid-read (a day swapped by a concurrent sweep or rebuild)."""
        if not any(self.files.day_files(d) for d in self.files.days()):
            return []
        for attempt in (1, 2):
            con = duckdb.connect()
            try:
                for name, table in (tables or {}).items():
                    con.register(name, table)
                return con.execute(sql.replace("{events}", "read_parquet(?, hive_partitioning = true, "
                                                           "hive_types = {'event_date': DATE})"),
                                   [self.files.glob(), *parameters]).fetchall()
            except duckdb.IOException:
                if attempt == 2:
                    raise
            finally:
                con.close()
        return []

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
        """Days whose every event has expired are removed, days with some expired events rewritten without them
        (filtering the Parquet: the rule needs only event_type and timestamp, the kept rows stay exactly as they were
        loaded, and it is several times faster than rebuilding the days from PostgreSQL), each compacted into
        one file as a rebuild writes it. One DuckDB pass plans it. Days wholly before the oldest cut-off are removed
        unread (counted by the plan: any event they could hold has expired); the others are filtered again under
        the lock, so what goes is exactly what expired. Removals and rewrites share one hold of the consumer's lock,
        and ``before_release()`` runs before it is let go (:func:`apply_retention` waits there for PostgreSQL's
        deletes, run meanwhile)."""
        started = time.perf_counter()
        result = WarehouseRetention(self.consumer, dry_run)
        plan = {d: c for d, c in self.expired_by_day(policy).items() if sum(e for e, _ in c.values())}
        # day directories left without files (a rebuild of a day with no events) that no event can reach any more
        plan.update({d: {} for d in self.files.days() if policy.day_wholly_expired(d) and not self.files.day_files(d)})
        whole = sorted(d for d in plan if policy.day_wholly_expired(d))
        events: Counter[str] = Counter()
        for day in whole:
            events.update({c: e for c, (e, _) in plan[day].items() if e})
        if dry_run:
            for day, categories in sorted(plan.items()):
                if day not in whole:
                    events.update({c: e for c, (e, _) in categories.items() if e})
                    gone = all(e == t for e, t in categories.values())
                    (result.days_removed if gone else result.days_rewritten).append(day)
            result.days_removed = sorted(result.days_removed + whole)
            result.events = dict(events)
            result.seconds = time.perf_counter() - started
            return result

        lock = threading.Lock()

        def keep(day: date, table: pa.Table) -> pa.Array:
            expired = policy.expired_mask(table.column("event_type"), table.column("timestamp"))
            if pc.any(expired).as_py():
                gone = pc.value_counts(table.column("event_category").filter(expired)).to_pylist()
                with lock:
                    events.update({g["values"]: g["counts"] for g in gone})
            return pc.invert(expired)

        outcome = self.ingestor.rewrite_days(sorted(set(plan) - set(whole)), keep=keep,
                                             keep_columns=("event_type", "event_category", "timestamp"),
                                             run_id=run_id, workers=self.workers, compact=True, remove=whole,
                                             before_release=before_release)
        result.events = {c: n for c, n in events.items() if n}
        result.days_removed = sorted(d for d, rows in outcome.days.items() if rows == 0)
        result.days_rewritten = sorted(d for d, rows in outcome.days.items() if rows > 0)
        result.seconds = time.perf_counter() - started
        return result

    # -- erasure -------------------------------------------------------------------------------------------
    def user_rows(self, user_id: str) -> list[tuple[str, datetime, str | None]]:
        return [tuple(r) for r in self._query(
            'SELECT event_id, "timestamp", event_type FROM {events} WHERE user_id = ?', [user_id])]

    def refresh(self, conn: psycopg.Connection, *, run_id: str | None = None) -> WarehouseRefresh:
        started = time.perf_counter()
        result = WarehouseRefresh(self.consumer)
        queued = conn.execute(query("governance/queued_refresh"), {"consumer": self.consumer}).fetchall()
        if not queued:
            return result
        owners: dict[date, dict[str, int | None]] = {}
        for event_id, timestamp, request_id in queued:
            owners.setdefault(timestamp.astimezone(UTC).date(), {})[str(event_id)] = request_id
        ids = {day: pa.array(list(events), pa.string()) for day, events in owners.items()}
        counted: Counter[int | None] = Counter()
        lock = threading.Lock()

        def keep(day: date, table: pa.Table) -> pa.Array:
            hit = pc.is_in(table.column("event_id"), value_set=ids[day])
            if pc.any(hit).as_py():
                dropped = table.column("event_id").filter(hit).to_pylist()
                with lock:
                    counted.update(owners[day][e] for e in dropped)
            return pc.invert(hit)

        def after_day(locked: psycopg.Connection, day: date) -> None:
            locked.execute(query("governance/dequeue_refresh"),
                           {"consumer": self.consumer, "event_ids": list(owners[day])})

        outcome = self.ingestor.rewrite_days(sorted(owners), keep=keep, keep_columns=("event_id",),
                                             append="governance/refreshed_events", after_day=after_day,
                                             run_id=run_id, workers=self.workers)
        result.rows_by_request = dict(counted)
        result.days = dict(outcome.days)
        result.rows_appended = outcome.events_loaded
        result.seconds = time.perf_counter() - started
        return result

    def traces(self, key: bytes, hashes: Mapping[str, set[str]], user_types: Collection[str]) -> WarehouseTraces:
        found = WarehouseTraces(self.consumer)
        # a cheap text test first, the JSON parsed only where a personal key may be
        may_hold = " OR ".join(f"contains(event_data::VARCHAR, '\"{k}\"')" for k in PERSONAL_DATA_KEYS)
        holds = " OR ".join(f"json_exists(event_data, '$.{k}')" for k in PERSONAL_DATA_KEYS)

        def add(kind: str, value: str | None, rows: int) -> None:
            if value is None:
                return
            h = keyed_hash(key, value)
            if h in hashes.get(kind, ()):
                found.rows.setdefault(kind, {})
                found.rows[kind][h] = found.rows[kind].get(h, 0) + rows

        if user_types:
            rows = self._query(f"SELECT count(*) FROM {{events}} WHERE user_id IS NULL AND ({may_hold}) "
                               f"AND list_contains(?, event_type) AND ({holds})", [sorted(user_types)])
            found.anonymised_with_personal_data = rows[0][0] if rows else 0
            wanted = set().union(*(hashes.get(k, set()) for k in ("user_id", *PERSONAL_DATA_KEYS)))
            if wanted:  # every string of the anonymised rows' payloads and metadata, whatever its key
                for data, metadata in self._query("SELECT event_data::VARCHAR, metadata::VARCHAR FROM {events} "
                                                  "WHERE user_id IS NULL AND list_contains(?, event_type)",
                                                  [sorted(user_types)]):
                    for text in (data, metadata):
                        for value in _strings(json.loads(text) if text else None):
                            h = keyed_hash(key, value)
                            if h in wanted:
                                found.anonymised_values[h] = found.anonymised_values.get(h, 0) + 1
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


def _strings(value: Any) -> Iterator[str]:
    """Every string value in a JSON value (not its keys)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
