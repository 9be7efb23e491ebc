"""What the operator jobs (retention, erasure, dead-letter replay) share: the ``reason`` their config takes and the
metadata every run of theirs records (dry run or not, the reason, redacted like every message)."""

from __future__ import annotations

from typing import Any

from dagster import MetadataValue
from pydantic import Field

from workdev_pipeline.governance.redaction import redact_message

REASON_CHARACTERS = 200


def reason_field() -> Any:
    """The ``reason`` field of an operator job's config."""
    return Field(default="", max_length=REASON_CHARACTERS, description="Why this run (a ticket, an instruction, "
                 "the fix deployed; shown in the run's metadata). Never personal data: no name, email or user id.")


def operator_metadata(dry_run: bool, reason: str) -> dict[str, Any]:
    """What every operator run records."""
    return {"dry_run": MetadataValue.bool(dry_run), "reason": MetadataValue.text(redact_message(reason))}
