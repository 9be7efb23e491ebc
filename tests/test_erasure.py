"""GDPR erasure against a real PostgreSQL, a real Delta lake and real Dagster runs: no trace of the user (id,
email, IP address, user agent) is left in any store -- no lake file on disk, no Delta log entry or checkpoint --;
other users are untouched; running it twice is harmless; an unknown user is a clear no-op, an invalid id a clear
error; the check catches what is left."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from dagster import AssetCheckKey, AssetSelection, DagsterInstance, Definitions, asset, materialize

from tests.ingest_helpers import demo, wait_until_lock_released
from workdev_pipeline.assets.governance import ERASURE_OP, erasure_leaves_no_trace, erasure_requests
from workdev_pipeline.assets.keys import ERASURE_REQUESTS
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.governance.erasure import InvalidUserId, file_erasure_requests, parse_user_ids, scrub_message
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake import EventLake, LakeLocation
from workdev_pipeline.resources.fanout import EnabledWarehouses
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource

CLI = Path(sys.executable).with_name("workdev-pipeline")


class Person:
    """A user whose events carry personal values found nowhere else."""

    def __init__(self, tag: str, ip: str) -> None:
        self.user_id = uuid.uuid4()
        self.email = f"{tag}.{self.user_id.hex[:8]}@example.com"
        self.phone = f"+44 20 7946 {self.user_id.int % 10_000:04d}"
        self.address = f"{self.user_id.hex[:6]} {tag.title()} Street, Leeds"
        self.ip = ip
        self.user_agent = f"Mozilla/5.0 ({tag}-browser-{self.user_id.hex[:10]}) Gecko/20100101"
        self.values = (str(self.user_id), self.email, self.phone, self.address, self.ip, self.user_agent)

    def emit(self, db: str, now: datetime) -> list[uuid.UUID]:
        meta = {"ip_address": self.ip, "user_agent": self.user_agent, "platform": "web"}
        personal = {"email": self.email, "phone": self.phone, "address": self.address}
        with psycopg.connect(db) as conn:
            conn.execute("INSERT INTO user_profiles (user_id, role, signed_up_at, country) "
                         "VALUES (%s, 'developer', %s, 'GB')", (self.user_id, now - timedelta(days=400)))
        with AnalyticsClient(db, user_id=self.user_id) as client:
            ids = [client.track("user.login", {"method": "github", **personal}, metadata=meta,
                                timestamp=now - timedelta(days=2, hours=3)),
                   client.track("profile.updated", {"changed_fields": ["bio"], "email": self.email}, metadata=meta,
                                timestamp=now - timedelta(days=1, hours=5)),
                   client.track("search.performed", {"query": "rust", "results_count": 3, "search_time_ms": 12},
                                metadata=meta, timestamp=now - timedelta(hours=7)),
                   # breaks its schema, quoting the email: the dead letter holds it with that message
                   client.track("user.login", {"method": self.email}, metadata=meta,
                                timestamp=now - timedelta(hours=6))]
        return ids



@pytest.fixture
def people(db: str, lake: LakeResource) -> tuple[Person, Person]:
    """Background traffic, two people with events over three days (one dead-lettered each), all swept."""
    now = datetime.now(UTC) - timedelta(minutes=1)
    demo(db, 1_500, users=80, days=3)
    target, other = Person("target", "81.2.69.142"), Person("other", "81.2.69.160")
    target.emit(db, now)
    other.emit(db, now)
    outcome = lake.ingestor(db).sweep()
    assert outcome.events_failed >= 2
    return target, other


def erase(defs: Definitions, instance: DagsterInstance, *, raise_on_error: bool = True, user_id: str | None = None,
          user_ids: tuple[str, ...] | list[str] = ()):
    """File a request per user, as an operator would, then run them by request id in the gdpr_erasure job."""
    db = defs.resources["postgres"].database_url
    request_ids = file_erasure_requests(db, ([user_id] if user_id else []) + list(user_ids))
    return defs.resolve_job_def("gdpr_erasure").execute_in_process(
        instance=instance, run_config={"ops": {ERASURE_OP: {"config": {"request_ids": request_ids}}}},
        raise_on_error=raise_on_error)


def ledger_metadata(result) -> dict:
    return next(m for m in result.asset_materializations_for_node(ERASURE_OP)
                if m.asset_key == ERASURE_REQUESTS).metadata


def everything_in_postgres(conn: psycopg.Connection) -> str:
    """Every row of every table the pipeline keeps about events and users, as text."""
    parts = []
    for table in ("platform_event_store", "event_failures", "user_profiles", "gdpr_erasure_requests",
                  "warehouse_event_refresh", "warehouse_sync_status", "event_aggregations"):
        parts += [r[0] for r in conn.execute(f"SELECT t::text FROM {table} t")]  # fixed names, not data
    return "\n".join(parts)


def everything_in_lake(files: EventLake) -> str:
    """Every file under the lake table's directory, as text: each Parquet file on disk decoded (the data files,
    whether in the current version or not, and the log's checkpoints), the rest (the Delta log) as it is."""
    parts = []
    for path in sorted(Path(files.uri).rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            parts += ["|".join(str(v) for v in row.values()) for row in table.to_pylist()]
        else:
            parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def rows_of(files: EventLake, exclude: set[str] | None = None) -> dict[str, tuple]:
    rows = files.snapshot().query("SELECT event_id, * FROM platform_events ORDER BY event_id")
    return {r[0]: tuple(map(str, r[1:])) for r in rows if not exclude or r[0] not in exclude}


def store_rows(conn: psycopg.Connection, exclude: list[str]) -> dict:
    return {r[0]: r[1:] for r in conn.execute(
        "SELECT event_id::text, user_id, event_data, metadata FROM platform_event_store "
        "WHERE event_id <> ALL(%s::uuid[])", (exclude,))}


def test_erasure_leaves_no_trace_and_touches_no_one_else(db: str, conn: psycopg.Connection, defs: Definitions,
                                                         lake: LakeResource,
                                                         instance: DagsterInstance, people, tmp_path: Path) -> None:
    target, other = people
    files = lake.events()
    target_events = [r[0] for r in conn.execute(
        "SELECT event_id::text FROM platform_event_store WHERE user_id = %s", (target.user_id,))]
    hour = conn.execute("SELECT date_trunc('hour', \"timestamp\", 'UTC') FROM platform_event_store "
                        "WHERE user_id = %s AND event_type = 'profile.updated'", (target.user_id,)).fetchone()[0]
    conn.execute("INSERT INTO event_aggregations (aggregation_type, period_start, period_end, event_type, "
                 "event_category, total_events, unique_users, unique_sessions) VALUES "
                 "('hourly', %s, %s, 'profile.updated', 'content', 1, 1, 1)", (hour, hour + timedelta(hours=1)))
    others_before = store_rows(conn, target_events)
    warehouse_before = rows_of(files, exclude=set(target_events))
    assert all(v in everything_in_postgres(conn) for v in target.values)
    assert str(target.user_id) in everything_in_lake(files) and target.email in everything_in_lake(files)

    result = erase(defs, instance, user_id=str(target.user_id))
    assert result.success
    assert [(e.check_name, e.passed) for e in result.get_asset_check_evaluations()] == \
        [("erasure_leaves_no_trace", True)]
    meta = ledger_metadata(result)
    assert meta["users_erased"].value == 1
    (request,) = meta["requests"].value
    assert request["status"] == "erased" and request["postgres_events"] == 4 and request["dead_letter_rows"] == 1
    assert request["profile_rows"] == 1 and request["warehouse_rows"] == {"lake": 3}  # the 4th is dead-lettered
    assert request["aggregation_rows"] == {"hourly": 1} and request["days"] >= 2

    # no trace anywhere: PostgreSQL (store, dead letter, profiles, the ledger itself), the lake's files and log
    postgres_text, warehouse_text = everything_in_postgres(conn), everything_in_lake(files)
    for value in target.values:
        assert value not in postgres_text, value
        assert value not in warehouse_text, value
    anonymised = conn.execute("SELECT count(*) FROM platform_event_store WHERE event_id = ANY(%s::uuid[]) AND "
                              "user_id IS NULL AND NOT event_data ?| array['email', 'phone', 'address'] AND NOT "
                              "metadata ?| array['ip_address', 'user_agent']", (target_events,)).fetchone()[0]
    assert anonymised == 4  # anonymised, not deleted
    message = conn.execute("SELECT error_message FROM event_failures f JOIN platform_event_store e USING (event_id) "
                           "WHERE e.event_id = ANY(%s::uuid[])", (target_events,)).fetchone()[0]
    assert message.startswith("event_data.method must be one of") and message.endswith(", got [erased]")
    ledger = conn.execute("SELECT status, store_rows, value_hashes, cardinality(affected_hours), "
                          "aggregations_recomputed_at FROM gdpr_erasure_requests").fetchone()
    assert ledger[0] == "erased" and ledger[1] == 4 and ledger[3] >= 3 and ledger[4] is not None  # re-aggregated
    assert set(ledger[2]) == {"email", "phone", "address", "ip_address", "user_agent", "ip_user_agent"}

    # everyone else untouched, in both stores
    assert store_rows(conn, target_events) == others_before
    assert rows_of(files, exclude=set(target_events)) == warehouse_before
    assert str(other.user_id) in warehouse_text and other.email in warehouse_text
    assert other.ip in postgres_text and other.user_agent in postgres_text

    # the rewritten days hold exactly what a full rebuild from PostgreSQL writes
    shutil.copytree(files.location.root, tmp_path / "rebuilt")
    copy = EventLake(LakeLocation.from_env(str(tmp_path / "rebuilt")))
    days = [r[0] for r in files.snapshot().query("SELECT DISTINCT event_date FROM platform_events "
                                                  "WHERE list_contains(?, event_id)", [target_events])]
    Ingestor(db, copy).rebuild(days)
    assert rows_of(copy) == rows_of(files)

    # twice: harmless, said so, nothing rewritten
    snapshot = files.version()
    again = erase(defs, instance, user_id=str(target.user_id).upper())
    assert again.success and [e.passed for e in again.get_asset_check_evaluations()] == [True]
    (request,) = ledger_metadata(again)["requests"].value
    assert request["status"] == "nothing_found" and request["notes"] == ["already erased by request #1"]
    assert files.version() == snapshot


@pytest.fixture
def small_files(monkeypatch: pytest.MonkeyPatch) -> int:
    """Lake files of 64 rows: a day of the fixture's traffic spans several files."""
    monkeypatch.setenv("WORKDEV_LAKE_FILE_ROWS", "64")
    return 64


def files_by_event(files: EventLake) -> dict[str, tuple[str, str]]:
    """{event_id: (the data file holding it, its row as text)} of the lake's latest version."""
    root = Path(files.uri)
    found = {}
    for path in files.snapshot().files().column("path").to_pylist():
        for row in pq.read_table(root / path).to_pylist():
            found[row["event_id"]] = (path, str(sorted(row.items())))
    return found


def test_erasure_rewrites_only_the_files_holding_changed_rows(small_files: int, db: str, conn: psycopg.Connection,
                                                              defs: Definitions, lake: LakeResource,
                                                              instance: DagsterInstance, people) -> None:
    target, _ = people
    files = lake.events()
    before = files_by_event(files)
    assert max(files.snapshot().files().column("num_records").to_pylist()) == small_files

    result = erase(defs, instance, user_id=str(target.user_id))
    assert result.success and [e.passed for e in result.get_asset_check_evaluations()] == [True]
    after = files_by_event(files)
    changed = {e for e, (_, row) in before.items() if after.get(e, (None, None))[1] != row}
    assert changed and set(after) == set(before)  # the user's rows anonymised in place, none lost or added
    rewritten = {before[e][0] for e in changed}
    paths_before = {p for p, _ in before.values()}
    paths_after = {p for p, _ in after.values()}
    assert paths_before - paths_after == rewritten  # exactly the files holding changed rows, no others
    days = {p.split("/")[0] for p in rewritten}
    untouched = {p for p in paths_before - rewritten if p.split("/")[0] in days}
    assert untouched and untouched <= paths_after  # the touched days' other files stay as they were
    assert not any(v in everything_in_lake(files) for v in target.values)


def aggregation_rows(conn: psycopg.Connection, periods: list[tuple[str, datetime]]) -> dict[tuple, tuple]:
    """{(aggregation_type, period_start, event_type): (total_events, unique_users, unique_sessions, computed_at)}."""
    return {(t, p, e): rest for t, p, e, *rest in conn.execute(
        "SELECT aggregation_type, period_start, event_type, total_events, unique_users, unique_sessions, computed_at "
        "FROM event_aggregations WHERE (aggregation_type, period_start) IN (SELECT * FROM unnest(%s::text[], "
        "%s::timestamptz[]))", ([t for t, _ in periods], [p for _, p in periods]))}


def test_the_erasure_run_recomputes_the_aggregations_it_touched(db: str, conn: psycopg.Connection,
                                                                defs: Definitions, lake: LakeResource,
                                                                instance: DagsterInstance, people) -> None:
    """The closed hours, days and weeks holding the user's events are recomputed by the erasure run itself, from
    the anonymised events: totals unchanged, the user no longer among the unique users; nothing else runs."""
    from workdev_pipeline.aggregations.engine import Aggregator
    from workdev_pipeline.aggregations.periods import DAILY, GRANULARITIES, HOURLY, WEEKLY
    from workdev_pipeline.lake.aggregations import AggregationLake

    target, _ = people
    files = lake.events()
    now = datetime.now(UTC)
    loaded = [(r[0], r[1]) for r in files.snapshot().query(  # the user's events the lake holds (not dead-lettered)
        "SELECT \"timestamp\", event_type FROM platform_events WHERE user_id = ?", [str(target.user_id)])]
    assert len(loaded) == 3
    stamps = [r[0] for r in conn.execute(  # all the user's events, the dead-lettered one's hour included
        "SELECT \"timestamp\" FROM platform_event_store WHERE user_id = %s", (target.user_id,))]
    assert len(stamps) == 4
    touched = sorted({(g.name, g.floor(ts)) for ts in stamps for g in (HOURLY, DAILY, WEEKLY)
                      if g.floor(ts) + g.step <= now})
    assert {t for t, _ in touched} >= {"hourly", "daily"}
    aggregator = Aggregator(files)  # as the aggregation assets computed them before the erasure
    for name, start in touched:
        aggregator.rebuild(conn, GRANULARITIES[name], start, start + GRANULARITIES[name].step)
    before = aggregation_rows(conn, touched)
    users_of = {(name, start, event_type) for ts, event_type in loaded for name, start in touched
                if start <= ts < start + GRANULARITIES[name].step}
    assert users_of and all(before[k][1] >= 1 for k in users_of)

    result = erase(defs, instance, user_id=str(target.user_id))
    assert result.success
    meta = ledger_metadata(result)
    assert meta["aggregation_periods_recomputed"].value == len(touched)
    assert {t: sorted(v) for t, v in meta["aggregation_periods"].value.items()} == \
        {t: sorted(p.isoformat() for n, p in touched if n == t) for t in {n for n, _ in touched}}
    assert conn.execute("SELECT aggregations_recomputed_at IS NOT NULL FROM gdpr_erasure_requests").fetchone()[0]

    after = aggregation_rows(conn, touched)
    assert after.keys() == before.keys()
    for key, (total, users, sessions, computed_at) in after.items():
        assert [total, sessions] == before[key][0:3:2], key  # the events stay (anonymised), and their sessions
        assert users == before[key][1] - (1 if key in users_of else 0), key  # the user no longer counted
        assert computed_at > before[key][3], key  # recomputed by the erasure run
    # exactly what a fresh computation from the anonymised events gives, in PostgreSQL and the lake's table
    for name, start in touched:
        granularity = GRANULARITIES[name]
        fresh, _ = aggregator.compute(granularity, start, start + granularity.step, {})
        expected = {(r["event_type"], r["total_events"], r["unique_users"], r["unique_sessions"])
                    for r in fresh.to_pylist()}
        assert {(e, *v[:3]) for (t, p, e), v in after.items() if (t, p) == (name, start)} == expected
        stored = AggregationLake(files.location).read_range(granularity, start, start + granularity.step)
        assert {(r["event_type"], r["total_events"], r["unique_users"], r["unique_sessions"])
                for r in stored.to_pylist()} == expected

    # nothing pending: a second erasure recomputes nothing
    again = erase(defs, instance, user_id=str(uuid.uuid4()))
    assert ledger_metadata(again)["aggregation_periods_recomputed"].value == 0


def test_batch_unknown_users_and_bad_ids(db: str, conn: psycopg.Connection, defs: Definitions,
                                         instance: DagsterInstance, lake: LakeResource,
                                         people) -> None:
    target, other = people
    unknown = uuid.uuid4()
    result = erase(defs, instance, user_ids=[str(target.user_id), str(unknown), str(other.user_id)])
    assert result.success
    meta = ledger_metadata(result)
    assert meta["outcome"].value == "2 user(s) erased, 1 with nothing to erase"
    statuses = [(r["status"], r["notes"]) for r in meta["requests"].value]
    assert statuses == [("erased", []), ("nothing_found", ["unknown user: no events, dead-letter rows, profile or "
                                                          "warehouse rows"]), ("erased", [])]
    text = everything_in_postgres(conn) + everything_in_lake(lake.events())
    assert not any(v in text for v in target.values + other.values)

    # an unknown user alone: a clear no-op report, and the check still passes
    alone = erase(defs, instance, user_id=str(uuid.uuid4()))
    assert alone.success and ledger_metadata(alone)["outcome"].value == "0 user(s) erased, 1 with nothing to erase"

    # a bad id: filing fails with a clear message, and nothing is filed (not even the valid ids of the batch)
    before = conn.execute("SELECT count(*) FROM gdpr_erasure_requests").fetchone()[0]
    with pytest.raises(InvalidUserId, match="'not-a-uuid' is not a valid user id"):
        file_erasure_requests(db, [str(uuid.uuid4()), "not-a-uuid"])
    assert conn.execute("SELECT count(*) FROM gdpr_erasure_requests").fetchone()[0] == before
    # a request id the ledger does not know: the run fails saying so
    bad = defs.resolve_job_def("gdpr_erasure").execute_in_process(
        instance=instance, run_config={"ops": {ERASURE_OP: {"config": {"request_ids": [987654]}}}},
        raise_on_error=False)
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no erasure request #987654 in the ledger" in str(failure.event_specific_data.error)
    with pytest.raises(InvalidUserId, match="no user id given"):
        parse_user_ids([])


@pytest.mark.slow
def test_cli_erase(db: str, conn: psycopg.Connection, lake: LakeResource, people) -> None:
    target, other = people
    env = {**os.environ, "WORKDEV_DATABASE_URL": db, "WORKDEV_LAKE_URI": lake.uri}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, timeout=120, check=False)

    done = cli("erase", str(target.user_id))
    assert done.returncode == 0, done.stderr
    assert "request #1: erased: 4 own event(s)" in done.stdout and "1 dead-letter row(s)" in done.stdout
    assert str(target.user_id) not in done.stdout + done.stderr  # requests are named by id, users never
    assert "lake: 3 row(s) rewritten" in done.stdout
    assert "aggregations recomputed:" in done.stdout  # the CLI, like the job, re-aggregates what it erased
    assert conn.execute("SELECT count(*) FILTER (WHERE aggregations_recomputed_at IS NOT NULL), count(*) "
                        "FROM gdpr_erasure_requests WHERE status = 'erased'").fetchone() == (1, 1)
    assert target.email not in everything_in_lake(lake.events())
    unknown = uuid.uuid4()
    twice = cli("erase", str(target.user_id), str(unknown))
    assert twice.returncode == 0, twice.stderr
    assert "already erased by request #1" in twice.stdout
    assert "request #3: nothing to erase" in twice.stdout
    bad = cli("erase", "12345")
    assert bad.returncode == 2 and "error: '12345' is not a valid user id" in bad.stderr
    assert "Traceback" not in bad.stderr
    # the seed's statement as written, then `erase --file-only` / `erase --pending`
    conn.execute("UPDATE platform_events SET user_id = NULL, event_data = event_data - 'email' WHERE user_id = %s",
                 (other.user_id,))
    filed = cli("erase", "--file-only", str(uuid.uuid4()))
    assert filed.returncode == 0 and filed.stdout.startswith("filed request(s) #"), filed.stderr
    pending = cli("erase", "--pending")
    assert pending.returncode == 0, pending.stderr
    assert pending.stdout.count("nothing to erase") == 1 and pending.stdout.count(": erased:") == 1
    assert all(v not in everything_in_lake(lake.events()) for v in other.values)
    assert cli("erase", "--pending", str(other.user_id)).returncode == 2


