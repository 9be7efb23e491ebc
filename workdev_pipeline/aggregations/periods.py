"""Aggregation periods, pure arithmetic: UTC hours, days and weeks (Monday 00:00 UTC, no DST anywhere)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


@dataclass(frozen=True)
class Granularity:
    """One aggregation_type of ``event_aggregations``."""

    name: str  # aggregation_type: hourly | daily | weekly
    unit: str  # DuckDB's date_trunc part: hour | day | week (ISO weeks: Monday)
    step: timedelta
    #: how many periods one query covers at most (a backfill's range is split into chunks: bounded memory)
    chunk_periods: int

    def floor(self, moment: datetime) -> datetime:
        """The start of the period holding ``moment`` (aware, UTC)."""
        moment = utc(moment)
        if self.unit == "hour":
            return moment.replace(minute=0, second=0, microsecond=0)
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=day.weekday()) if self.unit == "week" else day

    def periods(self, start: datetime, end: datetime) -> list[datetime]:
        """Starts of the periods in [start, end) (``start`` must be a period start)."""
        start, end = utc(start), utc(end)
        if self.floor(start) != start:
            raise ValueError(f"{start.isoformat()} does not start a {self.name} period")
        out = []
        while start < end:
            out.append(start)
            start += self.step
        return out

    def chunks(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
        """[start, end) as consecutive ranges of at most ``chunk_periods`` periods."""
        periods = self.periods(start, end)
        for i in range(0, len(periods), self.chunk_periods):
            part = periods[i:i + self.chunk_periods]
            yield part[0], part[-1] + self.step

    def period_label(self, period_start: datetime) -> str:
        """The period's name in file names: 2026-11-23T14 (hours), 2026-11-23 (days, weeks by Monday)."""
        period_start = utc(period_start)
        return period_start.strftime("%Y-%m-%dT%H") if self.unit == "hour" else period_start.date().isoformat()


HOURLY = Granularity("hourly", "hour", timedelta(hours=1), chunk_periods=24 * 7)
DAILY = Granularity("daily", "day", timedelta(days=1), chunk_periods=7)
WEEKLY = Granularity("weekly", "week", timedelta(weeks=1), chunk_periods=1)
GRANULARITIES: dict[str, Granularity] = {g.name: g for g in (HOURLY, DAILY, WEEKLY)}


def utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: aggregation periods are UTC")
    return moment.astimezone(UTC)


def days_covering(start: datetime, end: datetime) -> list[date]:
    """The UTC days (the warehouse's partitions) holding the events of [start, end)."""
    start, end = utc(start), utc(end)
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)] if end > start else []
