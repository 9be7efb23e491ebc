"""The operator jobs -- ``apply_retention``, ``gdpr_erasure``, ``replay_failed_events`` -- are op jobs with typed
config: nothing in the asset graph can materialize them (so no "Materialize all" selects them; the browser test
clicks it), a dry run changes nothing and records what would happen, bad config is a clear error, and an
erasure's run names request ids only."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from dagster import DagsterInstance, Definitions

from tests.ingest_helpers import accept_any_budget, demo, emit_bad_budgets, lake_ids
from tests.waiting import wait_until
from workdev_pipeline.assets.governance import ERASURE_OP, ERASURE_REQUESTS, RETENTION_RUNS
from workdev_pipeline.assets.ingestion import DEAD_LETTER_REPLAY, REPLAY_OP
from workdev_pipeline.governance.erasure import file_erasure_requests
from workdev_pipeline.resources.lake import LakeResource

OPERATOR_JOBS = {"apply_retention": RETENTION_RUNS, "gdpr_erasure": ERASURE_REQUESTS,
                 "replay_failed_events": DEAD_LETTER_REPLAY}


def test_no_asset_of_an_operator_job_can_be_materialized(defs: Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for job_name, key in OPERATOR_JOBS.items():
        assert not graph.get(key).is_materializable, key  # shown in the lineage, never selected to run
        job = defs.resolve_job_def(job_name)
        assert not job.asset_layer.executable_asset_keys, job_name
    # every other asset the lineage's "Materialize all" selects is one a sweep or a backfill may run
    materializable = {n.key.to_user_string() for n in graph.asset_nodes if n.is_materializable}
    assert not materializable & {k.to_user_string() for k in OPERATOR_JOBS.values()}


def erasure(defs: Definitions, instance: DagsterInstance, config: dict, **kwargs):
    return defs.resolve_job_def("gdpr_erasure").execute_in_process(
        instance=instance, run_config={"ops": {ERASURE_OP: {"config": config}}}, **kwargs)


def test_an_erasure_dry_run_changes_nothing_and_names_requests_only(db: str, conn: psycopg.Connection,
                                                                     defs: Definitions,
                                                                     instance: DagsterInstance) -> None:
    user = str(uuid.uuid4())
    (request_id,) = file_erasure_requests(db, [user])
    dry = erasure(defs, instance, {"request_ids": [request_id], "dry_run": True, "reason": "ticket GDPR-7"})
    assert dry.success
    assert not dry.get_asset_materialization_events() and not dry.get_asset_check_evaluations()
    (observed,) = [e.event_specific_data.asset_observation for e in dry.get_asset_observation_events()]
    assert observed.asset_key == ERASURE_REQUESTS
    assert observed.metadata["requests_planned"].value == [request_id]
    assert observed.metadata["dry_run"].value is True and observed.metadata["reason"].value == "ticket GDPR-7"
    assert conn.execute("SELECT status FROM gdpr_erasure_requests WHERE request_id = %s",
                        (request_id,)).fetchone()[0] == "requested"
    run = instance.get_run_by_id(dry.run_id)
    assert user not in json.dumps([run.run_config, run.tags])


def test_bad_erasure_config_is_a_clear_error(db: str, defs: Definitions, instance: DagsterInstance) -> None:
    with pytest.raises(Exception, match=r"request ids are positive numbers .* got 0"):
        erasure(defs, instance, {"request_ids": [0]})
    with pytest.raises(Exception, match="request_ids"):  # a user id is not a request id: refused by its type
        erasure(defs, instance, {"request_ids": [str(uuid.uuid4())]})
    with pytest.raises(Exception, match="no erasure request #424242 in the ledger"):
        erasure(defs, instance, {"request_ids": [424242], "dry_run": True})
    with pytest.raises(Exception, match="reason"):
        erasure(defs, instance, {"reason": "x" * 201})


def test_a_replay_dry_run_counts_the_dead_letter_and_changes_nothing(db: str, defs: Definitions,
                                                                      lake: LakeResource,
                                                                      instance: DagsterInstance) -> None:
    demo(db, 200)
    bad = emit_bad_budgets(db, 3)
    # a sweep stops below any transaction it cannot attribute to another database (sweep_bounds.sql asks a few
    # times, test_ingest_engine.py::test_a_busy_neighbour_...): sweep until these events are in rather than once
    swept = wait_until(lambda: lake.ingestor(db).sweep(), "a sweep takes the demo and the three bad events",
                       timeout=120, until=lambda outcome: outcome.status != "idle")
    assert swept.events_failed == 3, swept
    with psycopg.connect(db, autocommit=True) as conn:
        accept_any_budget(conn)
    version = lake.events().version()
    job = defs.resolve_job_def("replay_failed_events")
    dry = job.execute_in_process(instance=instance, run_config={"ops": {REPLAY_OP: {"config": {"dry_run": True}}}})
    assert dry.success and not dry.get_asset_materialization_events()
    (observed,) = [e.event_specific_data.asset_observation for e in dry.get_asset_observation_events()]
    assert observed.metadata["dead_letter"].value == 3
    assert lake.events().version() == version
    done = job.execute_in_process(instance=instance, run_config={"ops": {REPLAY_OP: {"config": {
        "reason": "budget schema fixed, as ops@example.com asked"}}}})
    (recorded,) = [m for m in done.asset_materializations_for_node(REPLAY_OP) if m.asset_key == DEAD_LETTER_REPLAY]
    assert recorded.metadata["rows_failed"].value == 0
    reason = recorded.metadata["reason"].value  # redacted like every message: no email reaches the metadata
    assert reason.startswith("budget schema fixed") and "ops@example.com" not in reason
    assert set(map(str, bad)) <= set(lake_ids(lake.events()))  # their days rebuilt with them
