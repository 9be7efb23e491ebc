"""The run queue's order: sweeps first, operator runs next, the dashboard's metrics refresh last.

Dagster's queued run coordinator starts the queued run with the highest ``dagster/priority`` tag first (default 0:
backfills and runs launched from the UI). The metrics refresh also has a lane of its own (``workdev/lane``,
limited to one run by the instance files in ``deploy/``), and its schedule skips a tick while a refresh is in
flight, so it never piles up in front of ingestion.
"""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

PRIORITY_TAG = "dagster/priority"
LANE_TAG = "workdev/lane"
#: Priorities (higher starts first; Dagster's default is 0).
SWEEP_PRIORITY = 10
OPERATOR_PRIORITY = 5
METRICS_PRIORITY = -10
METRICS_LANE = "metrics"

IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
             DagsterRunStatus.STARTED]


def priority_tags(priority: int) -> dict[str, str]:
    return {PRIORITY_TAG: str(priority)}


def in_flight(instance: DagsterInstance, job_name: str) -> int:
    """How many runs of ``job_name`` are queued, starting or running."""
    return instance.get_runs_count(RunsFilter(job_name=job_name, statuses=IN_FLIGHT))
