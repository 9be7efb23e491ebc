"""BigQueryEventTable with the real google-cloud-bigquery client against a local BigQuery emulator
(``bqemulator``, see tests/bq_emulator.py); each test has its own dataset."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.auth import exceptions as auth_exceptions
from google.cloud import bigquery

from tests.bq_emulator import BigQueryEmulator, bigquery_emulator, start_bqemulator  # noqa: F401
from workdev_pipeline.ingest.schema import JSON, WAREHOUSE_SCHEMA
from workdev_pipeline.resources.bigquery import BigQueryWarehouseResource
from workdev_pipeline.warehouses.bigquery import (
    CLUSTERING_FIELDS,
    TRANSIENT_ERRORS,
    BigQueryEventTable,
    emulator_client,
)

DAY = date(2026, 3, 14)
OTHER_DAY = date(2026, 3, 15)


def event(event_id: str, day: date = DAY, *, hour: int = 10, event_type: str = "job_posted", user_id: str = "u1",
          event_data: Any = None, geo: dict | None = None, device: dict | None = None,
          ingested: datetime | None = None) -> dict[str, Any]:
    stamp = datetime(day.year, day.month, day.day, hour, 30, 15, 123456, tzinfo=UTC)
    return {
        "event_id": event_id, "event_type": event_type, "event_category": "jobs", "user_id": user_id,
        "user_role": "client", "user_tenure_days": 42, "entity_type": "job", "entity_id": f"job-{event_id}",
        "event_data": None if event_data is None else json.dumps(event_data),
        "metadata": json.dumps({"ip": "10.0.0.1"}), "source": "web", "timestamp": stamp, "session_id": "s1",
        "geo_location": geo, "device_info": device, "ingested_at": ingested or stamp + timedelta(seconds=5),
    }


def write_day_file(path: Path, rows: list[dict[str, Any]], schema: pa.Schema = WAREHOUSE_SCHEMA) -> Path:
    """A Parquet file of the schema's columns as the lake writes its data files: JSON columns as plain strings,
    zstd (the partition column lives in the directory name, not in the file)."""
    columns = {}
    for field in schema:
        values = [row.get(field.name) for row in rows]
        columns[field.name] = pa.array(values, pa.string() if field.type == JSON else field.type)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pydict(columns), path, compression="zstd")
    return path


@pytest.fixture
def client(bigquery_emulator: BigQueryEmulator) -> Iterator[bigquery.Client]:  # noqa: F811
    client = emulator_client(bigquery_emulator.endpoint, bigquery_emulator.project)
    yield client
    client.close()


@pytest.fixture
def dataset(client: bigquery.Client) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    client.delete_dataset(name, delete_contents=True, not_found_ok=True)


@pytest.fixture
def table(client: bigquery.Client, dataset: str) -> BigQueryEventTable:
    events = BigQueryEventTable(client, dataset, retry_deadline=10)
    events.ensure_table()
    return events


def rows_of(table: BigQueryEventTable, day: date) -> dict[str, dict[str, Any]]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    sql = (f"SELECT event_id, event_type, user_id, TO_JSON_STRING(event_data) AS event_data, "
           f"TO_JSON_STRING(metadata) AS metadata, geo_location, device_info, `timestamp`, ingested_at "
           f"FROM `{table.table_id}` WHERE `timestamp` >= @start AND `timestamp` < @end")
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("start", "TIMESTAMP", start),
        bigquery.ScalarQueryParameter("end", "TIMESTAMP", start + timedelta(days=1))])
    return {row["event_id"]: dict(row.items()) for row in table.client.query(sql, job_config=config).result()}


def test_ensure_table_creates_partitioned_clustered_table_idempotently(table: BigQueryEventTable,
                                                                       client: bigquery.Client) -> None:
    created = client.get_table(table.table_id)
    assert [f.name for f in created.schema] == WAREHOUSE_SCHEMA.names
    types = {f.name: f.field_type for f in created.schema}
    assert types["event_data"] == types["metadata"] == "JSON"
    assert types["timestamp"] == types["ingested_at"] == "TIMESTAMP"
    assert types["user_tenure_days"] in ("INT64", "INTEGER")  # BigQuery answers with the legacy name
    geo = next(f for f in created.schema if f.name == "geo_location")
    assert geo.field_type == "RECORD" and [f.name for f in geo.fields] == ["country", "region", "city"]
    assert {f.name: f.mode for f in created.schema}["event_id"] == "REQUIRED"
    assert created.time_partitioning.type_ == "DAY" and created.time_partitioning.field == "timestamp"
    assert created.clustering_fields == list(CLUSTERING_FIELDS)

    table.ensure_table()  # again: nothing changes
    assert [f.name for f in client.get_table(table.table_id).schema] == WAREHOUSE_SCHEMA.names


def test_ensure_table_adds_a_column_the_schema_gained(table: BigQueryEventTable, client: bigquery.Client,
                                                      tmp_path: Path) -> None:
    table.merge_files(DAY, [write_day_file(tmp_path / "old.parquet", [event("e1")])], "sweep-1")
    evolved = WAREHOUSE_SCHEMA.append(pa.field("referrer", pa.string())).append(pa.field("attribution", JSON))
    grown = BigQueryEventTable(client, table.dataset, schema=evolved, retry_deadline=10)
    grown.ensure_table()
    grown.ensure_table()
    schema = client.get_table(table.table_id).schema
    assert [f.name for f in schema] == evolved.names
    assert [(f.field_type, f.mode) for f in schema[-2:]] == [("STRING", "NULLABLE"), ("JSON", "NULLABLE")]

    rows = [{**event("e2"), "referrer": "https://example.test/", "attribution": '{"utm": "x"}'}]
    assert grown.merge_files(DAY, [write_day_file(tmp_path / "new.parquet", rows, evolved)], "sweep-2") == 1
    sql = f"SELECT event_id, referrer, TO_JSON_STRING(attribution) FROM `{table.table_id}` ORDER BY event_id"
    assert [tuple(r) for r in client.query(sql).result()] == [
        ("e1", None, None), ("e2", "https://example.test/", '{"utm":"x"}')]


def test_merge_files_twice_keeps_one_copy_and_replaces_updated_rows(table: BigQueryEventTable,
                                                                    tmp_path: Path) -> None:
    # laid out as the lake lays out its files (the "=" must reach the server as it is)
    first = write_day_file(tmp_path / "event_date=2026-03-14" / "part-s000000000001.parquet",
                           [event("e1"), event("e2", hour=11)])
    assert table.merge_files(DAY, [first], "sweep-1-2026-03-14") == 2
    assert table.merge_files(DAY, [first], "sweep-1-2026-03-14") == 2  # redone: same load id, same file
    assert table.day_counts(DAY) == {"job_posted": 2}

    later = datetime(2026, 3, 16, tzinfo=UTC)
    updated = write_day_file(tmp_path / "b.parquet", [
        event("e2", hour=11, event_type="job_updated", event_data={"v": 2}, ingested=later), event("e3", hour=12)])
    assert table.merge_files(DAY, [updated], "sweep-2-2026-03-14") == 2
    rows = rows_of(table, DAY)
    assert sorted(rows) == ["e1", "e2", "e3"]
    assert rows["e2"]["event_type"] == "job_updated" and json.loads(rows["e2"]["event_data"]) == {"v": 2}
    assert rows["e2"]["ingested_at"] == later
    assert table.duplicate_event_ids(DAY) == []
    assert [t.table_id for t in table.client.list_tables(table.dataset)] == ["platform_events"]  # staging dropped


def test_replace_day_touches_only_that_day_and_empty_paths_empty_it(table: BigQueryEventTable,
                                                                     tmp_path: Path) -> None:
    table.merge_files(DAY, [write_day_file(tmp_path / "d1.parquet", [event("a"), event("b"), event("c")])], "s-1")
    table.merge_files(OTHER_DAY, [write_day_file(tmp_path / "d2.parquet", [event("x", OTHER_DAY)])], "s-2")

    rebuilt = write_day_file(tmp_path / "r.parquet", [event("b", event_type="changed"), event("d")])
    assert table.replace_day(DAY, [rebuilt], "rebuild-2026-03-14") == 2
    assert table.event_ids(DAY) == {"b", "d"}
    assert rows_of(table, DAY)["b"]["event_type"] == "changed"
    assert table.event_ids(OTHER_DAY) == {"x"}

    assert table.replace_day(DAY, [rebuilt], "rebuild-2026-03-14") == 2  # the same rebuild again
    assert table.event_ids(DAY) == {"b", "d"} and table.duplicate_event_ids(DAY) == []

    assert table.replace_day(DAY, [], "retention-2026-03-14") == 0
    assert table.day_counts(DAY) == {}
    assert table.event_ids(OTHER_DAY) == {"x"}


def test_load_job_id_is_deterministic_and_a_retried_load_reuses_the_job(table: BigQueryEventTable,
                                                                         client: bigquery.Client,
                                                                         tmp_path: Path) -> None:
    path = write_day_file(tmp_path / "a.parquet", [event("e1"), event("e2")])
    staging = table._staging("sweep-7-2026-03-14")
    job, existed = table.load_file(staging, path, "sweep-7-2026-03-14")
    assert not existed
    assert job.job_id.startswith(f"workdev_{table.dataset}_platform_events_sweep-7-2026-03-14_")
    assert job.job_id == table.load_job_id("sweep-7-2026-03-14", staging, _sha256(path))

    again, existed = table.load_file(staging, path, "sweep-7-2026-03-14")  # the retry
    assert existed and again.job_id == job.job_id
    count = list(client.query(f"SELECT COUNT(*) FROM `{staging.full_table_id.replace(':', '.')}`").result())
    assert count[0][0] == 2  # applied once


def test_a_failed_load_job_is_followed_by_a_new_job_id(table: BigQueryEventTable, client: bigquery.Client,
                                                        tmp_path: Path) -> None:
    path = write_day_file(tmp_path / "a.parquet", [event("e1")])
    staging = table._staging("sweep-8")
    first_id = table.load_job_id("sweep-8", staging, _sha256(path))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    failed = client.load_table_from_uri(broken.as_uri(), staging.reference, job_id=first_id,
                                        job_config=bigquery.LoadJobConfig(source_format="PARQUET"))
    with pytest.raises(Exception):  # noqa: B017 - whatever the server calls it
        failed.result()
    job, existed = table.load_file(staging, path, "sweep-8")
    assert not existed and job.job_id == f"{first_id}_r1"
    assert table.load_file(staging, path, "sweep-8")[0].job_id == f"{first_id}_r1"  # the retry finds it


def test_json_struct_and_timestamp_values_round_trip(table: BigQueryEventTable, tmp_path: Path) -> None:
    payload = {"title": "Café ☕ \"quoted\"", "budget": 1500.5, "count": 2**40, "tags": ["a", "b"],
               "nested": {"ok": True, "n": None}, "empty": {}}
    geo = {"country": "FR", "region": None, "city": "Paris"}
    device = {"device_type": "mobile", "browser": "Firefox", "os": "Android"}
    rows = [event("j1", event_data=payload, geo=geo, device=device), event("j2")]
    table.merge_files(DAY, [write_day_file(tmp_path / "j.parquet", rows)], "sweep-9")
    held = rows_of(table, DAY)
    assert json.loads(held["j1"]["event_data"]) == payload
    assert json.loads(held["j1"]["metadata"]) == {"ip": "10.0.0.1"}
    assert held["j1"]["geo_location"] == geo and held["j1"]["device_info"] == device
    assert held["j1"]["timestamp"] == rows[0]["timestamp"] and held["j1"]["ingested_at"] == rows[0]["ingested_at"]
    assert held["j2"]["event_data"] is None and held["j2"]["geo_location"] is None


def test_counts_duplicates_event_ids_and_user_rows(table: BigQueryEventTable, client: bigquery.Client,
                                                   tmp_path: Path) -> None:
    table.merge_files(DAY, [write_day_file(tmp_path / "a.parquet", [
        event("a", user_id="u1"), event("b", user_id="u2", event_type="bid_placed"),
        event("c", user_id="u1", event_type="bid_placed")])], "s-1")
    table.merge_files(OTHER_DAY, [write_day_file(tmp_path / "b.parquet", [event("d", OTHER_DAY, user_id="u1")])],
                      "s-2")
    assert table.day_counts(DAY) == {"job_posted": 1, "bid_placed": 2}
    assert table.event_ids(DAY) == {"a", "b", "c"}
    assert table.user_row_count("u1") == 3 and table.user_row_count("nobody") == 0
    assert table.duplicate_event_ids(DAY) == []
    # duplicates cannot come from the table's own loads: insert two by hand to see them reported
    client.query(f"INSERT INTO `{table.table_id}` (event_id, event_type, event_category, `timestamp`, ingested_at) "
                 "VALUES ('a', 'x', 'y', TIMESTAMP '2026-03-14 01:00:00+00', CURRENT_TIMESTAMP()), "
                 "('a', 'x', 'y', TIMESTAMP '2026-03-14 02:00:00+00', CURRENT_TIMESTAMP()), "
                 "('b', 'x', 'y', TIMESTAMP '2026-03-14 03:00:00+00', CURRENT_TIMESTAMP())").result()
    assert table.duplicate_event_ids(DAY) == [("a", 3), ("b", 2)]
    assert table.duplicate_event_ids(DAY, limit=1) == [("a", 3)]
    assert table.duplicate_event_ids(OTHER_DAY) == []


def test_upload_path_loads_through_the_emulator(client: bigquery.Client, dataset: str, tmp_path: Path) -> None:
    """load_table_from_file (what real BigQuery uses): works once the upload's media type is one the
    emulator accepts (emulator_client sets it)."""
    table = BigQueryEventTable(client, dataset, local_file_uris=False, retry_deadline=10)
    assert table.merge_files(DAY, [write_day_file(tmp_path / "u.parquet", [event("u1"), event("u2")])], "s-1") == 2
    assert table.event_ids(DAY) == {"u1", "u2"}


def test_rows_outside_the_day_are_refused(table: BigQueryEventTable, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        table.merge_files(DAY, [write_day_file(tmp_path / "x.parquet", [event("x", OTHER_DAY)])], "s-1")


def test_a_stopped_emulator_raises_a_transient_error(tmp_path: Path) -> None:
    emulator = start_bqemulator(tmp_path / "emulator")
    try:
        table = BigQueryEventTable(emulator_client(emulator.endpoint, emulator.project), "gone",
                                   retry_deadline=1)
        table.ensure_table()
    finally:
        emulator.stop()
    with pytest.raises(TRANSIENT_ERRORS) as raised:
        table.day_counts(DAY)
    assert isinstance(raised.value, table.transient_errors)
    with pytest.raises(TRANSIENT_ERRORS):
        table.merge_files(DAY, [write_day_file(tmp_path / "a.parquet", [event("a")])], "s-1")


def test_a_days_files_load_in_one_job_and_days_are_listed(table: BigQueryEventTable, tmp_path: Path) -> None:
    assert table.days() == set()
    folder = tmp_path / "event_date=2026-03-14"
    paths = [write_day_file(folder / f"part-{i}.zstd.parquet", [event(f"m{i}-{j}", hour=j) for j in range(3)])
             for i in range(4)]
    assert table.merge_files(DAY, paths, "lake-merge") == 12
    jobs = [j for j in table.client.list_jobs() if j.job_id.startswith(f"workdev_{table.dataset}_platform_events_")]
    assert len(jobs) == 1  # every file of the day in one load job
    assert table.days() == {DAY} and sum(table.day_counts(DAY).values()) == 12
    with pytest.raises(ValueError, match="one file per load job"):  # an upload cannot take several
        BigQueryEventTable(table.client, table.dataset, local_file_uris=False).load_files(
            table._staging("x"), paths, "x")


def test_retention_in_place_deletes_exactly_the_expired_rows(table: BigQueryEventTable, tmp_path: Path) -> None:
    table.merge_files(DAY, [write_day_file(tmp_path / "a.parquet", [
        event("old-job", hour=1), event("new-job", hour=20), event("old-bid", hour=1, event_type="bid_placed")])],
        "s-1")
    table.merge_files(OTHER_DAY, [write_day_file(tmp_path / "b.parquet", [event("next", OTHER_DAY, hour=1)])], "s-2")
    cutoffs = {"job_posted": datetime(2026, 3, 14, 12, tzinfo=UTC),  # old-job expired, new-job kept
               "bid_placed": datetime(2026, 3, 14, 0, tzinfo=UTC)}  # old-bid kept
    before = datetime(2026, 3, 16, tzinfo=UTC)
    assert sorted(table.expired_by_day(cutoffs, before)) == [(DAY, "jobs", 1, 3), (OTHER_DAY, "jobs", 0, 1)]
    deleted = table.delete_expired(cutoffs, datetime(2026, 3, 14, tzinfo=UTC), datetime(2026, 3, 15, tzinfo=UTC))
    assert deleted in (1, -1)  # -1: the server does not report DML rows (the emulator)
    assert table.event_ids(DAY) == {"new-job", "old-bid"}
    assert table.event_ids(OTHER_DAY) == {"next"}
    assert table.delete_expired({"unknown_type": before}, datetime(2026, 3, 14, tzinfo=UTC), before) in (0, -1)
    assert table.event_ids(DAY) == {"new-job", "old-bid"}


def test_erasure_refresh_replaces_exactly_the_queued_events(table: BigQueryEventTable, tmp_path: Path) -> None:
    table.merge_files(DAY, [write_day_file(tmp_path / "a.parquet", [
        event("a1", user_id="alice", event_data={"email": "a@example.test"}), event("a2", hour=11, user_id="alice"),
        event("a3", hour=12, user_id="alice"), event("b1", hour=13, user_id="bob")])], "s-1")
    table.merge_files(OTHER_DAY, [write_day_file(tmp_path / "b.parquet", [event("a4", OTHER_DAY, user_id="alice")])],
                      "s-2")
    assert sorted(r[0] for r in table.user_rows("alice")) == ["a1", "a2", "a3", "a4"]
    start, end = datetime(2026, 3, 14, tzinfo=UTC), datetime(2026, 3, 16, tzinfo=UTC)
    queued = ["a1", "a2", "a4"]  # a2 is no longer in the lake; a3 is not queued
    assert sorted(table.held_event_ids(queued, start, end)) == ["a1", "a2", "a4"]
    lake = write_day_file(tmp_path / "lake.parquet", [event("a1", user_id=None, event_data={}),
                                                      event("a4", OTHER_DAY, user_id=None)])
    assert table.refresh_events(queued, start, end, [lake], "erasure-1") == 2
    assert [r[0] for r in table.user_rows("alice")] == ["a3"]
    assert table.event_ids(DAY) == {"a1", "a3", "b1"} and table.event_ids(OTHER_DAY) == {"a4"}
    assert json.loads(rows_of(table, DAY)["a1"]["event_data"]) == {}
    assert table.refresh_events(queued, start, end, [lake], "erasure-1") == 2  # redone: the same
    assert table.duplicate_event_ids(DAY) == [] and table.user_row_count("bob") == 1
    assert table.refresh_events(["a3"], start, end, [], "erasure-2") == 0  # no lake row: deleted
    assert table.event_ids(DAY) == {"a1", "b1"}


def test_trace_queries_read_the_engine(table: BigQueryEventTable, tmp_path: Path) -> None:
    table.merge_files(DAY, [write_day_file(tmp_path / "a.parquet", [
        event("a1", user_id="alice", event_data={"email": "a@example.test", "n": 1}),
        event("a2", hour=11, user_id="alice", event_data={"email": "a@example.test"}),
        event("s1", hour=12, user_id=None, event_type="signup",
              event_data={"phone": "+1 555", "x": "a@example.test"})])], "s-1")
    rows = {(t, u, json.dumps(json.loads(d), sort_keys=True), json.loads(m).get("ip"))
            for t, u, _, d, m in table.payloads()}
    assert rows == {("job_posted", "alice", '{"email": "a@example.test", "n": 1}', "10.0.0.1"),
                    ("job_posted", "alice", '{"email": "a@example.test"}', "10.0.0.1"),
                    ("signup", None, '{"phone": "+1 555", "x": "a@example.test"}', "10.0.0.1")}
    assert table.ip_user_agents() == []  # metadata here has "ip", not "ip_address"


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


SERVICE_ACCOUNT = "loader@key-project.iam.gserviceaccount.com"

#: Builds the resource's client from a base64 key (project unset) with dagster-gcp made unimportable, after loading
#: the code location with BigQuery enabled; prints what the client carries.
CLIENT_FROM_KEY = """
import json, os, sys
sys.modules["dagster_gcp"] = None  # any import of it raises
from workdev_pipeline.definitions import defs
from workdev_pipeline.resources.bigquery import BigQueryWarehouseResource
assert "bigquery" in defs().resources
client = BigQueryWarehouseResource(gcp_credentials=os.environ["KEY"], location="EU").client()
print(json.dumps({"project": client.project, "location": client.location,
                  "account": client._credentials.service_account_email,
                  "key_file": os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")}))
"""


def service_account_key() -> str:
    """A base64 service-account key (a fresh RSA key; never sent anywhere)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "key-project", "private_key_id": "k1", "private_key": private,
            "client_email": SERVICE_ACCOUNT, "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}
    return base64.b64encode(json.dumps(info).encode()).decode()


def test_the_resource_builds_its_client_from_a_base64_key_without_dagster_gcp() -> None:
    """BIGQUERY_CREDENTIALS' key gives the client its credentials and, with no project set, its project: decoded in
    memory (no key file, no GOOGLE_APPLICATION_CREDENTIALS), in a process where dagster-gcp cannot be imported."""
    env = {**os.environ, "KEY": service_account_key(), "BIGQUERY_ENABLED": "true", "BIGQUERY_PROJECT_ID": "p"}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    done = subprocess.run([sys.executable, "-c", CLIENT_FROM_KEY], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "project": "key-project", "location": "EU", "account": SERVICE_ACCOUNT, "key_file": None}


def test_a_key_that_is_not_base64_json_is_a_credentials_error() -> None:
    """A malformed key is the credentials error the command line reports as such (exit 1, naming
    BIGQUERY_CREDENTIALS), not a traceback; the key's text is not in the message."""
    from workdev_pipeline.cli_errors import explain

    for key in ("not base64!", base64.b64encode(b"{not json").decode()):
        with pytest.raises(auth_exceptions.DefaultCredentialsError) as raised:
            BigQueryWarehouseResource(gcp_credentials=key).client()
        failure = explain(raised.value)
        assert failure is not None and failure.status == 1 and "BIGQUERY_CREDENTIALS" in failure.line
        assert key not in failure.line
