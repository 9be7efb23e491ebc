"""Retention and erasure in a remote warehouse engine (BigQuery, Redshift), in place: a
:class:`~workdev_pipeline.governance.warehouse.GovernedWarehouse` whose every step is a statement run in the engine
(``sql/warehouse/<engine>/``), never "replace the day with what this host has": nothing is read from this machine's
disk, so a run on a new host (an empty ``WORKDEV_HOME``) touches exactly the rows it must.

* **Retention** (:meth:`EngineGovernedWarehouse.apply_retention`): one query plans it -- per UTC day before the
  end of the newest cut-off's day, per category, the rows older than their event type's cut-off and all rows
  (``expired_by_day.sql``) -- and one DELETE removes the expired rows, bounded by the first and last day holding
  any and by the policy's cut-off per event type (``delete_expired.sql``). A dry run (and the
  ``retention_enforced`` check) only plans.
* **Erasure** (:meth:`EngineGovernedWarehouse.refresh`): the events queued for this engine in
  ``warehouse_event_refresh`` (the erased user's events, as PostgreSQL and the engine itself listed them) get the
  lake's current rows -- the lake is refreshed first, so they are anonymised -- in one atomic statement (BigQuery:
  a MERGE deleting the held rows the lake no longer has; Redshift: delete + insert in one transaction), bounded by
  the events' days and their ids; then they are dequeued. A run killed in between redoes it (idempotent).
* **Checks** (:meth:`user_rows`, :meth:`traces`) query the engine.

Everything that writes the engine's table holds the engine's lock (:func:`~workdev_pipeline.lake.delivery.
engine_lock`), so no delivery interleaves. The engine's delivered lake version is left as it is: the lake's own
retention/erasure commits removed files of the days they touched, so the next delivery replaces those days with the
lake's rows -- the same rows the statements here left (idempotent), at the cost of reloading those days once. (It
could advance the version only by proving that the commits since are exactly the lake's governance commits of this
run and that the engine had delivered everything before them; not done.)
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workdev_pipeline.governance.policy import RetentionPolicy
from workdev_pipeline.governance.traces import TraceSearch
from workdev_pipeline.governance.warehouse import (
    PreparedErasure,
    WarehouseRefresh,
    WarehouseRetention,
    ip_user_agent_pairs,
    scan_rows,
)
from workdev_pipeline.ingest.schema import WAREHOUSE_SCHEMA
from workdev_pipeline.lake.delivery import engine_lock
from workdev_pipeline.lake.events import EventLake, engine_rows
from workdev_pipeline.sql_files import query
from workdev_pipeline.warehouses.remote import RemoteEventTable

log = logging.getLogger(__name__)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


class EngineGovernedWarehouse:
    """One engine's part in retention and erasure. ``consumer`` (the engine's name by default) is what its refresh
    queue, ledger counts and reports are kept under."""

    def __init__(self, database_url: str, lake: EventLake, table: RemoteEventTable, *,
                 consumer: str | None = None) -> None:
        self.database_url = database_url
        self.lake = lake
        self.table = table
        self.engine = table.engine
        self.consumer = consumer or table.engine
        self._ensured = False

    def _ensure(self) -> None:
        """The engine's table exists (an engine that never received a delivery holds nothing, and says so)."""
        if not self._ensured:
            self.table.ensure_table()
            self._ensured = True

    # -- retention -----------------------------------------------------------------------------------------
    def apply_retention(self, policy: RetentionPolicy, *, dry_run: bool = False,
                        run_id: str | None = None) -> WarehouseRetention:
        """Plan, and unless ``dry_run`` delete, the engine's expired rows (under the engine's lock)."""
        started = time.perf_counter()
        self._ensure()
        if dry_run:
            result = self._plan(policy, dry_run=True)
        else:
            with psycopg.connect(self.database_url, autocommit=True) as conn, engine_lock(conn, self.engine):
                result = self._plan(policy, dry_run=False)
                if result.days_removed or result.days_rewritten:
                    days = result.days_removed + result.days_rewritten
                    deleted = self.table.delete_expired(policy.cutoffs, _day_start(min(days)),
                                                        _day_start(max(days)) + timedelta(days=1))
                    planned = sum(result.events.values())
                    if deleted >= 0 and deleted != planned:  # nothing else writes the table meanwhile
                        log.warning("%s retention: %d rows deleted where %d were planned", self.engine, deleted,
                                    planned)
        result.seconds = time.perf_counter() - started
        log.info("%s retention%s (run %s): %d expired rows, %d day(s) emptied, %d trimmed", self.engine,
                 " (dry run)" if dry_run else "", run_id, sum(result.events.values()), len(result.days_removed),
                 len(result.days_rewritten))
        return result

    def _plan(self, policy: RetentionPolicy, *, dry_run: bool) -> WarehouseRetention:
        result = WarehouseRetention(self.consumer, dry_run)
        before = _day_start(policy.newest_cutoff.date()) + timedelta(days=1)  # whole days: totals are complete
        by_day: dict[date, list[tuple[int, int]]] = {}
        events: Counter[str] = Counter()
        for day, category, expired, total in self.table.expired_by_day(policy.cutoffs, before):
            by_day.setdefault(day, []).append((expired, total))
            if expired:
                events[category] += expired
        for day, counts in sorted(by_day.items()):
            if any(expired for expired, _ in counts):
                gone = all(expired == total for expired, total in counts)
                (result.days_removed if gone else result.days_rewritten).append(day)
        result.events = dict(events)
        return result

    # -- erasure -------------------------------------------------------------------------------------------
    def user_rows(self, user_id: str) -> list[tuple[str, datetime, str | None]]:
        self._ensure()
        return self.table.user_rows(user_id)

    def prepare(self, user_id: str) -> PreparedErasure:
        """The engine's rows of the user, read now (its refresh reads the lake's refreshed rows: nothing to do
        ahead)."""
        return PreparedErasure.of(self.user_rows(user_id))

    def refresh(self, conn: psycopg.Connection, *, run_id: str | None = None) -> WarehouseRefresh:
        """The queued events' rows replaced by the lake's current rows of them, then dequeued (``conn``:
        autocommit, the erasure's)."""
        started = time.perf_counter()
        result = WarehouseRefresh(self.consumer)
        queued = conn.execute(query("governance/queued_refresh"), {"consumer": self.consumer}).fetchall()
        if not queued:
            return result
        self._ensure()
        owners = {str(event_id): request_id for event_id, _, request_id in queued}
        ids = sorted(owners)
        days = sorted({stamp.astimezone(UTC).date() for _, stamp, _ in queued})
        start, end = _day_start(days[0]), _day_start(days[-1]) + timedelta(days=1)
        load_id = f"erasure-{self.consumer}-{hashlib.sha256(' '.join(ids).encode()).hexdigest()[:16]}"
        snapshot = self.lake.snapshot()
        if snapshot.table is None:  # a wrong WORKDEV_LAKE_URI would otherwise delete the events' rows everywhere
            raise RuntimeError(f"{self.engine} erasure refresh: no events table in the lake at {self.lake.uri}; "
                               "the engines' rows come from the lake, refreshed first")
        with engine_lock(conn, self.engine), tempfile.TemporaryDirectory(prefix="workdev_refresh_") as folder:
            held = self.table.held_event_ids(ids, start, end)
            dataset = snapshot.dataset(days)
            rows = engine_rows(dataset.to_table(  # (a lake not written since it gained the amount columns lacks them)
                columns=[c for c in WAREHOUSE_SCHEMA.names if c in dataset.schema.names],
                filter=pc.field("event_id").isin(ids)))
            paths = []
            if rows.num_rows:
                paths.append(Path(folder) / "refresh.parquet")
                pq.write_table(rows, paths[0])
            result.rows_appended = self.table.refresh_events(ids, start, end, paths, load_id)
            conn.execute(query("governance/dequeue_refresh"), {"consumer": self.consumer, "event_ids": ids})
        result.rows_by_request = dict(Counter(owners[e] for e in held if e in owners))
        if rows.num_rows:
            for entry in pc.value_counts(pc.cast(rows.column("timestamp"), "date32")).to_pylist():
                result.days[entry["values"]] = entry["counts"]
        result.seconds = time.perf_counter() - started
        log.info("%s erasure refresh (run %s): %d queued event(s), %d rows held, %d written back from the lake",
                 self.engine, run_id, len(ids), len(held), result.rows_appended)
        return result

    def traces(self, search: TraceSearch, pairs: TraceSearch, user_types: Collection[str]) -> int:
        """Every row of the engine's table, read from the engine."""
        self._ensure()
        place = f"warehouse:{self.consumer}"
        if pairs:  # the pipeline never loads them; checked all the same
            for ip, agent, rows in self.table.ip_user_agents():
                if ip is not None and agent is not None:
                    pairs.values(place, ip_user_agent_pairs({"ip_address": ip, "user_agent": agent}), rows)
        return scan_rows(place, self.table.payloads(), search, TraceSearch(b"", {}), user_types)
