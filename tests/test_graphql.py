"""Dagster's GraphQL API, as a scheduler or a notebook would drive it: ``DagsterGraphQLClient`` against
``dagster dev`` (the server shared with the browser test) launches the ingest job and a partition backfill
of the lake table, polls both to completion, and the lake holds what PostgreSQL holds."""

from __future__ import annotations

import psycopg
import pytest
from dagster import DagsterRunStatus

from tests.dagster_dev_server import (
    LAKE_EVENTS_PATH,
    LAUNCH_BACKFILL,
    DevServer,
    days_back,
    wait_for_backfill,
)
from tests.ingest_helpers import demo, lake_ids, loadable_ids

pytest_plugins = ["tests.dagster_dev_server"]
#: slow; and on the same xdist worker as the browser test, which shares its server (``--dist loadgroup``)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dagster_dev")]


def test_the_ingest_job_launched_over_graphql_loads_new_events(dagster_dev: DevServer) -> None:
    server = dagster_dev
    with psycopg.connect(server.database_url) as conn:
        before = loadable_ids(conn)
    demo(server.database_url, 500, users=50, days=0.5, seed=97)  # new traffic, pending
    with psycopg.connect(server.database_url) as conn:
        expected = loadable_ids(conn)
    assert len(expected) == len(before) + 500

    run_id, status = server.run_job("ingest_events", tags={"workdev/trigger": "test_graphql"})
    assert status == DagsterRunStatus.SUCCESS, server.log_tail()
    # the ingest sensor may have requested its own sweep meanwhile: either run loads the new events, once
    server.wait_until_swept()
    assert sorted(lake_ids(server.lake.events())) == sorted(expected)
    run = server.client()._execute("query R($id: ID!) { runOrError(runId: $id) { ... on Run { jobName "
                                   "tags { key value } assetMaterializations { assetKey { path } } } } }",
                                   {"id": run_id})["runOrError"]
    assert run["jobName"] == "ingest_events"
    assert {"key": "workdev/trigger", "value": "test_graphql"} in run["tags"]
    assert {"path": ["pipeline", "enriched_events"]} in [m["assetKey"] for m in run["assetMaterializations"]]


def test_a_partition_backfill_over_graphql_rebuilds_the_days(dagster_dev: DevServer) -> None:
    server = dagster_dev
    days = days_back(6, 5)  # whole days of demo traffic the browser test leaves alone
    expected = server.postgres_day_counts(days)
    assert all(expected.values()), expected
    dropped = server.drop_lake_days(days)

    launched = server.client()._execute(LAUNCH_BACKFILL, {"params": {
        "partitionsByAssets": [{"assetKey": {"path": LAKE_EVENTS_PATH},
                                "partitions": {"range": {"start": days[0].isoformat(), "end": days[-1].isoformat()}}}],
        "title": "test_graphql backfill"}})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill = wait_for_backfill(server.url, launched["backfillId"], context=server.log_tail)

    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    assert backfill["isAssetBackfill"] and sorted(backfill["partitionNames"]) == [d.isoformat() for d in days]
    runs = backfill["runs"]
    assert len(runs) == 1, runs  # BackfillPolicy.single_run: every day in one run
    assert runs[0]["status"] == "SUCCESS"
    assert {"key": "dagster/backfill", "value": launched["backfillId"]} in runs[0]["tags"]
    assert server.lake_day_counts(days) == expected
    assert server.lake.events().version() == dropped + 1  # the whole range: one predicate overwrite
