"""What reaches Dagster's run storage: the erasure proof's search of it (real DagsterInstance, real runs), and the
redaction of dead-letter samples so that a sweep run leaves no personal value there."""

import os
import time
import uuid

import psycopg
import pytest
from dagster import (
    AssetExecutionContext,
    AssetObservation,
    Config,
    DagsterInstance,
    Definitions,
    MaterializeResult,
    MetadataValue,
    asset,
    materialize,
)
from psycopg.types.json import Jsonb

from workdev_pipeline.assets.keys import ENRICHED_EVENTS
from workdev_pipeline.governance.common import erasure_key, keyed_hash
from workdev_pipeline.governance.redaction import REDACTED, redact_message
from workdev_pipeline.governance.run_storage import find_run_storage_traces, run_storage_traces
from workdev_pipeline.resources.lake import LakeResource

EMAIL = "alice.liddell@example.com"
USER_ID = "6f1c2b0e-3d4a-4c5b-8e9f-0a1b2c3d4e5f"
IP = "203.0.113.77"
PHONE = "+44 20 7946 0123"
NAME = "Alice Liddell"
ADDRESS = "221B Baker Street, London"
NOWHERE = "bob@example.org"


class LeakyConfig(Config):
    contact_ip: str = ""


@asset
def leaky(context: AssetExecutionContext, config: LeakyConfig) -> MaterializeResult:
    context.log.info(f"validation failed: event_data.email must match pattern ^x, got \"{EMAIL}\"")
    context.log.warning(f"event_data.address must be one of [1, 2], got \"{ADDRESS}\" (skipped)")
    context.log_event(AssetObservation(asset_key="leaky", metadata={"who": MetadataValue.json({"phone": PHONE})}))
    return MaterializeResult(metadata={
        "preview": MetadataValue.md(f"| event | name |\n|---|---|\n| 1 | {NAME} |"),
        "user": MetadataValue.text(f"user {USER_ID.upper()} seen"),
    })


@asset
def clean(context: AssetExecutionContext) -> MaterializeResult:
    context.log.info("42 events, 3 failed")
    return MaterializeResult(metadata={"rows": MetadataValue.int(42)})


def hashes(key: bytes) -> dict[str, set[str]]:
    return {kind: {keyed_hash(key, value)} for kind, value in (
        ("email", EMAIL), ("user_id", USER_ID), ("ip_address", IP), ("phone", PHONE), ("name", NAME),
        ("address", ADDRESS), ("device_id", NOWHERE))}


def test_finds_each_value_where_a_run_put_it_and_nothing_in_a_clean_run(instance: DagsterInstance) -> None:
    key = os.urandom(32)
    bad = materialize([leaky], instance=instance, tags={"requested_for": USER_ID},
                      run_config={"ops": {"leaky": {"config": {"contact_ip": IP}}}})
    good = materialize([clean], instance=instance)
    assert bad.success and good.success
    instance.report_runless_asset_event(AssetObservation(asset_key="clean", metadata={"note": f"mail {EMAIL}"}))

    found = run_storage_traces(instance, key, hashes(key))
    h = {kind: next(iter(v)) for kind, v in hashes(key).items()}
    assert set(found) == {"email", "user_id", "ip_address", "phone", "name", "address"}  # not device_id: stored nowhere
    assert found["email"][h["email"]] >= 2  # the log message and the runless observation
    assert all(found[kind][h[kind]] >= 1 for kind in ("phone", "name", "ip_address", "user_id"))

    traces = list(find_run_storage_traces(instance, key, hashes(key)))
    places = {(t.run_id, t.where, t.kind) for t in traces}
    run = bad.run_id
    assert (run, "run", "ip_address") in places  # the run config
    assert (run, "run", "user_id") in places  # the run's tags
    assert (run, "event:ASSET_MATERIALIZATION", "user_id") in places  # upper case in a metadata text
    assert (run, "event:ASSET_MATERIALIZATION", "name") in places  # a markdown table cell
    assert (run, "event:ASSET_OBSERVATION", "phone") in places  # a JSON metadata value
    assert (run, "event:log", "email") in places  # quoted in a log message
    assert (run, "event:log", "address") in places  # quoted, in the middle of a log message
    assert ("", "event:ASSET_OBSERVATION", "email") in places  # a runless event
    assert not [t for t in traces if t.run_id == good.run_id]

    assert run_storage_traces(instance, os.urandom(32), hashes(key)) == {}  # another key finds nothing
    assert run_storage_traces(instance, key, hashes(key), max_runs=1) == {"email": {h["email"]: 1}}  # the newest


