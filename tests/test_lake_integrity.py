"""Damaged data files: the day checks fail (never raise) naming the file and the rebuild that repairs it, the deep
check decodes every column (run with every rebuild and daily), and retention and erasure refuse a damaged day with
one line."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, build_schedule_context

from tests.ingest_helpers import demo
from tests.lake_helpers import events
from workdev_pipeline.assets.keys import LAKE_EVENTS
from workdev_pipeline.governance.warehouse import LakeGovernedWarehouse
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake.events import EventLake
from workdev_pipeline.lake.integrity import LakeDamaged, damaged_files
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.schedules.integrity import DEEP_CHECK_DAYS, lake_deep_check_schedule

REPO = Path(__file__).resolve().parent.parent
CHECKS = ("reconciles_with_postgres", "no_duplicate_event_ids", "parquet_schema_matches", "day_files_decode")


def day_file(lake: EventLake, day: date) -> tuple[str, Path]:
    """The largest data file of ``day``: its path in the log and on disk."""
    snapshot = lake.snapshot()
    files = snapshot.files().to_pylist()
    path = max((f for f in files if f["event_date"] == day), key=lambda f: f["size_bytes"])["path"]
    return path, Path(lake.location.local_path(lake.NAME)) / path


def scribble(path: Path) -> None:
    """4 KiB of random bytes written into the middle of the file (its footer intact)."""
    size = path.stat().st_size
    assert size > 3 * 4096, size
    with path.open("r+b") as f:
        f.seek(size // 2 - 2048)
        f.write(os.urandom(4096))


def truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def run_checks(defs: Definitions, instance: DagsterInstance, day: date) -> dict[str, tuple[bool, dict]]:
    result = defs.resolve_job_def("check_lake_days").execute_in_process(instance=instance,
                                                                         partition_key=day.isoformat())
    assert result.success  # a failed check is a verdict, not a crashed step
    return {e.check_name: (e.passed, e.metadata) for e in result.get_asset_check_evaluations()}


def names_the_fix(metadata: dict, path: str, day: date) -> None:
    damaged = metadata["damaged_files"].value
    assert [d["file"] for d in damaged] == [path]
    assert damaged[0]["fix"] == f"workdev-pipeline rebuild --from {day.isoformat()}"
    assert f"workdev-pipeline rebuild --from {day.isoformat()}" in metadata["fix"].value


@pytest.fixture
def swept(db: str, defs: Definitions, lake: LakeResource, instance: DagsterInstance) -> date:
    demo(db, 6_000, days=2)
    assert defs.resolve_job_def("ingest_events").execute_in_process(instance=instance).success
    return max(lake.events().snapshot().days(), key=lambda d: sum(lake.day_counts(d).values()))


def test_corrupted_bytes_fail_the_deep_check_and_a_rebuild_repairs_the_day(
        defs: Definitions, lake: LakeResource, instance: DagsterInstance, swept: date) -> None:
    day = swept
    assert {n: v[0] for n, v in run_checks(defs, instance, day).items()} == dict.fromkeys(CHECKS, True)
    path, on_disk = day_file(lake.events(), day)
    scribble(on_disk)

    verdicts = run_checks(defs, instance, day)
    passed, metadata = verdicts["day_files_decode"]
    assert passed is False
    names_the_fix(metadata, path, day)
    assert all(v[0] is False for v in verdicts.values() if v[1].get("damaged_files"))  # whoever saw it failed

    # the rebuild writes the day anew, and its run runs the deep check with it
    rebuilt = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[LAKE_EVENTS], partition_key=day.isoformat())
    assert rebuilt.success
    assert {e.check_name: e.passed for e in rebuilt.get_asset_check_evaluations()} == dict.fromkeys(CHECKS, True)
    assert not damaged_files(lake.snapshot(), [day])


def test_a_truncated_file_fails_every_check_without_raising(
        defs: Definitions, lake: LakeResource, instance: DagsterInstance, swept: date) -> None:
    day = swept
    path, on_disk = day_file(lake.events(), day)
    truncate(on_disk)
    verdicts = run_checks(defs, instance, day)
    assert set(verdicts) == set(CHECKS)
    for name, (passed, metadata) in verdicts.items():
        assert passed is False, name
        names_the_fix(metadata, path, day)


def test_the_daily_schedule_deep_checks_the_recent_days(defs: Definitions, lake: LakeResource,
                                                        instance: DagsterInstance) -> None:
    tick = datetime.now(UTC).replace(hour=3, minute=40, second=0, microsecond=0)
    repository = defs.get_repository_def()
    requests = repository.get_schedule_def(lake_deep_check_schedule.name).evaluate_tick(build_schedule_context(
        instance=instance, scheduled_execution_time=tick, repository_def=repository)).run_requests
    days = [tick.date() - timedelta(days=n) for n in range(DEEP_CHECK_DAYS)]
    assert [r.partition_key for r in requests] == sorted(d.isoformat() for d in days)  # a day partition each
    day = days[1]
    lake.events().append([events(day, 20_000)], app_id="lake", version=1)
    scribble(day_file(lake.events(), day)[1])
    [request] = [r for r in requests if r.partition_key == day.isoformat()]
    result = defs.resolve_job_def("deep_check_lake_days").execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=request.tags)
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == "day_files_decode" and evaluation.passed is False


def cli(db: str, lake: LakeResource, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKDEV_DATABASE_URL": db, "WORKDEV_LAKE_URI": lake.uri, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "workdev_pipeline.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300, check=False)


def refused(done: subprocess.CompletedProcess[str], operation: str, day: date) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {operation} refused") and f"rebuild --from {day.isoformat()}" in line, line


def test_retention_refuses_to_rewrite_a_damaged_day(db: str, lake: LakeResource) -> None:
    # 400 days back: its project.viewed events (kept 365 days) expired, its user.login ones (731) not: rewritten
    day = datetime.now(UTC).date() - timedelta(days=400)
    events_lake = lake.events()
    events_lake.append([events(day, 20_000)], app_id="lake", version=1)
    scribble(day_file(events_lake, day)[1])
    version = events_lake.version()
    refused(cli(db, lake, "retention"), "retention", day)
    assert events_lake.version() == version  # nothing deleted from the damaged day

    truncate(day_file(events_lake, day)[1])  # not even the plan can read it now: still one line
    refused(cli(db, lake, "retention", "--dry-run"), "retention", day)


def test_erasure_refuses_a_damaged_day(db: str, defs: Definitions, lake: LakeResource,
                                       instance: DagsterInstance, swept: date) -> None:
    day = swept
    user = lake.query("SELECT user_id FROM platform_events WHERE event_date = ? AND user_id IS NOT NULL LIMIT 1",
                      [day])[0][0]
    path, on_disk = day_file(lake.events(), day)
    scribble(on_disk)
    with pytest.raises(LakeDamaged, match=f"erasure refused.*rebuild --from {day.isoformat()}") as refusal:
        from workdev_pipeline.governance.erasure import erase_requests, file_erasure_requests

        ingestor = Ingestor(db, lake.events())
        [request] = file_erasure_requests(db, [user])
        erase_requests(db, [request], [LakeGovernedWarehouse(ingestor)])
    assert [d.path for d in refusal.value.damaged] == [path]

    truncate(on_disk)  # the user's rows cannot even be found now: the CLI says so in one line
    refused(cli(db, lake, "erase", "--pending"), "erasure", day)
