"""emit_platform_event(): validation, derived fields, idempotent re-sends, nothing half-written."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.waiting import wait_until

EMIT = "SELECT emit_platform_event(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
LOGIN = {"method": "github", "mfa_used": True}


def emit(conn: psycopg.Connection, event_type: str, user_id: uuid.UUID | None = None, event_data: object = None,
         *, entity_type: str | None = None, entity_id: str | None = None, metadata: object = None,
         source: str = "web", session_id: uuid.UUID | None = None, event_id: uuid.UUID | None = None,
         timestamp: datetime | None = None) -> uuid.UUID:
    data = Jsonb(event_data if event_data is not None else {})
    params = (event_type, user_id, entity_type, entity_id, data, Jsonb(metadata or {}), source, session_id, event_id,
              timestamp)
    return conn.execute(EMIT, params).fetchone()[0]


def stored(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM platform_event_store").fetchone()[0]


def test_emit_stores_the_event_with_derived_category_and_timestamp(conn: psycopg.Connection) -> None:
    user, session = uuid.uuid4(), uuid.uuid4()
    before = conn.execute("SELECT now()").fetchone()[0]
    event_id = emit(conn, "user.login", user, LOGIN, metadata={"ip_address": "8.8.8.8"}, session_id=session)
    assert event_id.version == 7
    row = conn.execute(
        "SELECT event_type, event_category, user_id, event_data, metadata, source, session_id, \"timestamp\" "
        "FROM platform_event_store WHERE event_id = %s", (event_id,)).fetchone()
    assert row[:7] == ("user.login", "user_activity", user, LOGIN, {"ip_address": "8.8.8.8"}, "web", session)
    assert before <= row[7] <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("args", "sqlstate", "message"),
    [
        (("nope.unknown", "U", LOGIN), "WD001", "unknown event type 'nope.unknown'"),
        (("", "U", LOGIN), "WD001", "event_type is required"),
        (("user.login", "U", [1, 2]), "WD003", "event_data must be a JSON object, got array"),
        (("user.login", "U", "text"), "WD003", "event_data must be a JSON object, got string"),
        (("user.login", "U", {"mfa_used": True}), "WD005", "lacks required keys: method"),
        (("payment.failed", "U", {"amount": 5}), "WD005", "lacks required keys: currency, failure_code"),
        (("user.login", None, LOGIN), "WD006", "event type 'user.login' requires a user_id"),
        (("user.login", "U", {"method": "x", "blob": "y" * 40_000}), "WD004", "over the 32768-byte limit"),
    ],
)
def test_bad_events_are_rejected_with_a_specific_error(conn: psycopg.Connection, args: tuple, sqlstate: str,
                                                       message: str) -> None:
    event_type, user, data = args
    with pytest.raises(psycopg.Error, match=message) as caught:
        emit(conn, event_type, uuid.uuid4() if user == "U" else user, data)
    assert caught.value.sqlstate == sqlstate
    assert stored(conn) == 0


def test_metadata_must_be_an_object(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error, match="metadata must be a JSON object, got array") as caught:
        conn.execute(EMIT, ("user.login", uuid.uuid4(), None, None, Jsonb(LOGIN), Jsonb([1]), "web", None, None, None))
    assert caught.value.sqlstate == "WD003"


def test_inactive_type_is_rejected(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE event_schemas SET active = false WHERE event_type = 'mfa.disabled'")
    with pytest.raises(psycopg.Error, match=r"event type 'mfa\.disabled' is inactive") as caught:
        emit(conn, "mfa.disabled", uuid.uuid4())
    assert caught.value.sqlstate == "WD002"


def test_timestamps_far_in_the_future_or_past_retention_are_rejected(conn: psycopg.Connection) -> None:
    now = datetime.now(UTC)
    with pytest.raises(psycopg.Error, match="is in the future") as caught:
        emit(conn, "user.login", uuid.uuid4(), LOGIN, timestamp=now + timedelta(hours=1))
    assert caught.value.sqlstate == "WD007"
    with pytest.raises(psycopg.Error, match=r"older than the 365-day retention of 'profile\.viewed'"):
        emit(conn, "profile.viewed", None, {"profile_user_id": str(uuid.uuid4())}, timestamp=now - timedelta(days=400))
    # a little clock skew is fine, and so is a late event well inside retention
    emit(conn, "user.login", uuid.uuid4(), LOGIN, timestamp=now + timedelta(minutes=2))
    emit(conn, "user.login", uuid.uuid4(), LOGIN, timestamp=now - timedelta(days=300))
    assert stored(conn) == 2


def test_anonymous_interaction_events_need_no_user(conn: psycopg.Connection) -> None:
    emit(conn, "search.performed", None, {"query": "react", "results_count": 3, "search_time_ms": 12.5})
    assert conn.execute("SELECT user_id FROM platform_event_store").fetchone() == (None,)


def test_overlong_fields_are_rejected(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error, match="entity_id is longer than 128 characters") as caught:
        emit(conn, "user.login", uuid.uuid4(), LOGIN, entity_id="x" * 129)
    assert caught.value.sqlstate == "WD008"


def test_invalid_uuids_are_rejected_by_the_function(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="invalid input syntax for type uuid"):
        conn.execute("SELECT emit_platform_event('user.login', 'not-a-uuid', p_event_data => '{\"method\": \"x\"}')")
    assert stored(conn) == 0


def test_resending_a_supplied_event_id_writes_once(conn: psycopg.Connection) -> None:
    event_id = uuid.uuid4()
    ts = datetime.now(UTC) - timedelta(hours=1)
    assert emit(conn, "user.login", uuid.uuid4(), LOGIN, event_id=event_id, timestamp=ts) == event_id
    # the same event again, and a retry whose timestamp the server stamped later: neither is a second row
    assert emit(conn, "user.login", uuid.uuid4(), LOGIN, event_id=event_id, timestamp=ts) == event_id
    assert emit(conn, "user.login", uuid.uuid4(), LOGIN, event_id=event_id) == event_id
    assert stored(conn) == 1


def test_a_resend_is_the_same_event_within_7_days_either_side(conn: psycopg.Connection) -> None:
    """event_id_dedup_window(): a stored event at t is a re-send's twin when t' - 7 days <= t < t' + 7 days."""
    event_id = uuid.uuid4()
    stored_at = datetime.now(UTC) - timedelta(days=20)
    emit(conn, "user.login", uuid.uuid4(), LOGIN, event_id=event_id, timestamp=stored_at)
    for delta in (timedelta(days=7), timedelta(days=-7) + timedelta(microseconds=1), timedelta(days=3)):
        assert emit(conn, "user.login", uuid.uuid4(), LOGIN, event_id=event_id, timestamp=stored_at + delta) == event_id
    assert stored(conn) == 1
    # 7 days or more before it (or more than 7 days after it) is another event with the same id
    emit(conn, "user.login", uuid.uuid4(), LOGIN, event_id=event_id, timestamp=stored_at - timedelta(days=7))
    emit(conn, "user.login", uuid.uuid4(), LOGIN, event_id=event_id, timestamp=stored_at + timedelta(days=8))
    assert stored(conn) == 3


