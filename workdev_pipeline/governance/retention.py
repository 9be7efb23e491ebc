"""Retention (the seed's daily ``apply_data_retention_policy``): every event older than its type's retention goes,
from PostgreSQL and from every warehouse, with its dead-letter and bookkeeping rows.

PostgreSQL, partition by partition (monthly ranges of ``platform_event_store``):

* a partition whose every event has expired is detached and dropped (``drop_expired_event_partition``, which
  re-checks under the DETACH's lock, so a late insert is never dropped with it), and so is an empty one wholly
  before the oldest cut-off. DETACH locks the whole store: it waits at most ``lock_timeout``, is retried a few
  times, and then the partition's rows are deleted instead (the empty partition goes next time);
* otherwise the expired rows are deleted (``delete_expired_events``), the DEFAULT partition included;
* then the dead letter's rows of expired events, and bookkeeping of them (see ``delete_expired_bookkeeping``).

Then each store removes its expired rows itself (:meth:`GovernedWarehouse.apply_retention`), with the same
cut-offs, so they never disagree. The lake does so while PostgreSQL deletes (one runs in the database server, the
other here: a first run over years of history takes the longer of the two, not their sum), and lets go of its
consumer's lock only once PostgreSQL has committed -- so no sweep or day rebuild can bring an expired event
back from the store in between, as when PostgreSQL went first. Last, the erasure ledger's requests finished
longer ago than its retention lose their keyed hashes (:mod:`workdev_pipeline.governance.ledger`). A dry run goes
through the same steps and only counts. Every run is recorded in ``retention_runs``; runs and erasures take turns
(``governance_lock``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from workdev_pipeline.governance.common import governance_lock, parse_instant
from workdev_pipeline.governance.ledger import expire_ledger_hashes, ledger_retention_days
from workdev_pipeline.governance.policy import RetentionPolicy, load_policy
from workdev_pipeline.governance.warehouse import GovernedWarehouse, LakeGovernedWarehouse, WarehouseRetention
from workdev_pipeline.sql_files import query

log = logging.getLogger(__name__)

BOOKKEEPING_TABLES = ("warehouse_event_refresh", "warehouse_rebuild_queue", "ingestion_sweeps",
                      "warehouse_sync_status")


@dataclass
class RetentionReport:
    """What one run removed (or, dry, would remove), per category, per store."""

    as_of: datetime
    dry_run: bool
    policy: RetentionPolicy
    retention_run_id: int | None = None
    postgres: dict[str, int] = field(default_factory=dict)  # category -> events
    partitions_dropped: list[str] = field(default_factory=list)
    partitions_trimmed: dict[str, int] = field(default_factory=dict)  # partition -> rows deleted
    dead_letter_rows: int = 0
    bookkeeping_rows: dict[str, int] = field(default_factory=dict)
    warehouses: list[WarehouseRetention] = field(default_factory=list)
    ledger_hashes_expired: int = 0  # erasure requests whose keyed hashes went (dry: would go)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def postgres_total(self) -> int:
        return sum(self.postgres.values())

    def warehouse(self, consumer: str) -> WarehouseRetention:
        return next(w for w in self.warehouses if w.consumer == consumer)


def apply_retention(database_url: str, warehouses: Sequence[GovernedWarehouse] = (), *,
                    as_of: str | datetime | None = None, dry_run: bool = False, run_id: str | None = None,
                    lock_timeout: str = "2s", detach_attempts: int = 3,
                    ledger_days: int | None = None) -> RetentionReport:
    """Apply (or, ``dry_run``, count) the retention policy as of ``as_of`` (default now; never the future), and
    the erasure ledger's (``ledger_days``, default ``WORKDEV_ERASURE_LEDGER_RETENTION_DAYS`` or 1096)."""
    instant = parse_instant(as_of)
    ledger_days = ledger_retention_days(ledger_days)
    with psycopg.connect(database_url, autocommit=True) as conn, governance_lock(conn):
        policy = load_policy(conn, instant)
        report = RetentionReport(instant, dry_run, policy)
        report.retention_run_id = conn.execute(query("governance/start_retention_run"), {
            "run_id": run_id, "as_of": instant, "dry_run": dry_run, "cutoffs": Jsonb(policy.to_json())}).fetchone()[0]
        try:
            started = time.perf_counter()
            alongside = [w for w in warehouses if isinstance(w, LakeGovernedWarehouse)][:1] if not dry_run else []
            postgres = _Concurrently(lambda: _postgres(conn, policy, report, lock_timeout, detach_attempts))
            if alongside:
                postgres.start()
                try:
                    report.warehouses.append(alongside[0].apply_retention(policy, run_id=run_id,
                                                                          before_release=postgres.join))
                finally:
                    postgres.join()  # the connection is the thread's until it is done, whatever happened here
                report.seconds[f"warehouse:{alongside[0].consumer}"] = report.warehouses[-1].seconds
            else:
                postgres.run()
            report.seconds["postgres"] = postgres.seconds
            for warehouse in warehouses:  # after PostgreSQL: a sweep meanwhile cannot bring back what is deleted
                if warehouse in alongside:
                    continue
                report.warehouses.append(warehouse.apply_retention(policy, dry_run=dry_run, run_id=run_id))
                report.seconds[f"warehouse:{warehouse.consumer}"] = report.warehouses[-1].seconds
            report.ledger_hashes_expired = expire_ledger_hashes(conn, instant, ledger_days, dry_run=dry_run)
            report.seconds["total"] = time.perf_counter() - started
            conn.execute(query("governance/finish_retention_run"), _run_row(report))
        except BaseException as exc:
            conn.execute(query("governance/fail_retention_run"), {
                "retention_run_id": report.retention_run_id, "error": f"{type(exc).__name__}: {exc}"[:2000]})
            raise
    return report