def test_the_check_catches_what_is_left(db: str, conn: psycopg.Connection, defs: Definitions,
                                        lake: LakeResource, instance: DagsterInstance,
                                        people) -> None:
    target, _ = people
    assert erase(defs, instance, user_id=str(target.user_id)).success
    resources = {"postgres": PostgresResource(database_url=db), "warehouses": EnabledWarehouses(lake=lake)}
    check_only = AssetSelection.checks(AssetCheckKey(ERASURE_REQUESTS, "erasure_leaves_no_trace"))

    def verdict() -> tuple[bool, dict]:
        result = materialize([erasure_requests, erasure_leaves_no_trace], selection=check_only, instance=instance,
                             resources=resources)
        evaluation = result.get_asset_check_evaluations()[0]
        return evaluation.passed, evaluation.metadata["places"].value

    assert verdict() == (True, {})
    # the user comes back (a late event, a restored backup): the check fails, naming the request, not the user
    with AnalyticsClient(db, user_id=target.user_id) as client:
        client.track("user.logout", {}, metadata={"ip_address": target.ip})
    passed, found = verdict()
    assert not passed and found == {"#1": ["postgres: user_id (1 rows)"]}
    conn.execute("DELETE FROM platform_event_store WHERE user_id = %s", (target.user_id,))
    # an anonymised event that kept the user's email, and their device on an anonymous event
    conn.execute("UPDATE platform_event_store SET event_data = event_data || jsonb_build_object('email', %s::text) "
                 "WHERE event_id = (SELECT event_id FROM platform_event_store WHERE event_type = 'user.logout' "
                 "AND user_id IS NOT NULL LIMIT 1)", (target.email,))
    conn.execute("SELECT emit_platform_event('project.viewed', NULL, 'project', 'p1', %s, %s)",
                 (json.dumps({"project_id": str(uuid.uuid4())}),
                  json.dumps({"ip_address": target.ip, "user_agent": target.user_agent})))
    passed, found = verdict()
    assert not passed
    assert set(found["#1"]) == {"postgres: email (1 rows)", "postgres: ip_user_agent (1 rows)"}
    conn.execute("DELETE FROM platform_event_store WHERE event_type = 'project.viewed' AND user_id IS NULL")
    conn.execute("UPDATE platform_event_store SET event_data = event_data - 'email' WHERE event_data ? 'email' AND "
                 "event_type = 'user.logout'")
    assert verdict() == (True, {})
    # another user's event naming them, deep in its payload: found wherever it sits
    conn.execute("UPDATE platform_event_store SET event_data = event_data || jsonb_build_object('note', "
                 "jsonb_build_object('about', 'met ' || %s::text || ' today')) WHERE event_id = (SELECT event_id "
                 "FROM platform_event_store WHERE user_id IS NOT NULL LIMIT 1)", (str(target.user_id),))
    passed, found = verdict()
    assert not passed and found == {"#1": ["postgres: user_id (1 rows)"]}
    conn.execute("UPDATE platform_event_store SET event_data = event_data - 'note' WHERE event_data ? 'note'")
    passed, found = verdict()
    assert passed, found

    # a value Dagster's own storage keeps (a log line quoting it): found there too, with the run named
    @asset
    def leaky(context) -> None:
        context.log.info(f"contacted {target.email}")

    materialize([leaky], instance=instance)
    passed, found = verdict()
    assert not passed and len(found["#1"]) == 1 and found["#1"][0].startswith("dagster_run_storage (")
    assert target.email not in json.dumps(found) and target.ip not in json.dumps(found)


