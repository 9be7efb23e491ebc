"""A sweep SIGKILLed while writing or right after publishing its Delta commit (before its bookkeeping), then a
rebuild, a backfill, a retention run or an erasure of its days, then the redo: every event in the lake exactly
once, and ``processed`` (the seed's monitoring) never counts an event the lake does not hold.

The kill is real: the sweep runs in a process of its own, which a small script below makes SIGKILL itself at that
point (it wraps the lake's ``append`` or the per-batch transform in that process only; production code has no hook).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import date

import psycopg
import pytest
from dagster import DagsterInstance, Definitions

from tests.ingest_helpers import REPO, demo, lake_ids, loadable_ids, wait_until_lock_released
from workdev_pipeline.assets.keys import LAKE_EVENTS
from workdev_pipeline.governance.erasure import erase_requests, file_erasure_requests
from workdev_pipeline.governance.retention import apply_retention
from workdev_pipeline.governance.warehouse import governed_warehouses
from workdev_pipeline.resources.lake import LakeResource

pytestmark = pytest.mark.slow  # sweeps killed in processes of their own

#: Runs one sweep and SIGKILLs itself at argv[3]: "published" (the Delta commit is in the log, nothing else done)
#: or "writing" (its second batch: files staged, nothing committed).
KILLED_SWEEP = """
import os, signal, sys
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake import EventLake, LakeLocation

url, root, point = sys.argv[1:4]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if point == "published":
    append = EventLake.append
    def append_then_die(self, *args, **kwargs):
        append(self, *args, **kwargs)
        die()
    EventLake.append = append_then_die
else:
    transformed, calls = Ingestor._transformed, []
    def die_at_second_batch(*args):
        calls.append(1)
        if len(calls) == 2:
            die()
        return transformed(*args)
    Ingestor._transformed = staticmethod(die_at_second_batch)
Ingestor(url, EventLake(LakeLocation.from_env(root)), batch_bytes=32 * 1024, backoff_seconds=0.01).sweep()
sys.exit("the sweep was not killed")
"""

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def kill_a_sweep(db: str, lake: LakeResource, point: str) -> None:
    killed = subprocess.run([sys.executable, "-c", KILLED_SWEEP, db, lake.uri, point], capture_output=True,
                            text=True, timeout=300, cwd=REPO, env=dict(os.environ), check=False)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    wait_until_lock_released(db)


def processed_ids(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT event_id::text FROM platform_events WHERE processing_status = 'processed'")}


def assert_processed_is_published(conn: psycopg.Connection, lake: LakeResource) -> None:
    """``processed`` never runs ahead of the lake: every processed event is there."""
    ahead = processed_ids(conn) - set(lake_ids(lake.events()))
    assert not ahead, f"{len(ahead)} event(s) shown processed but not in the lake"


def killed_sweep_days(conn: psycopg.Connection) -> list[date]:
    """The UTC days of the events of the sweep the kill left 'running'."""
    rows = conn.execute(
        "SELECT DISTINCT (e.\"timestamp\" AT TIME ZONE 'UTC')::date FROM platform_event_store e "
        "JOIN ingestion_sweeps s ON s.status = 'running' AND e.tx_id >= s.tx_low AND e.tx_id < s.tx_high "
        "ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def rebuild(db: str, lake: LakeResource, days: list[date], defs: Definitions, instance: DagsterInstance) -> None:
    assert lake.ingestor(db).rebuild(days).status == "loaded"


def backfill(db: str, lake: LakeResource, days: list[date], defs: Definitions, instance: DagsterInstance) -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {RANGE_START: days[0].isoformat(), RANGE_END: days[-1].isoformat()}
    assert job.execute_in_process(instance=instance, asset_selection=[LAKE_EVENTS], tags=tags).success


def retention(db: str, lake: LakeResource, days: list[date], defs: Definitions, instance: DagsterInstance) -> None:
    with psycopg.connect(db, autocommit=True) as conn:  # interactions older than a day expire: most of the days
        conn.execute("UPDATE event_schemas SET retention_days = 1 WHERE event_category = 'interaction'")
    report = apply_retention(db, governed_warehouses(lake, db))
    assert sum(report.warehouse("lake").events.values()) > 0


def erasure(db: str, lake: LakeResource, days: list[date], defs: Definitions, instance: DagsterInstance) -> None:
    with psycopg.connect(db) as conn:  # the users of the killed sweep's events
        users = [str(r[0]) for r in conn.execute(
            "SELECT DISTINCT e.user_id FROM platform_event_store e JOIN ingestion_sweeps s ON s.status = 'running' "
            "AND e.tx_id >= s.tx_low AND e.tx_id < s.tx_high WHERE e.user_id IS NOT NULL ORDER BY 1 LIMIT 5")]
    assert users
    batch = erase_requests(db, file_erasure_requests(db, users), governed_warehouses(lake, db))
    assert len(batch.results) == len(users)


@pytest.mark.parametrize("point", ["writing", "published"])
@pytest.mark.parametrize("operation", [rebuild, backfill, retention, erasure], ids=lambda f: f.__name__)
def test_a_killed_sweep_then_its_days_rewritten_then_the_redo_is_exactly_once(
        point: str, operation, db: str, lake: LakeResource, defs: Definitions, instance: DagsterInstance) -> None:
    demo(db, 600, days=3, seed=3)
    assert lake.ingestor(db).sweep().status == "loaded"  # what an earlier run loaded
    demo(db, 1_500, days=3, seed=4)
    kill_a_sweep(db, lake, point)
    with psycopg.connect(db, autocommit=True) as conn:
        days = killed_sweep_days(conn)
        assert days, "the kill left no sweep running"
        assert_processed_is_published(conn, lake)
        assert processed_ids(conn) and processed_ids(conn) < loadable_ids(conn)  # the killed sweep's are pending

        operation(db, lake, days, defs, instance)
        assert_processed_is_published(conn, lake)
        assert lake.ingestor(db).sweep().status in {"idle", "loaded"}  # the redo (if anything is left to redo)

        held = lake_ids(lake.events())
        assert max(Counter(held).values()) == 1, "an event is in the lake more than once"
        assert set(held) == loadable_ids(conn)
        assert processed_ids(conn) == loadable_ids(conn)
        assert conn.execute("SELECT count(*) FROM ingestion_sweeps WHERE status = 'running'").fetchone()[0] == 0


def test_the_kill_script_kills_where_it_says(db: str, lake: LakeResource) -> None:
    """'published': the lake holds the sweep's commit while PostgreSQL still has it running; 'writing': nothing."""
    demo(db, 1_000, days=2, seed=5)
    kill_a_sweep(db, lake, "writing")
    assert lake.events().committed_version("lake") is None and not lake_ids(lake.events())
    kill_a_sweep(db, lake, "published")  # the redo of the same claimed sweep, killed after its commit
    with psycopg.connect(db) as conn:
        sweep_id = conn.execute("SELECT sweep_id FROM ingestion_sweeps WHERE status = 'running'").fetchone()[0]
        assert lake.events().committed_version("lake") == sweep_id
        assert set(lake_ids(lake.events())) == loadable_ids(conn)
        assert not processed_ids(conn)
