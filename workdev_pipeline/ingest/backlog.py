"""What the lake consumer still owes and why: the pending backlog, the dead letter, repairs waiting, whether the
last sweep failed for a transient reason, and the enabled engines that have not delivered what the lake holds --
read by the ingest sensor (requests, with backoff) and the backlog check.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from workdev_pipeline.sql_files import query

#: After a failed sweep the sensor waits this long before requesting the next one, doubling with each failed run
#: in a row, up to BACKOFF_MAX_SECONDS.
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_MAX_SECONDS = 600.0


@dataclass(frozen=True)
class EngineLag:
    """An enabled engine that lacks events the lake holds (they read ``pending`` until it delivers them)."""

    engine: str
    delivered_version: int | None  # None: never delivered
    events: int
    oldest_seconds: float  # since the lake took the oldest of them

    def reason(self) -> str:
        held = "has never delivered" if self.delivered_version is None else \
            f"holds lake version {self.delivered_version}"
        return (f"{self.events:,} event(s) pending until {self.engine} delivers them ({self.engine} {held}; the "
                f"oldest has waited {self.oldest_seconds:,.0f} s: `workdev-pipeline deliver --engine {self.engine}`)")


@dataclass(frozen=True)
class Backlog:
    """One reading of ``sql/queries/ingest/pending_backlog.sql``."""

    pending: int
    oldest_pending_seconds: float
    failed: int
    repair_days: int
    repair_events: int
    failed_runs: int
    last_error_kind: str | None
    last_error: str | None
    seconds_since_failure: float | None
    engines_behind: tuple[EngineLag, ...] = ()

    @classmethod
    def read(cls, conn: psycopg.Connection, consumer: str) -> Backlog:
        row = conn.execute(query("ingest/pending_backlog"), {"consumer": consumer}).fetchone()
        pending, oldest, failed, repair_days, repair_events, failed_runs, kind, error, since = row
        behind = tuple(EngineLag(engine, version, int(events), float(age or 0.0))
                       for engine, version, events, age in conn.execute(query("ingest/engines_behind")) if events)
        return cls(pending, float(oldest or 0.0), failed, repair_days, repair_events, failed_runs, kind, error,
                   None if since is None else float(since), behind)

    @property
    def owed(self) -> int:
        """Events not (or not yet again) in the lake: pending, or waiting for a repair."""
        return self.pending + self.repair_events

    def engines_late(self, max_seconds: float) -> list[EngineLag]:
        """The engines whose oldest undelivered event has waited longer than ``max_seconds``."""
        return [lag for lag in self.engines_behind if lag.oldest_seconds > max_seconds]

    @property
    def sweep_wanted(self) -> bool:
        """A sweep has work: events to load, or days queued for a rebuild (a sweep drains the queue first)."""
        return self.pending > 0 or self.repair_days > 0

    @property
    def failing(self) -> bool:
        """Events wait because the last sweep failed (transiently, after its retries)."""
        return self.failed_runs > 0 and self.sweep_wanted

    def retry_in(self) -> float:
        """Seconds before the sensor requests the next sweep after failed runs (0: now)."""
        if not self.failing or self.seconds_since_failure is None:
            return 0.0
        backoff = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (self.failed_runs - 1))
        return max(0.0, backoff - self.seconds_since_failure)

    def reasons(self) -> list[str]:
        """Why events are owed, one sentence each (empty when nothing is)."""
        reasons = []
        if self.failing:
            reasons.append(f"{self.pending:,} event(s) pending because the last sweep failed transiently: "
                           f"{self.last_error_kind} ({self.failed_runs} failed run(s) in a row; the next sweep "
                           f"resumes them)")
        if self.repair_days or self.repair_events:
            reasons.append(f"{self.repair_events:,} event(s) pending while {self.repair_days} day(s) wait for a "
                           f"rebuild of the lake (or events for a refresh)")
        reasons += [lag.reason() for lag in self.engines_behind]
        if self.failed:
            reasons.append(f"{self.failed:,} event(s) in the dead letter (bad themselves: replay once fixed)")
        return reasons
