"""Real-time metrics: the asset, its every-minute schedule and the 15-minute cleanup, through Dagster."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import yaml
from dagster import DagsterInstance, DagsterRunStatus, Definitions, build_schedule_context, instance_for_test

from tests.ingest_helpers import demo
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.schedules.metrics import cleanup_metrics_schedule, refresh_metrics_schedule
from workdev_pipeline.schedules.run_queue import (
    LANE_TAG,
    METRICS_LANE,
    METRICS_PRIORITY,
    PRIORITY_TAG,
    SWEEP_PRIORITY,
)

REPO = Path(__file__).resolve().parent.parent


def test_refresh_writes_what_a_direct_count_says_and_the_client_serves_it(db: str, defs: Definitions,
                                                                         conn: psycopg.Connection) -> None:
    demo(db, 2_000, days=1)
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("refresh_metrics").execute_in_process(instance=instance)
    assert result.success
    meta = result.asset_materializations_for_node("postgres__platform_metrics_realtime")[0].metadata
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    projects = conn.execute("SELECT count(*) FROM platform_event_store WHERE event_type = 'project.created' "
                            "AND \"timestamp\" >= %s AND \"timestamp\" <= %s", (today, now)).fetchone()[0]
    active = conn.execute("SELECT count(DISTINCT user_id) FROM platform_event_store WHERE "
                          "\"timestamp\" >= %s - interval '1 hour' AND \"timestamp\" <= %s", (now, now)).fetchone()[0]
    assert meta["projects_created_today"].value == projects
    assert abs(meta["active_users_last_hour"].value - active) <= 2  # the window moved by the seconds in between
    stored = dict(conn.execute("SELECT metric_key, metric_value FROM platform_metrics_realtime").fetchall())
    assert stored["projects_created_today"] == projects and stored["pending_events"] == 2_000
    with AnalyticsClient(db) as client:
        metrics = client.get_dashboard_metrics()
    assert metrics.projects_created_today == projects and metrics.expires_at > now


def test_cleanup_removes_only_expired_figures(db: str, defs: Definitions, conn: psycopg.Connection) -> None:
    conn.execute("INSERT INTO platform_metrics_realtime (metric_key, metric_value, calculated_at, expires_at) VALUES "
                 "('old_figure', 1, now() - interval '2 hours', now() - interval '1 hour'), "
                 "('fresh_figure', 2, now(), now() + interval '1 hour')")
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("cleanup_metrics").execute_in_process(instance=instance)
    assert result.success and result.output_for_node("cleanup_expired_metrics") == 1
    assert [r[0] for r in conn.execute("SELECT metric_key FROM platform_metrics_realtime")] == ["fresh_figure"]


def test_refresh_rejects_a_bad_ttl(db: str, defs: Definitions) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("refresh_metrics").execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"ops": {"postgres__platform_metrics_realtime": {"config": {"ttl_seconds": 0}}}})
    assert not result.success
    assert "ttl_seconds must be between 1 and 86400, got 0" in str(result.all_events)


def test_schedules_fire_every_minute_and_every_quarter_hour_in_utc() -> None:
    at = datetime(2026, 3, 29, 1, 7, tzinfo=UTC)  # a European DST night: UTC does not care
    with instance_for_test() as instance:  # the schedule looks at the instance's runs
        refresh = refresh_metrics_schedule.evaluate_tick(
            build_schedule_context(instance=instance, scheduled_execution_time=at))
    assert len(refresh.run_requests) == 1
    assert refresh_metrics_schedule.execution_timezone == cleanup_metrics_schedule.execution_timezone == "UTC"
    assert cleanup_metrics_schedule.cron_schedule == "*/15 * * * *"
    assert refresh_metrics_schedule.default_status.value == "RUNNING"
    from dagster._utils.schedules import cron_string_iterator

    fired = cron_string_iterator(at.timestamp() - 1, cleanup_metrics_schedule.cron_schedule, "UTC")
    first = [next(fired) for _ in range(4)]
    assert [t.minute for t in first] == [15, 30, 45, 0] and all(t.tzinfo is not None for t in first)


def test_the_refresh_never_piles_up_and_queues_behind_sweeps(defs: Definitions) -> None:
    """A tick while a refresh is queued is skipped; the refresh runs carry a priority below the sweeps' and a lane
    the instance files limit to one run."""
    job = defs.resolve_job_def("refresh_metrics")
    at = datetime(2026, 3, 29, 1, 7, tzinfo=UTC)
    with instance_for_test() as instance:
        first = refresh_metrics_schedule.evaluate_tick(
            build_schedule_context(instance=instance, scheduled_execution_time=at))
        assert len(first.run_requests) == 1
        queued = instance.create_run_for_job(job, status=DagsterRunStatus.NOT_STARTED)  # launched, not yet started
        skipped = refresh_metrics_schedule.evaluate_tick(
            build_schedule_context(instance=instance, scheduled_execution_time=at))
        assert not skipped.run_requests and "still queued or running" in skipped.skip_message
        instance.report_run_canceled(queued)
        again = refresh_metrics_schedule.evaluate_tick(
            build_schedule_context(instance=instance, scheduled_execution_time=at))
        assert len(again.run_requests) == 1
    assert int(job.tags[PRIORITY_TAG]) < SWEEP_PRIORITY and int(job.tags[PRIORITY_TAG]) < 0
    assert job.tags[LANE_TAG] == METRICS_LANE
    for instance_file in ("deploy/dagster.yaml", "deploy/dagster-dev.yaml"):
        limits = yaml.safe_load((REPO / instance_file).read_text())["run_coordinator"]["config"][
            "tag_concurrency_limits"]
        assert {"key": LANE_TAG, "value": METRICS_LANE, "limit": 1} in limits, instance_file
    for name in ("apply_retention", "gdpr_erasure", "replay_failed_events"):
        assert METRICS_PRIORITY < int(defs.resolve_job_def(name).tags[PRIORITY_TAG]) < SWEEP_PRIORITY, name
