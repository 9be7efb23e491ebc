"""Materialization metadata from a load's outcome: counts, bytes, timings, the lake version it committed, a
markdown preview. Dagster's run storage is out of erasure's reach: dead-letter samples show event ids, types and
messages with their values redacted (:mod:`workdev_pipeline.governance.redaction`), and so do errors and notes."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import date
from functools import cache
from typing import Any

from dagster import MetadataValue

from workdev_pipeline.governance.redaction import failure_sample, redact_message
from workdev_pipeline.ingest.ingestor import LoadOutcome


def outcome_metadata(outcome: LoadOutcome, engine: str = "lake") -> dict[str, Any]:
    meta: dict[str, Any] = {
        "status": outcome.status,
        "engine": engine,
        "rows_loaded": MetadataValue.int(outcome.events_loaded),
        "rows_failed": MetadataValue.int(outcome.events_failed),
        "bytes_written": MetadataValue.int(outcome.bytes_written),
        "seconds": MetadataValue.float(round(outcome.seconds, 3)),
        "events_per_second": MetadataValue.float(round(outcome.events_per_second, 1)),
        "retries": MetadataValue.int(outcome.retries),
        "days_written": MetadataValue.int(len(outcome.days)),
        "rows_by_day": MetadataValue.json({d.isoformat(): n for d, n in sorted(outcome.days.items())}),
    }
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
    lines = ["| day | rows |", "|---|---|"] + [f"| {d} | {n:,} |" for d, n in sorted(outcome.days.items())]
    if outcome.failure_samples:
        lines += ["", "**Dead-lettered (first 20)**", "", "| event_id | type | reason |", "|---|---|---|"]
        lines += ["| " + " | ".join(_cell(c) for c in failure_sample(*sample)) + " |"
                  for sample in outcome.failure_samples]
    if outcome.notes:
        lines += [""] + [f"- {redact_message(n)}" for n in outcome.notes]
    meta["preview"] = MetadataValue.md("\n".join(lines))
    return meta


def outcome_from_metadata(kind: str, metadata: Mapping[str, Any]) -> LoadOutcome:
    """The figures of a load back from its materialization's metadata (what a command prints after running the
    load as a Dagster run): status, counts, bytes, seconds, rows per day, lake version."""

    def value(name: str, default: Any = None) -> Any:
        entry = metadata.get(name)
        return default if entry is None else getattr(entry, "value", entry)

    version = value("lake_version")
    return LoadOutcome(status=value("status", "loaded"), kind=kind, events_loaded=value("rows_loaded", 0),
                       events_failed=value("rows_failed", 0), bytes_written=value("bytes_written", 0),
                       seconds=value("seconds", 0.0), lake_version=version, retries=value("retries", 0),
                       days={date.fromisoformat(d): n for d, n in value("rows_by_day", {}).items()},
                       error=value("error"))


@cache
def process_started_at() -> float | None:
    """When this process started (epoch seconds, to the kernel's clock tick), from ``/proc/self/stat``; None where
    there is no ``/proc``. A run's ``seconds_before_first_event`` counts from here: its process start, imports, code
    location load, resources and the sweep's claim -- the fixed cost of a run before any event is read."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks_since_boot = int(fields[19])  # field 22, starttime: clock ticks after boot (the name may hold spaces)
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks_since_boot / os.sysconf("SC_CLK_TCK")
    return time.time() - age


def _cell(text: str) -> str:
    """Text that stays in its markdown table cell."""
    return text.replace("|", "/").replace("\n", " ")
