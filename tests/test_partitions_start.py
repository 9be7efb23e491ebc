"""The partitions' first day comes from configuration (``WORKDEV_PARTITIONS_START``) and, for ``workdev-pipeline
dev`` without it, from the store's earliest event: a demo's week is a week of partitions (about 190 hourly ones),
not every hour since an arbitrary epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.ingest_helpers import days_in_postgres, demo
from workdev_pipeline.partitions_start import (
    DEFAULT_DAYS,
    PARTITIONS_START_ENV,
    earliest_event_day,
    partitions_start,
)

REPO = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("workdev-pipeline")

#: The code location's partitions as a fresh process loads them: each definition's first key and count.
LOADED_PARTITIONS = """
import json
from datetime import datetime, timezone
from workdev_pipeline.definitions import build_definitions
from workdev_pipeline.assets.keys import LAKE_EVENTS, lake_aggregations_key, postgres_aggregations_key
from workdev_pipeline.assets.partitions import PARTITIONS_START
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
defs = build_definitions({"postgres": PostgresResource(database_url="postgresql://nobody@127.0.0.1:9/none"),
                          "lake": LakeResource(uri="/nonexistent/lake")})
graph = defs.resolve_asset_graph()
now = datetime.fromisoformat(%r)
found = {"start": PARTITIONS_START}
for key in (LAKE_EVENTS, lake_aggregations_key("hourly"), postgres_aggregations_key("hourly"),
            lake_aggregations_key("daily"), lake_aggregations_key("weekly")):
    keys = graph.get(key).partitions_def.get_partition_keys(current_time=now)
    found[key.to_user_string()] = [keys[0] if keys else None, len(keys)]
print(json.dumps(found))
"""


def loaded_partitions(now: str, **env: str) -> dict:
    """The partitions of the definitions a fresh process builds with ``env`` (unset where the value is empty)."""
    environment = {k: v for k, v in {**os.environ, **env}.items() if v}
    done = subprocess.run([sys.executable, "-c", LOADED_PARTITIONS % now], capture_output=True, text=True,
                          env=environment, cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_configured_first_day_starts_every_partitions_definition() -> None:
    """With the first day a week before "now" (2026-11-24 00:00 -> 2026-12-01 10:30 UTC): 8 days of events (today
    included), 178 closed hours, 7 closed days, and the first whole week starting on the Monday after."""
    found = loaded_partitions("2026-12-01T10:30:00+00:00", **{PARTITIONS_START_ENV: "2026-11-24"})
    assert found["start"] == "2026-11-24"
    assert found["lake/lake_events"] == ["2026-11-24", 8]
    assert found["lake/lake_aggregations_hourly"] == ["2026-11-24-00:00", 7 * 24 + 10]
    assert found["postgres/postgres_aggregations_hourly"] == found["lake/lake_aggregations_hourly"]
    assert found["lake/lake_aggregations_daily"] == ["2026-11-24", 7]
    assert found["lake/lake_aggregations_weekly"] == [None, 0]  # 2026-11-30's week is not closed yet


def test_without_configuration_the_partitions_cover_the_last_days() -> None:
    """Unset (a bare ``dg dev``): the last DEFAULT_DAYS days before the load's UTC day."""
    before = datetime.now(UTC).date()
    found = loaded_partitions(datetime.now(UTC).isoformat(), **{PARTITIONS_START_ENV: ""})
    after = datetime.now(UTC).date()
    assert date.fromisoformat(found["start"]) in {before - timedelta(days=DEFAULT_DAYS),
                                                  after - timedelta(days=DEFAULT_DAYS)}
    assert found["lake/lake_events"][1] == DEFAULT_DAYS + 1  # today's partition too


def test_a_malformed_first_day_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PARTITIONS_START_ENV, "01/12/2026")
    with pytest.raises(ValueError, match=rf"{PARTITIONS_START_ENV} must be a day as YYYY-MM-DD, got '01/12/2026'"):
        partitions_start()
    done = subprocess.run([str(CLI), "dev", "--database-url", "postgresql://nobody@127.0.0.1:9/none"],
                          capture_output=True, text=True, env={**os.environ, PARTITIONS_START_ENV: "01/12/2026"},
                          timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {PARTITIONS_START_ENV} must be a day as YYYY-MM-DD, got '01/12/2026' (see `workdev-pipeline dev "
        "--help`)"], done.stderr


def test_the_earliest_event_day_is_the_demos_first_day(db: str) -> None:
    """What ``workdev-pipeline dev`` starts the partitions at without configuration: the store's earliest event's
    UTC day (None for an empty store)."""
    assert earliest_event_day(db) is None
    demo(db, 600, days=3)
    with psycopg.connect(db) as conn:
        days = days_in_postgres(conn)
    assert earliest_event_day(db) == date.fromisoformat(min(days))
