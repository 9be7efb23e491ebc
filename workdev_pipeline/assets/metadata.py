"""Materialization metadata from a load's outcome: counts, bytes, timings, the lake version it committed, a
markdown preview; a day partition of a run carries its own figures (:func:`day_metadata`) and the run's totals in
one ``run`` entry (:func:`partitioned_outcome_metadata`). Dagster's run storage is out of erasure's reach:
dead-letter samples show event ids, types and messages with their values redacted
(:mod:`workdev_pipeline.governance.redaction`), and so do errors and notes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date
from functools import cache
from typing import Any

from dagster import MetadataValue

from workdev_pipeline.governance.redaction import failure_sample, redact_message
from workdev_pipeline.ingest.ingestor import LoadOutcome


def outcome_figures(outcome: LoadOutcome) -> dict[str, Any]:
    """The load's totals as plain values: the unpartitioned materialization's figures, and the ``run`` entry of a
    day partition's (whose own figures are :func:`day_metadata`)."""
    return {"rows_loaded": outcome.events_loaded, "rows_failed": outcome.events_failed,
            "bytes_written": outcome.bytes_written, "seconds": round(outcome.seconds, 3),
            "events_per_second": round(outcome.events_per_second, 1), "retries": outcome.retries,
            "days_written": len(outcome.days),
            "rows_by_day": {d.isoformat(): n for d, n in sorted(outcome.days.items())}}


def outcome_metadata(outcome: LoadOutcome, engine: str = "lake") -> dict[str, Any]:
    """The metadata of an unpartitioned record of a load (a sweep, a replay): its figures, its lake version, a
    preview."""
    figures = outcome_figures(outcome)
    meta: dict[str, Any] = {"status": outcome.status, "engine": engine}
    for name in ("rows_loaded", "rows_failed", "bytes_written", "retries", "days_written"):
        meta[name] = MetadataValue.int(figures[name])
    meta["seconds"] = MetadataValue.float(figures["seconds"])
    meta["events_per_second"] = MetadataValue.float(figures["events_per_second"])
    meta["rows_by_day"] = MetadataValue.json(figures["rows_by_day"])
    return {**meta, **_about(outcome), "preview": _preview(outcome)}


def partitioned_outcome_metadata(outcome: LoadOutcome, engine: str = "lake") -> dict[str, Any]:
    """What each day partition of a load's run carries besides its own figures (:func:`day_metadata`): status,
    engine, lake version, and the run's totals in one ``run`` entry with its preview (``run_preview``) -- a run of
    a range shows the same entries on each of its days, so nothing else there is a run figure."""
    return {"status": outcome.status, "engine": engine, "run": MetadataValue.json(outcome_figures(outcome)),
            **_about(outcome), "run_preview": _preview(outcome)}


def day_metadata(outcome: LoadOutcome, day: date) -> dict[str, Any]:
    """The day's own figures in ``outcome``: rows written and their bytes, and for a rebuild the seconds the day
    took and its events per second."""
    rows = outcome.days.get(day, 0)
    meta: dict[str, Any] = {"rows_loaded": MetadataValue.int(rows)}
    if day in outcome.day_bytes:
        meta["bytes_written"] = MetadataValue.int(outcome.day_bytes[day])
    if day in outcome.day_seconds:
        meta.update(rate_metadata(rows, outcome.day_seconds[day]))
    return meta


def rate_metadata(rows: int, seconds: float) -> dict[str, Any]:
    """``seconds`` and ``events_per_second`` of ``rows`` loaded in ``seconds``."""
    return {"seconds": MetadataValue.float(round(seconds, 3)),
            "events_per_second": MetadataValue.float(round(rows / seconds, 1) if seconds > 0 else 0.0)}


def _about(outcome: LoadOutcome) -> dict[str, Any]:
    """Sweep id, lake version, transaction range, redo and error of a load."""
    meta: dict[str, Any] = {}
    if outcome.sweep_id is not None:
        meta["sweep_id"] = MetadataValue.int(outcome.sweep_id)
    if outcome.lake_version is not None:
        meta["lake_version"] = MetadataValue.int(outcome.lake_version)
    if outcome.tx_range is not None:
        meta["tx_range"] = MetadataValue.text(f"[{outcome.tx_range[0]}, {outcome.tx_range[1]})")
    if outcome.redone:
        meta["redone"] = MetadataValue.bool(True)
    if outcome.error:
        meta["error"] = MetadataValue.text(redact_message(outcome.error))
    if outcome.error_kind:
        meta["error_kind"] = MetadataValue.text(outcome.error_kind)
    if outcome.first_event_read_at is not None:
        meta["first_event_read_at"] = MetadataValue.timestamp(outcome.first_event_read_at)
        started = process_started_at()
        if started is not None:
            meta["seconds_before_first_event"] = MetadataValue.float(round(outcome.first_event_read_at - started, 3))
    return meta


def _preview(outcome: LoadOutcome) -> MetadataValue:
    """Rows per day, the first dead-lettered events (values redacted) and the notes, as markdown."""
    lines = ["| day | rows |", "|---|---|"] + [f"| {d} | {n:,} |" for d, n in sorted(outcome.days.items())]
    if outcome.failure_samples:
        lines += ["", "**Dead-lettered (first 20)**", "", "| event_id | type | reason |", "|---|---|---|"]
        lines += ["| " + " | ".join(_cell(c) for c in failure_sample(*sample)) + " |"
                  for sample in outcome.failure_samples]
    if outcome.notes:
        lines += [""] + [f"- {redact_message(n)}" for n in outcome.notes]
    return MetadataValue.md("\n".join(lines))


def outcome_from_metadata(kind: str, metadata: Mapping[str, Any]) -> LoadOutcome:
    """The figures of a load back from its materialization's metadata (what a command prints after running the
    load as a Dagster run): status, counts, bytes, seconds, rows per day, lake version -- the totals of a day
    partition's ``run`` entry, or an unpartitioned record's own."""

    def value(name: str, default: Any = None) -> Any:
        entry = metadata.get(name)
        return default if entry is None else getattr(entry, "value", entry)

    totals = value("run") or {name: value(name) for name in ("rows_loaded", "rows_failed", "bytes_written",
                                                              "seconds", "retries", "rows_by_day")}
    return LoadOutcome(status=value("status", "loaded"), kind=kind, events_loaded=totals.get("rows_loaded") or 0,
                       events_failed=totals.get("rows_failed") or 0, bytes_written=totals.get("bytes_written") or 0,
                       seconds=totals.get("seconds") or 0.0, lake_version=value("lake_version"),
                       retries=totals.get("retries") or 0,
                       days={date.fromisoformat(d): n for d, n in (totals.get("rows_by_day") or {}).items()},
                       error=value("error"))


@cache
def process_started_at() -> float | None:
    """When this process started (epoch seconds, to the kernel's clock tick), from ``/proc/self/stat`` and the boot
    time in ``/proc/stat`` (as ``ps`` reads it); None where there is no ``/proc``. A run's
    ``seconds_before_first_event`` counts from here: its process start, imports, code location load, resources and
    the sweep's claim -- the fixed cost of a run before any event is read. (The boot time is read, not derived from
    ``CLOCK_BOOTTIME``: in one CI run the two disagreed by 28 s, and the boot time agreed with pytest's start.)"""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    ticks_since_boot = int(fields[19])  # field 22, starttime: clock ticks after boot (the name may hold spaces)
    return boot + ticks_since_boot / os.sysconf("SC_CLK_TCK")


def _cell(text: str) -> str:
    """Text that stays in its markdown table cell."""
    return text.replace("|", "/").replace("\n", " ")
