"""The erasure ledger's own retention: a request's keyed hashes (``user_hash``, ``value_hashes``) are kept
``WORKDEV_ERASURE_LEDGER_RETENTION_DAYS`` (default 1096: 3 years) after it finished, then cleared by the daily
retention run (:func:`workdev_pipeline.governance.retention.apply_retention`). What stays is the audit trail --
request id, status, dates, rows per store, days and hours touched -- which no longer links to anyone. Running and
failed requests, and those with work still queued, keep their hashes (the check needs them). See
``sql/migrations/0016_erasure_ledger_retention.sql``."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import psycopg

from workdev_pipeline.governance.common import GovernanceInputError
from workdev_pipeline.sql_files import query

LEDGER_RETENTION_ENV = "WORKDEV_ERASURE_LEDGER_RETENTION_DAYS"
DEFAULT_LEDGER_RETENTION_DAYS = 1096


def ledger_retention_days(value: str | int | None = None) -> int:
    """Days a finished request keeps its hashes: ``value``, else the environment's, else 1096."""
    if value is None:
        value = os.environ.get(LEDGER_RETENTION_ENV, "").strip() or DEFAULT_LEDGER_RETENTION_DAYS
    try:
        days = int(value)
    except ValueError:
        days = 0
    if days < 1:
        raise GovernanceInputError(f"{LEDGER_RETENTION_ENV} must be a whole number of days >= 1, got {value!r}")
    return days


def expire_ledger_hashes(conn: psycopg.Connection, as_of: datetime, days: int, *, dry_run: bool = False) -> int:
    """Clear the hashes of the requests that finished more than ``days`` before ``as_of`` (dry run: count them);
    returns how many requests."""
    with conn.transaction():
        return conn.execute(query("governance/expire_ledger_hashes"), {
            "cutoff": as_of - timedelta(days=days), "dry_run": dry_run}).fetchone()[0]