def test_a_second_open_transaction_sending_the_same_id_waits_for_the_first_then_returns_it(db: str) -> None:
    """Same id, same UTC day, other timestamps: the unique (event_id, day) index makes the second send wait for
    the first transaction -- which then either committed (nothing written) or rolled back (written)."""
    day = datetime.combine(datetime.now(UTC).date() - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    with psycopg.connect(db) as first, psycopg.connect(db, options="-c statement_timeout=120s") as second, \
            psycopg.connect(db, autocommit=True) as observer, ThreadPoolExecutor(1) as pool:
        for outcome in ("commit", "rollback"):
            event_id = uuid.uuid4()
            emit(first, "user.login", uuid.uuid4(), LOGIN, event_id=event_id, timestamp=day + timedelta(hours=1))
            resend = pool.submit(emit, second, "user.login", uuid.uuid4(), LOGIN, event_id=event_id,
                                 timestamp=day + timedelta(hours=2))
            wait_until(lambda: observer.execute("SELECT pg_blocking_pids(%s)",
                                                (second.info.backend_pid,)).fetchone()[0],
                       "the second send to wait for the first", until=lambda pids: pids == [first.info.backend_pid],
                       timeout=120, interval=0.02)
            getattr(first, outcome)()
            assert resend.result() == event_id
            second.commit()
            rows = observer.execute("SELECT \"timestamp\" FROM platform_event_store WHERE event_id = %s",
                                    (event_id,)).fetchall()
            assert rows == [(day + timedelta(hours=1 if outcome == "commit" else 2),)]


def test_sql_metacharacters_are_data(conn: psycopg.Connection) -> None:
    hostile = "'); DROP TABLE platform_event_store; --"
    event_id = emit(conn, "search.performed", None, {"query": hostile, "results_count": 0, "search_time_ms": 1},
                    entity_type=hostile[:60], entity_id=hostile, source="x'; --")
    row = conn.execute("SELECT event_data->>'query', entity_type, entity_id, source FROM platform_event_store "
                       "WHERE event_id = %s", (event_id,)).fetchone()
    assert row == (hostile, hostile[:60], hostile, "x'; --")


def test_events_outside_partitions_land_in_default_and_move_when_a_partition_is_made(conn: psycopg.Connection) -> None:
    # 8 months back: no partition exists for it yet (migrate keeps 1 month behind, 3 ahead)
    old = (datetime.now(UTC) - timedelta(days=240)).replace(day=15)
    event_id = emit(conn, "user.login", uuid.uuid4(), LOGIN, timestamp=old)
    where = "SELECT tableoid::regclass::text FROM platform_event_store WHERE event_id = %s"
    assert conn.execute(where, (event_id,)).fetchone() == ("platform_event_store_default",)
    assert conn.execute("SELECT ensure_event_partitions(%s, %s)", (old, old)).fetchone() == (1,)
    assert conn.execute(where, (event_id,)).fetchone() == (f"platform_event_store_{old:%Y_%m}",)
    # every partition made, and the default one, has the unique (event_id, UTC day) key re-sends rely on
    keys = conn.execute(
        "SELECT c.relname, x.indexdef FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "LEFT JOIN pg_indexes x ON x.tablename = c.relname AND x.indexname = c.relname || '_event_day_key' "
        "WHERE i.inhparent = 'platform_event_store'::regclass").fetchall()
    day_key = "btree (event_id, (((\"timestamp\" AT TIME ZONE 'UTC'::text))::date))"
    found = {(name, d.startswith("CREATE UNIQUE"), d.partition(" USING ")[2]) for name, d in keys if d}
    assert len(keys) >= 6 and found == {(name, True, day_key) for name, _ in keys}
    emit(conn, "user.login", uuid.uuid4(), LOGIN, event_id=event_id, timestamp=old + timedelta(days=1))
    assert conn.execute("SELECT count(*) FROM platform_event_store WHERE event_id = %s", (event_id,)).fetchone() == (1,)
    assert conn.execute("SELECT ensure_event_partitions(%s, %s)", (old, old)).fetchone() == (0,)
    with pytest.raises(psycopg.Error, match="invalid partition range"):
        conn.execute("SELECT ensure_event_partitions(now(), now() - interval '1 day')")


def nested(levels: int) -> str:
    """JSON text of a payload ``levels`` deep (the payload itself is level 1; objects and arrays alternate below)."""
    inner = "1"
    for level in range(levels - 1):
        inner = f"[{inner}]" if level % 2 else f'{{"k": {inner}}}'
    return f'{{"method": "github", "deep": {inner}}}'


@pytest.mark.parametrize("field", ["event_data", "metadata"])
def test_payloads_nested_deeper_than_32_levels_are_rejected(conn: psycopg.Connection, field: str) -> None:
    def send(levels: int) -> uuid.UUID:
        data, metadata = (nested(levels), "{}") if field == "event_data" else ('{"method": "github"}', nested(levels))
        return conn.execute("SELECT emit_platform_event('user.login', gen_random_uuid(), p_event_data => %s::jsonb,"
                            " p_metadata => %s::jsonb)", (data, metadata)).fetchone()[0]

    assert send(32)
    for levels in (33, 1_000):
        with pytest.raises(psycopg.Error, match=f"^{field} is nested deeper than 32 levels") as caught:
            send(levels)
        assert caught.value.sqlstate == "WD011"
    assert stored(conn) == 1


def test_a_staged_batch_with_a_too_deep_payload_is_rejected_whole(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error, match="event #1 of the batch: event_data is nested deeper than 32") as caught, \
            conn.transaction():
        conn.execute("SELECT open_event_batch()")
        for ord_, data in enumerate([nested(32), nested(40)]):
            conn.execute("INSERT INTO pg_temp.event_ingest_batch (ord, event_id, id_supplied, event_type, user_id,"
                         " event_data) VALUES (%s, gen_random_uuid(), false, 'user.login', gen_random_uuid(),"
                         " %s::jsonb)", (ord_, data))
        conn.execute("SELECT emit_staged_events(false)")
    assert (caught.value.sqlstate, caught.value.diag.message_detail) == ("WD011", "batch_position=1")
    assert stored(conn) == 0


def smallest_too_deep(pad: int = 0) -> str:
    """The smallest payload nested 33 levels (an object holding 32 nested arrays), with a ``pad`` string beside."""
    padding = f', "p": "{"x" * pad}"' if pad else ""
    return f'{{"d": {"[" * 32}{"]" * 32}{padding}}}'


@pytest.mark.parametrize("field", ["event_data", "metadata"])
def test_the_depth_rule_holds_for_the_smallest_and_for_compressed_too_deep_payloads(conn: psycopg.Connection,
                                                                                      field: str) -> None:
    """The rule looks into payloads that could be too deep by their stored size: the smallest possible one is just
    over the bound, and a deep one padded to be compressed when staged is far under it."""
    smallest, padded = smallest_too_deep(), smallest_too_deep(pad=5_000)
    conn.execute("CREATE TEMPORARY TABLE sized (j jsonb)")
    conn.execute("INSERT INTO sized VALUES (%s::jsonb), (%s::jsonb)", (smallest, padded))
    sizes = conn.execute("SELECT pg_column_size(j), pg_column_compression(j) FROM sized").fetchall()
    assert sizes[0][0] > 260 and sizes[0][1] is None and sizes[1][0] <= 260 and sizes[1][1] is not None
    for payload in (smallest, padded):
        data, metadata = (payload, "{}") if field == "event_data" else ('{"method": "github"}', payload)
        with pytest.raises(psycopg.Error, match=f"^{field} is nested deeper than 32 levels") as caught, \
                conn.transaction():
            conn.execute("SELECT emit_platform_event('user.login', gen_random_uuid(), p_event_data => %s::jsonb,"
                         " p_metadata => %s::jsonb)", (data, metadata))
        assert caught.value.sqlstate == "WD011"
        with pytest.raises(psycopg.Error, match=f"event #0 of the batch: {field} is nested deeper") as caught, \
                conn.transaction():
            conn.execute("SELECT open_event_batch()")
            conn.execute("INSERT INTO pg_temp.event_ingest_batch (ord, event_id, id_supplied, event_type, user_id,"
                         " event_data, metadata) VALUES (0, gen_random_uuid(), false, 'user.login', gen_random_uuid(),"
                         " %s::jsonb, %s::jsonb)", (data, metadata))
            conn.execute("SELECT emit_staged_events(false)")
        assert caught.value.sqlstate == "WD011"
    assert stored(conn) == 0