class _Concurrently:
    """PostgreSQL's part run on a thread of its own (``start``, then ``join``, which re-raises its error), or here
    (``run``); ``seconds`` it took."""

    def __init__(self, action: Callable[[], None]) -> None:
        self._action = action
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        started = time.perf_counter()
        try:
            self._action()
        finally:
            self.seconds = time.perf_counter() - started

    def _run_catching(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # handed to the joining thread
            self._error = exc

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_catching, name="retention-postgres", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _postgres(conn: psycopg.Connection, policy: RetentionPolicy, report: RetentionReport, lock_timeout: str,
              detach_attempts: int) -> None:
    params = policy.sql_params()
    removed: Counter[str] = Counter()
    for name, start, end, is_default in conn.execute(query("governance/partitions")).fetchall():
        if not is_default and start >= policy.newest_cutoff:
            continue  # nothing in it can have expired
        wholly_old = not is_default and end <= policy.oldest_cutoff
        if wholly_old and not report.dry_run:
            dropped = _drop(conn, name, params, lock_timeout, detach_attempts, report)
            if dropped is not None:
                removed.update(dropped)
                report.partitions_dropped.append(name)
                continue
        if not report.dry_run:
            _trim(conn, name, start, end, is_default, policy, params, lock_timeout, detach_attempts, report, removed)
            continue
        stats = conn.execute(query("governance/partition_expiry"), {"partition": name, **params}).fetchall()
        expired = {category: n for category, n, _ in stats if n}
        total = sum(t for _, _, t in stats)
        droppable = not is_default and (sum(expired.values()) == total if total else end <= policy.oldest_cutoff)
        removed.update(expired)
        if droppable:
            report.partitions_dropped.append(name)
        elif expired:
            report.partitions_trimmed[name] = sum(expired.values())
    report.postgres = {c: n for c, n in sorted(removed.items()) if n}

    oldest_day = policy.oldest_cutoff.date()
    bounds = {**params, "oldest_cutoff": policy.oldest_cutoff, "oldest_day": oldest_day,
              "oldest_day_text": oldest_day.isoformat()}
    if report.dry_run:
        report.dead_letter_rows = conn.execute(query("governance/expired_failures"), params).fetchone()[0]
        counts = conn.execute(query("governance/expired_bookkeeping"), bounds).fetchone()
    else:
        with conn.transaction():
            report.dead_letter_rows = conn.execute(query("governance/delete_expired_failures"), params).fetchone()[0]
            counts = conn.execute(query("governance/delete_expired_bookkeeping"), bounds).fetchone()
    report.bookkeeping_rows = {t: n for t, n in zip(BOOKKEEPING_TABLES, counts, strict=True) if n}


def _trim(conn: psycopg.Connection, name: str, start: datetime | None, end: datetime | None, is_default: bool,
          policy: RetentionPolicy, params: dict[str, Any], lock_timeout: str, detach_attempts: int,
          report: RetentionReport, removed: Counter[str]) -> None:
    """One partition that may hold expired events: dropped when none of its events is live (and it has some, or
    it lies wholly before the oldest cut-off), its expired rows deleted otherwise. Whether a live event is there
    is asked first (it stops at the first one), not counted: counting read every row of each partition once more
    before the DELETE read them again, a third of the PostgreSQL time of a first run over years of history. The
    DELETE counts what it removes; the DETACH re-checks under its lock, so a late insert is never dropped."""
    if not is_default:
        has_events, has_live = conn.execute(query("governance/partition_liveness"), {
            "range_start": start, "range_end": end, **params}).fetchone()
        if not has_live and (has_events or end <= policy.oldest_cutoff):
            dropped = _drop(conn, name, params, lock_timeout, detach_attempts, report)
            if dropped is not None:
                removed.update(dropped)
                report.partitions_dropped.append(name)
                return
        elif not has_events:
            return
    with conn.transaction():
        deleted = {c: n for c, n in conn.execute(query("governance/delete_expired"),
                                                 {"partition": name, **params}).fetchall() if n}
    if deleted:
        removed.update(deleted)
        report.partitions_trimmed[name] = sum(deleted.values())


def _drop(conn: psycopg.Connection, name: str, params: dict[str, Any], lock_timeout: str, attempts: int,
          report: RetentionReport) -> dict[str, int] | None:
    """Detach and drop ``name`` when all of it has expired: {category: events}, or None (not dropped)."""
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                conn.execute(query("governance/set_lock_timeout"), {"lock_timeout": lock_timeout})
                counts = conn.execute(query("governance/drop_partition"), {"partition": name, **params}).fetchone()[0]
            return None if counts is None else {c: int(n) for c, n in counts.items()}
        except psycopg.errors.LockNotAvailable:
            log.warning("partition %s: the store's lock was busy (attempt %d of %d)", name, attempt, attempts)
            time.sleep(min(5.0, 0.5 * 2 ** attempt))
    report.notes.append(f"{name}: the store stayed busy for the DETACH; its expired rows were deleted instead "
                        "(the empty partition is dropped by a later run)")
    return None


def _run_row(report: RetentionReport) -> dict[str, Any]:
    return {
        "retention_run_id": report.retention_run_id,
        "postgres_events": Jsonb(report.postgres),
        "warehouse_events": Jsonb({w.consumer: w.events for w in report.warehouses}),
        "partitions_dropped": report.partitions_dropped,
        "partitions_trimmed": Jsonb(report.partitions_trimmed),
        "dead_letter_rows": report.dead_letter_rows,
        "bookkeeping_rows": Jsonb(report.bookkeeping_rows),
        "warehouse_days": Jsonb({w.consumer: {"removed": len(w.days_removed), "rewritten": len(w.days_rewritten)}
                                 for w in report.warehouses}),
        "ledger_hashes_expired": report.ledger_hashes_expired,
    }


# -- the check ---------------------------------------------------------------------------------------------------

@dataclass
class RetentionVerification:
    """What is left that the policy says should be gone, as of the last applied run."""

    as_of: datetime | None  # None: retention never ran
    retention_run_id: int | None
    postgres: dict[str, int] = field(default_factory=dict)  # category -> expired events still stored
    dead_letter_rows: int = 0
    warehouses: dict[str, dict[str, int]] = field(default_factory=dict)  # consumer -> category -> rows
    expired_partitions: list[str] = field(default_factory=list)  # partitions wholly before the oldest cut-off
    expired_since: dict[str, int] = field(default_factory=dict)  # category -> expired after as_of (next run's)

    @property
    def passed(self) -> bool:
        return self.as_of is not None and not (
            sum(self.postgres.values()) or self.dead_letter_rows or self.expired_partitions
            or any(sum(c.values()) for c in self.warehouses.values()))


def verify_retention(database_url: str, warehouses: Sequence[GovernedWarehouse] = ()) -> RetentionVerification:
    """Nothing older than its policy remains, in PostgreSQL (store, dead letter, partitions) and every warehouse,
    as of the last applied run (events that expired after it are the next run's, reported apart)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        last = conn.execute(query("governance/last_applied_retention")).fetchone()
        if last is None:
            return RetentionVerification(None, None)
        run, as_of, _ = last
        policy = load_policy(conn, as_of)
        found = RetentionVerification(as_of, run)
        params = policy.sql_params()
        found.postgres = dict(conn.execute(query("governance/expired_remaining"),
                                           {**params, "newest_cutoff": policy.newest_cutoff}).fetchall())
        found.dead_letter_rows = conn.execute(query("governance/expired_failures"), params).fetchone()[0]
        found.expired_partitions = [name for name, _, end, is_default in
                                    conn.execute(query("governance/partitions")).fetchall()
                                    if not is_default and end <= policy.oldest_cutoff]
        now_policy = load_policy(conn, parse_instant(None))
        if now_policy.as_of - as_of > timedelta(seconds=1):
            now_expired = dict(conn.execute(query("governance/expired_remaining"), {
                **now_policy.sql_params(), "newest_cutoff": now_policy.newest_cutoff}).fetchall())
            found.expired_since = {c: n - found.postgres.get(c, 0) for c, n in now_expired.items()
                                   if n - found.postgres.get(c, 0) > 0}
    for warehouse in warehouses:  # a dry run counts exactly what is expired
        found.warehouses[warehouse.consumer] = warehouse.apply_retention(policy, dry_run=True).events
    return found
