"""Volume anomalies of closed hours, pure statistics: each event type's count in an hour against the same hour of
the week in the previous ``HISTORY_WEEKS`` weeks, by median and MAD (one odd week moves neither).

For each type: ``σ = max(1.4826 × MAD, √max(median, 1))`` -- the MAD scaled to a normal standard deviation, never
below the Poisson noise of a count -- and the expected range ``median ± max(deviations × σ, tolerance × median)``
(floored at 0) with the type's ``VolumeThresholds`` from the catalog. Verdicts: above the range a spike, below it a
drop (both WARN), 0 events where the median is at least ``silent_min_median`` silent (ERROR).

History: a past hour holding no row at all (no type) is missing -- not aggregated yet, before the lake, or a total
outage -- not a week of zeros; in a week that has rows, a type without one had 0 events. With fewer than
``MIN_HISTORY_WEEKS`` weeks the hour is not judged: it passes, with the weeks it had as a note.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from workdev_pipeline.aggregations.periods import HOURLY, utc
from workdev_pipeline.catalog import DEFAULT_VOLUME_THRESHOLDS, EVENT_TYPES_BY_NAME, VolumeThresholds

#: Weeks of history an hour is compared with (the same hour of the week in each).
HISTORY_WEEKS = 8
#: Fewer weeks of history than this: the hour passes unjudged.
MIN_HISTORY_WEEKS = 3
#: MAD × this estimates a normal distribution's standard deviation.
MAD_TO_SIGMA = 1.4826
WEEK = timedelta(weeks=1)

#: counts[period_start][event_type] = events (a period without rows is absent)
Counts = Mapping[datetime, Mapping[str, int]]


class Verdict(StrEnum):
    NORMAL = "normal"
    SPIKE = "spike"
    DROP = "drop"
    SILENT = "silent"


@dataclass(frozen=True)
class Baseline:
    """A type's history summarised: its median, MAD, robust σ and the expected range."""

    median: float
    mad: float
    sigma: float
    low: float
    high: float


def baseline(history: Sequence[int], thresholds: VolumeThresholds = DEFAULT_VOLUME_THRESHOLDS) -> Baseline:
    """The expected range of a count whose past values are ``history`` (at least one)."""
    if not history:
        raise ValueError("no history to build a baseline from")
    median = float(statistics.median(history))
    mad = float(statistics.median(abs(x - median) for x in history))
    sigma = max(MAD_TO_SIGMA * mad, math.sqrt(max(median, 1.0)))
    half_width = max(thresholds.deviations * sigma, thresholds.tolerance * median)
    return Baseline(median, mad, sigma, max(0.0, median - half_width), median + half_width)


def classify(observed: int, base: Baseline, thresholds: VolumeThresholds = DEFAULT_VOLUME_THRESHOLDS) -> Verdict:
    """Silent (0 where the median is at least ``silent_min_median``), spike, drop or normal."""
    if observed == 0 and base.median >= thresholds.silent_min_median:
        return Verdict.SILENT
    if observed > base.high:
        return Verdict.SPIKE
    if observed < base.low:
        return Verdict.DROP
    return Verdict.NORMAL


@dataclass(frozen=True)
class TypeVolume:
    """One type in one hour: its count, its history (oldest week first), the range and the verdict (NORMAL when
    the hour is not judged; no range when it has no history)."""

    event_type: str
    observed: int
    history: tuple[int, ...]
    base: Baseline | None
    verdict: Verdict


@dataclass(frozen=True)
class HourVolumes:
    """Every type seen in an hour or its history."""

    hour: datetime
    history_weeks: int
    types: tuple[TypeVolume, ...]
    min_weeks: int = MIN_HISTORY_WEEKS

    @property
    def judged(self) -> bool:
        return self.history_weeks >= self.min_weeks

    def flagged(self, *verdicts: Verdict) -> list[TypeVolume]:
        return [t for t in self.types if t.verdict in verdicts]


def history_hours(hour: datetime, weeks: int = HISTORY_WEEKS) -> list[datetime]:
    """The same hour of the week in each of the ``weeks`` previous weeks, oldest first."""
    hour = utc(hour)
    if HOURLY.floor(hour) != hour:
        raise ValueError(f"{hour.isoformat()} does not start an hour")
    return [hour - i * WEEK for i in range(weeks, 0, -1)]


def thresholds_of(event_type: str) -> VolumeThresholds | None:
    """The catalog's thresholds of ``event_type`` (the defaults for a type not in the catalog); None for a type the
    catalog deactivated (no longer accepted: its silence is expected, it is not judged)."""
    known = EVENT_TYPES_BY_NAME.get(event_type)
    if known is None:
        return DEFAULT_VOLUME_THRESHOLDS
    return known.volume_thresholds if known.active else None


def assess_hour(hour: datetime, counts: Counts, weeks: int = HISTORY_WEEKS, min_weeks: int = MIN_HISTORY_WEEKS,
                thresholds: Callable[[str], VolumeThresholds | None] = thresholds_of) -> HourVolumes:
    """Each type's count in ``hour`` against the same hour in the previous ``weeks`` weeks that have rows in
    ``counts`` (which holds ``hour`` and those hours; ``hour`` absent: every type had 0 events); a type whose
    ``thresholds`` are None is reported, never judged."""
    past = [counts[h] for h in history_hours(hour, weeks) if counts.get(h)]
    now = counts.get(utc(hour), {})
    judged = len(past) >= min_weeks
    types = []
    for event_type in sorted({t for week in (*past, now) for t in week}):
        history = tuple(int(week.get(event_type, 0)) for week in past)
        observed = int(now.get(event_type, 0))
        limits = thresholds(event_type)
        base = baseline(history, limits or DEFAULT_VOLUME_THRESHOLDS) if history else None
        verdict = classify(observed, base, limits) if judged and base and limits else Verdict.NORMAL
        types.append(TypeVolume(event_type, observed, history, base, verdict))
    return HourVolumes(utc(hour), len(past), tuple(types), min_weeks)