def test_cost_over_many_runs(instance: DagsterInstance) -> None:
    """A cost measured, not asserted tightly: the search reads every run's events once."""
    for _ in range(20):
        assert materialize([clean], instance=instance).success
    key = os.urandom(32)
    events = sum(len(instance.all_logs(r.run_id)) for r in instance.get_runs())
    started = time.perf_counter()
    assert run_storage_traces(instance, key, hashes(key)) == {}
    seconds = time.perf_counter() - started
    print(f"\nrun storage search: 20 runs, {events} events in {seconds * 1000:.0f} ms "
          f"({seconds / events * 1000:.2f} ms per event)")
    assert seconds < 20


# -- redaction --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("message", "expected"), [
    (f'event_data.role must be one of ["client","developer"], got "{EMAIL}"',
     'event_data.role must be one of ["client","developer"], got [redacted]'),
    ("event_data.budget must be >= 0, got -5", "event_data.budget must be >= 0, got [redacted]"),
    ("event_data.email must be of type string, got integer", "event_data.email must be of type string, got integer"),
    ("event_data.title must be at most 200 characters long, got 212",
     "event_data.title must be at most 200 characters long, got 212"),
    ("event_data is missing required keys 'title', 'budget'", "event_data is missing required keys 'title', 'budget'"),
    ("unknown event type 'project.created'", "unknown event type 'project.created'"),
    (f"unknown event type '{NAME}'", "unknown event type [redacted]"),
    (f"enrichment failed: ValueError: '{IP}' does not appear to be an IPv4 or IPv6 address",
     "enrichment failed: ValueError: [redacted]"),
    (f"transient failure: call {PHONE} or (555) 123-4567, from {IP} or 2001:db8::7 as {USER_ID} on 2026-01-02 "
     "03:04:05 (version 1.13.27, 12:30:00)",
     "transient failure: call [redacted] or [redacted], from [redacted] or [redacted] as [redacted] on 2026-01-02 "
     "03:04:05 (version 1.13.27, 12:30:00)"),
    (f"Key (event_id)=({USER_ID}) already exists: mail {EMAIL}", "Key (event_id)=(kept) already exists: mail "
     "[redacted]"),
])
def test_redact_message(message: str, expected: str) -> None:
    keep = (USER_ID.upper(),) if "kept" in expected else ()
    assert redact_message(message, keep=keep) == expected.replace("(kept)", f"({USER_ID})")


def test_a_dead_lettered_sweep_leaves_no_personal_value_in_run_storage(db: str, defs: Definitions,
                                                                       lake: LakeResource,
                                                                       instance: DagsterInstance) -> None:
    """An event whose email is in its dead-letter message, and a valid one: the sweep run's preview names the
    failed event and its type, and the run storage holds none of the user's values."""
    user = str(uuid.uuid4())
    agent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    with psycopg.connect(db, autocommit=True) as conn:
        bad = conn.execute("SELECT emit_platform_event('user.registered', %s, p_event_data => %s, p_metadata => %s)", (
            user, Jsonb({"role": EMAIL, "email": EMAIL, "phone": PHONE}),
            Jsonb({"ip_address": IP, "user_agent": agent}))).fetchone()[0]
        conn.execute("SELECT emit_platform_event('user.registered', %s, p_event_data => %s, p_metadata => %s)", (
            user, Jsonb({"role": "client", "email": EMAIL}), Jsonb({"ip_address": IP, "user_agent": agent})))
        key = erasure_key(conn)
    result = defs.resolve_job_def("ingest_events").execute_in_process(instance=instance)
    assert result.success
    [sweep] = [e.materialization for e in result.get_asset_materialization_events()
               if e.asset_key == ENRICHED_EVENTS]
    preview = sweep.metadata["preview"].value
    assert f"| {bad} | user.registered | event_data.role must be one of" in preview
    assert f"got {REDACTED} |" in preview
    with psycopg.connect(db) as conn:  # the dead letter itself keeps the message (erasure scrubs it there)
        assert EMAIL in conn.execute("SELECT error_message FROM event_failures").fetchone()[0]

    values = {"email": EMAIL, "phone": PHONE, "ip_address": IP, "user_agent": agent, "user_id": user}
    assert run_storage_traces(instance, key, {k: {keyed_hash(key, v)} for k, v in values.items()}) == {}