def test_scrubbing_dead_letter_messages() -> None:
    secret = "alice@example.com"
    assert scrub_message(f'event_data.method must be one of ["a", "b"], got "{secret}"', [secret]) == \
        'event_data.method must be one of ["a", "b"], got [erased]'
    assert scrub_message('event_data.email must match pattern ^x, got "alice@exam...', []) == \
        "event_data.email must match pattern ^x, got [erased]"  # a truncated preview goes too
    assert scrub_message("event_data.budget must be of type number, got string", [secret]) == \
        "event_data.budget must be of type number, got string"
    assert scrub_message(f"enrichment failed: ValueError: bad {secret}", [secret]) == \
        "enrichment failed: ValueError: bad [erased]"


def test_a_run_killed_after_the_lake_commit_is_finished_by_the_next(
        db: str, conn: psycopg.Connection, defs: Definitions, lake: LakeResource, instance: DagsterInstance,
        people) -> None:
    """SIGKILLed between the lake's commit and the queue's bookkeeping: PostgreSQL is anonymised and the work is still
    queued; the next erasure (of anyone) rewrites the queued days again and closes the request; exactly once."""
    target, _ = people
    files = lake.events()
    env = {**os.environ, "WORKDEV_DATABASE_URL": db, "WORKDEV_LAKE_URI": lake.uri,
           "WORKDEV_CRASH_AT": "after_commit"}
    killed = subprocess.run([str(CLI), "erase", str(target.user_id)], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert killed.returncode == -9, killed.stderr
    wait_until_lock_released(db)
    assert conn.execute("SELECT status FROM gdpr_erasure_requests").fetchone()[0] == "running"
    assert conn.execute("SELECT count(*) FROM warehouse_event_refresh").fetchone()[0] > 0
    assert conn.execute("SELECT count(*) FROM platform_event_store WHERE user_id = %s",
                        (target.user_id,)).fetchone()[0] == 0

    result = erase(defs, instance, user_id=str(uuid.uuid4()))  # someone else's (unknown) request
    assert result.success and [e.passed for e in result.get_asset_check_evaluations()] == [True]
    assert "finished the queued work of earlier request(s) #1" in ledger_metadata(result)["outcome"].value
    assert conn.execute("SELECT status FROM gdpr_erasure_requests WHERE request_id = 1").fetchone()[0] == "erased"
    held = [r[0] for r in files.snapshot().query("SELECT event_id FROM platform_events")]
    with psycopg.connect(db) as c:
        expected = {r[0] for r in c.execute(
            "SELECT event_id::text FROM platform_event_store e WHERE NOT EXISTS "
            "(SELECT 1 FROM event_failures f WHERE f.event_id = e.event_id AND f.resolved_at IS NULL)")}
    assert len(held) == len(set(held)) and set(held) == expected
    assert not any(v in everything_in_lake(files) for v in target.values)


def test_the_pipeline_role_can_erase(db: str, conn: psycopg.Connection, login_role, people) -> None:
    """Least privilege: the pipeline's group role has every grant erasure needs (PostgreSQL part)."""
    from workdev_pipeline.governance.erasure import erase_users

    target, _ = people
    batch = erase_users(login_role("workdev_pipeline"), [str(target.user_id)])
    assert [r.status for r in batch.results] == ["erased"] and batch.results[0].store_rows == 4
    assert not any(v in everything_in_postgres(conn) for v in target.values)


@pytest.mark.slow
def test_a_new_host_with_an_empty_home_erases_and_applies_retention_without_losing_anyone(
        db: str, conn: psycopg.Connection, lake: LakeResource, people, tmp_path: Path) -> None:
    """The lake lives elsewhere (WORKDEV_LAKE_URI, as a shared store would); the host running the erasure and the
    retention has an empty WORKDEV_HOME and another working directory: every other user's row stays in the lake."""
    target, other = people
    files = lake.events()
    everyone_else = rows_of(files, exclude={r[0] for r in conn.execute(
        "SELECT event_id::text FROM platform_event_store WHERE user_id = %s", (target.user_id,))})
    home, elsewhere = tmp_path / "fresh-home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    env = {**os.environ, "WORKDEV_DATABASE_URL": db, "WORKDEV_LAKE_URI": lake.uri, "WORKDEV_HOME": str(home)}
    for args in (["erase", str(target.user_id)], ["retention"]):
        done = subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, cwd=elsewhere,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr
    assert rows_of(files, exclude=set(rows_of(files)) - set(everyone_else)) == everyone_else
    assert len(rows_of(files)) == len(everyone_else) + 3  # the target's rows stay, anonymised
    assert str(other.user_id) in everything_in_lake(files)
    assert not any(v in everything_in_lake(files) for v in target.values)
    assert not any(p.name == "lake" for p in home.rglob("*"))  # nothing of the lake was written on this host


def test_without_rows_keeps_every_other_row_in_order() -> None:
    import pyarrow as pa

    from workdev_pipeline.governance.warehouse import without_rows

    table = pa.table({"n": list(range(5_000))})
    for dropped in ([], [0], [4_999], [7, 8, 2_000], list(range(0, 5_000, 2))):
        mask = pa.array([i in set(dropped) for i in range(5_000)])
        assert without_rows(table, mask).column("n").to_pylist() == [i for i in range(5_000) if i not in set(dropped)]


def test_erasure_reaches_nested_fields_sessions_references_and_the_seed_statement(
        db: str, conn: psycopg.Connection, defs: Definitions, lake: LakeResource, instance: DagsterInstance) -> None:
    """The issue's scenario: a victim with nested personal fields and a logged-out session, other users naming
    them, a dead-lettered event quoting their email; after the erasure none of their values is anywhere, others'
    own data is intact, their references point at one pseudonym; the seed's own statement is completed too."""
    now = datetime.now(UTC) - timedelta(minutes=1)
    victim, friend, bystander = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    email, phone = f"victim.{victim.hex[:8]}@example.com", f"+33 1 {victim.int % 10**8:08d}"
    nested_email = f"contact.{victim.hex[:8]}@example.org"
    agent = f"Mozilla/5.0 (victim-{victim.hex[:10]})"
    with AnalyticsClient(db) as anonymous:  # logged out first, then signs in within the same session
        session = anonymous.init_session(user_agent=agent, ip_address="81.2.69.190", platform="web")
        anon_ids = [anonymous.track("project.viewed", {"project_id": str(uuid.uuid4())}, timestamp=now - timedelta(
            hours=5))]
        anonymous.set_user(victim)
        own = [anonymous.track("profile.updated", {"changed_fields": ["contact"], "display_name": "Vic Tim",
                                                   "contact": {"email": nested_email, "phone": phone},
                                                   "history": [{"email": email}]}, timestamp=now - timedelta(hours=4)),
               anonymous.track("user.login", {"method": email}, timestamp=now - timedelta(hours=3))]  # dead-lettered
    with AnalyticsClient(db, user_id=friend) as client:
        refs = [client.track("profile.viewed", {"profile_user_id": str(victim)}, timestamp=now - timedelta(hours=2)),
                client.track("message.sent", {"conversation_id": str(uuid.uuid4()), "recipient_user_id": str(victim),
                                              "recipient_email": email, "length": 12,
                                              "tip": Decimal("12345678901234567.89")},
                             timestamp=now - timedelta(hours=2)),
                client.track("search.performed", {"query": f"who is {nested_email}", "results_count": 1,
                                                  "search_time_ms": 3}, timestamp=now - timedelta(hours=2))]
        friend_own = client.track("review.posted", {"reviewee_user_id": str(bystander), "reviewee_type": "client",
                                                    "rating_overall": 4}, timestamp=now - timedelta(hours=1))
    assert session.session_id and len(anon_ids + own + refs) == 6
    assert lake.ingestor(db).sweep().events_failed == 1
    secrets = (str(victim), email, phone, nested_email, agent, session.device_fingerprint, str(session.session_id))
    assert all(v in everything_in_postgres(conn) for v in secrets)
    friend_before = conn.execute("SELECT event_data FROM platform_event_store WHERE event_id = %s",
                                 (friend_own,)).fetchone()[0]

    result = erase(defs, instance, user_id=str(victim))
    assert result.success and [e.passed for e in result.get_asset_check_evaluations()] == [True]
    (request,) = ledger_metadata(result)["requests"].value
    assert (request["postgres_events"], request["session_events"], request["referencing_events"]) == (2, 1, 3)
    postgres_text, lake_text = everything_in_postgres(conn), everything_in_lake(lake.events())
    for value in secrets:
        assert value not in postgres_text, value
        assert value not in lake_text, value
    pseudonym = conn.execute("SELECT pseudonym::text FROM gdpr_erasure_requests").fetchone()[0]
    viewed, sent, searched = (conn.execute("SELECT event_data, user_id FROM platform_event_store WHERE event_id = %s",
                                           (e,)).fetchone() for e in refs)
    assert viewed == ({"profile_user_id": pseudonym}, friend)  # the friend's own event, naming a pseudonym
    assert sent[0]["recipient_user_id"] == pseudonym and "recipient_email" not in sent[0]
    assert conn.execute("SELECT event_data ->> 'tip' FROM platform_event_store WHERE event_id = %s",
                        (refs[1],)).fetchone()[0] == "12345678901234567.89"  # rewritten, every digit kept
    assert searched[0]["query"] == "who is [erased]"
    assert conn.execute("SELECT event_data FROM platform_event_store WHERE event_id = %s",
                        (friend_own,)).fetchone()[0] == friend_before
    linkable = conn.execute("SELECT count(*) FROM platform_event_store WHERE event_id = ANY(%s) AND "
                            "(session_id IS NOT NULL OR user_id IS NOT NULL OR metadata ? 'device_fingerprint')",
                            (anon_ids + own,)).fetchone()[0]
    assert linkable == 0  # the erased user's events can no longer be tied to each other
    assert str(victim) not in json.dumps([r.run_config for r in instance.get_runs()])  # runs name requests only
    assert all(str(victim) not in json.dumps(r.tags) for r in instance.get_runs())

    # the seed's own GDPR statement, run as written against the view: recorded, then completed everywhere
    other = uuid.uuid4()
    other_email = f"other.{other.hex[:8]}@example.com"
    with AnalyticsClient(db, user_id=other) as client:
        client.track("profile.updated", {"changed_fields": ["contact"], "contact": {"email": other_email}},
                     timestamp=now - timedelta(minutes=30))
    lake.ingestor(db).sweep()
    conn.execute("UPDATE platform_events SET user_id = NULL, event_data = event_data - 'email' - 'phone' - 'address', "
                 "metadata = metadata - 'ip_address' - 'user_agent' WHERE user_id = %s", (other,))
    assert other_email in everything_in_lake(lake.events())  # the statement alone reaches PostgreSQL only
    completed = defs.resolve_job_def("gdpr_erasure").execute_in_process(
        instance=instance, run_config={"ops": {ERASURE_OP: {"config": {"request_ids": []}}}})
    assert completed.success and [e.passed for e in completed.get_asset_check_evaluations()] == [True]
    for text in (everything_in_postgres(conn), everything_in_lake(lake.events())):
        assert str(other) not in text and other_email not in text
    assert conn.execute("SELECT count(*) FROM gdpr_erasure_inbox").fetchone()[0] == 0

    again = erase(defs, instance, user_id=str(victim))  # twice: harmless
    assert again.success and [e.passed for e in again.get_asset_check_evaluations()] == [True]


def test_the_sensor_files_and_launches_requests_by_id(db: str, conn: psycopg.Connection, defs: Definitions,
                                                      instance: DagsterInstance, people) -> None:
    """The seed's statement, then a sensor tick: a request is filed for the user and a run requested that names the
    request, never the user; with nothing open, the tick skips."""
    from dagster import build_sensor_context

    target, _ = people
    sensor = defs.get_sensor_def("gdpr_erasure_requests_sensor")

    def tick():
        with build_sensor_context(instance=instance, resources={"postgres": PostgresResource(database_url=db)},
                                  definitions=defs) as context:
            return sensor(context)

    assert "no open erasure request" in str(tick().skip_message)
    conn.execute("UPDATE platform_events SET user_id = NULL WHERE user_id = %s", (target.user_id,))
    request = tick()
    (request_id,) = conn.execute("SELECT request_id FROM gdpr_erasure_requests WHERE requested_by LIKE "
                                 "'UPDATE platform_events%'").fetchone()
    assert request.run_config["ops"] == {ERASURE_OP: {"config": {"request_ids": [request_id], "dry_run": False,
                                                                 "reason": "requests filed"}}}
    assert request.tags["workdev/erasure_requests"] == str(request_id)
    assert str(target.user_id) not in json.dumps([request.run_config, request.tags, request.run_key])
    result = defs.resolve_job_def("gdpr_erasure").execute_in_process(instance=instance, run_config=request.run_config,
                                                                      tags=request.tags)
    assert result.success and [e.passed for e in result.get_asset_check_evaluations()] == [True]
    assert all(v not in everything_in_postgres(conn) for v in target.values)
    assert "no open erasure request" in str(tick().skip_message)
