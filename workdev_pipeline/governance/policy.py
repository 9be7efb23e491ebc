"""The retention policy as of one instant: which events have expired. Pure (no I/O but :func:`load_policy`).

An event has expired when its timestamp is strictly older than ``as_of - retention_days`` of its type
(``event_schemas.retention_days``; the catalog gives every type of a category the same retention: transaction
and content 7 years, user activity 2 years, interaction 1 year). Days are 24-hour days counted in UTC, so
PostgreSQL, Parquet and any other engine draw the line at the same microsecond. A type the policy does not know
never expires.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from workdev_pipeline.sql_files import query

_STAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TypeRetention:
    event_type: str
    category: str
    retention_days: int
    cutoff: datetime  # events strictly older than this have expired


class RetentionPolicy:
    """Cut-offs per event type as of ``as_of``."""

    def __init__(self, as_of: datetime, types: Iterable[tuple[str, str, int]]) -> None:
        if as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware")
        self.as_of = as_of.astimezone(UTC)
        self.types: dict[str, TypeRetention] = {
            t: TypeRetention(t, category, days, self.as_of - timedelta(days=days)) for t, category, days in types}
        if not self.types:
            raise ValueError("no event types: the retention policy is empty")
        self._names = pa.array(list(self.types), pa.string())
        self._cutoffs = pa.array([t.cutoff for t in self.types.values()], _STAMP)

    # -- the lines ----------------------------------------------------------------------------------
    @property
    def cutoffs(self) -> dict[str, datetime]:
        return {t: r.cutoff for t, r in self.types.items()}

    @property
    def oldest_cutoff(self) -> datetime:
        """Before this every event has expired, whatever its type (the longest retention's line)."""
        return min(r.cutoff for r in self.types.values())

    @property
    def newest_cutoff(self) -> datetime:
        """From this on no event has expired (the shortest retention's line)."""
        return max(r.cutoff for r in self.types.values())

    def categories(self) -> dict[str, tuple[int, datetime]]:
        """{category: (retention_days, cutoff)} when every type of the category agrees (else the shortest)."""
        out: dict[str, tuple[int, datetime]] = {}
        for r in self.types.values():
            if r.category not in out or r.retention_days < out[r.category][0]:
                out[r.category] = (r.retention_days, r.cutoff)
        return dict(sorted(out.items()))

    def is_expired(self, event_type: str, timestamp: datetime) -> bool:
        r = self.types.get(event_type)
        return r is not None and timestamp < r.cutoff

    def sql_params(self) -> dict[str, Any]:
        """The cut-offs as bound parameters: ``event_types`` and ``cutoffs``, two aligned arrays."""
        return {"event_types": list(self.types), "cutoffs": [r.cutoff for r in self.types.values()]}

    def cutoff_table(self) -> pa.Table:
        """The cut-offs as an Arrow table (event_type, cutoff) for engines that join with it (DuckDB)."""
        return pa.table({"event_type": self._names, "cutoff": self._cutoffs})

    @staticmethod
    def day_start(day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=UTC)

    def day_may_hold_expired(self, day: date) -> bool:
        return self.day_start(day) < self.newest_cutoff

    def day_wholly_expired(self, day: date) -> bool:
        return self.day_start(day) + timedelta(days=1) <= self.oldest_cutoff

    # -- columnar -----------------------------------------------------------------------------------
    def expired_mask(self, event_type: pa.Array | pa.ChunkedArray,
                     timestamp: pa.Array | pa.ChunkedArray) -> pa.Array:
        """True where the event has expired (never null)."""
        event_type = _array(event_type)
        timestamp = _array(timestamp).cast(_STAMP)
        cutoff = pc.take(self._cutoffs, pc.index_in(event_type, value_set=self._names))
        return pc.fill_null(pc.less(timestamp, cutoff), False)

    def describe(self) -> list[dict[str, Any]]:
        """The policy as rows (for metadata and reports)."""
        return [{"category": c, "retention_days": d, "cutoff": cut.isoformat()}
                for c, (d, cut) in self.categories().items()]

    def to_json(self) -> Mapping[str, str]:
        return {t: r.cutoff.isoformat() for t, r in self.types.items()}


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def load_policy(conn: psycopg.Connection, as_of: datetime) -> RetentionPolicy:
    """The policy of ``event_schemas`` as of ``as_of``."""
    return RetentionPolicy(as_of, conn.execute(query("governance/retention_policy")).fetchall())
