"""Property-based tests of payload validation: the client and the SQL function agree with a simple oracle."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workdev_pipeline import catalog
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.errors import EventRejected, InvalidPayload, MissingRequiredKeys, PayloadTooDeep, PayloadTooLarge
from workdev_pipeline.payloads import too_deep

EVENT_TYPE = catalog.get_event_type("payment.failed")
REQUIRED = set(EVENT_TYPE.required)
LIMIT = EVENT_TYPE.max_payload_bytes
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# JSON values whose text form round-trips through jsonb unchanged (no NaN/inf, moderate float magnitudes)
scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
           | st.floats(min_value=-1e15, max_value=1e15, allow_nan=False, allow_subnormal=False)
           | st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
keys = st.sampled_from([*sorted(REQUIRED), "note", "extra"]) | st.text(max_size=8)


def nest(value: Any, levels: int, in_list: bool) -> Any:
    """``value`` wrapped in ``levels`` lists or single-key objects."""
    for _ in range(levels):
        value = [value] if in_list else {"n": value}
    return value


# around the depth limit (32 levels, the payload itself the first)
deep_values = st.builds(nest, json_values, st.integers(min_value=28, max_value=40), st.booleans())
payloads = st.builds(
    lambda base, pad, deep: {**base, **({"pad": "x" * pad} if pad else {}), **({"deep": deep[1]} if deep[0] else {})},
    st.dictionaries(keys, json_values, max_size=6),
    st.sampled_from([0, 0, 0, LIMIT // 2, LIMIT - 200, LIMIT, LIMIT + 100]),
    st.tuples(st.sampled_from([False, False, True]), deep_values),
)


def expected_error(conn: psycopg.Connection, payload: Any) -> type[EventRejected] | None:
    """The oracle: which error the rules call for, or None. PostgreSQL measures the size, as the rule says."""
    if payload is None:  # no event_data at all means an empty object
        payload = {}
    if not isinstance(payload, dict):
        return InvalidPayload
    text = json.dumps(payload)
    if "\\u0000" in text:
        return InvalidPayload
    size = conn.execute("SELECT octet_length(%s::jsonb::text)", (text,)).fetchone()[0]
    if size > LIMIT:
        return PayloadTooLarge
    if too_deep(payload):
        return PayloadTooDeep
    if not payload.keys() >= REQUIRED:
        return MissingRequiredKeys
    return None


def reset(conn: psycopg.Connection) -> None:
    conn.execute("DELETE FROM platform_event_store")


@SETTINGS
@given(payload=payloads | json_values)
def test_single_emit_accepts_exactly_what_the_rules_allow(client: AnalyticsClient, conn: psycopg.Connection,
                                                          payload: Any) -> None:
    reset(conn)
    expected = expected_error(conn, payload)
    try:
        event_id = client.track("payment.failed", payload)
        payload = payload if payload is not None else {}
    except EventRejected as exc:
        assert type(exc) is expected, f"{type(exc).__name__}: {exc}"
        if expected is MissingRequiredKeys:
            payload = payload if payload is not None else {}
            assert str(exc).endswith("lacks required keys: " + ", ".join(sorted(REQUIRED - payload.keys())))
        assert conn.execute("SELECT count(*) FROM platform_event_store").fetchone()[0] == 0
        return
    assert expected is None
    stored = conn.execute("SELECT event_data FROM platform_event_store WHERE event_id = %s", (event_id,)).fetchone()[0]
    assert stored == json.loads(json.dumps(payload))


@SETTINGS
@given(batch=st.lists(payloads, min_size=1, max_size=25))
def test_a_batch_is_all_or_nothing_and_fails_at_the_first_bad_event(client: AnalyticsClient,
                                                                    conn: psycopg.Connection,
                                                                    batch: list[dict[str, Any]]) -> None:
    reset(conn)
    verdicts = [expected_error(conn, p) for p in batch]
    first_bad = next((i for i, v in enumerate(verdicts) if v is not None), None)
    events = [{"event_type": "payment.failed", "user_id": uuid.uuid4(), "event_data": p} for p in batch]
    try:
        result = client.emit_many(events, batch_size=7)
    except EventRejected as exc:
        assert (exc.batch_position, type(exc)) == (first_bad, verdicts[first_bad])
        assert conn.execute("SELECT count(*) FROM platform_event_store").fetchone()[0] == 0
        return
    assert first_bad is None
    assert result.inserted == len(batch)
    assert conn.execute("SELECT count(*) FROM platform_event_store").fetchone()[0] == len(batch)


# -- what readers see: no network identity under any key, at any depth -----------------------------------------

NETWORK_WORDS = [["ip"], ["ip", "address"], ["ip", "addr"], ["client", "ip"], ["remote", "addr"], ["x", "real", "ip"],
                 ["x", "forwarded", "for"], ["forwarded"], ["user", "agent"], ["http", "user", "agent"], ["ua"],
                 ["ipv6"], ["cf", "connecting", "ip"], ["true", "client", "ip"], ["remote", "address"]]


def spelled(words: list[str], separator: str, case: str) -> str:
    """One spelling of a key: ip_address, IP-Address, ipAddress, IP ADDRESS, ..."""
    if case == "camel":
        return words[0] + "".join(w.title() for w in words[1:])
    cased = [w.upper() if case == "upper" else w.title() if case == "title" else w for w in words]
    return separator.join(cased)


network_keys = st.builds(spelled, st.sampled_from(NETWORK_WORDS), st.sampled_from(["_", "-", ".", " ", ""]),
                         st.sampled_from(["lower", "upper", "title", "camel"]))
SECRET = "203.0.113.77 Mozilla/5.0 (secret)"


@pytest.fixture
def readers(login_role) -> tuple[str, str]:
    """An application and an analyst login, made once per test (hypothesis runs every example inside it)."""
    return login_role("workdev_app"), login_role("workdev_analyst")


def with_secrets(value: dict, placements: list[tuple[str, int]]) -> Any:
    """``value`` with the secret under each network key, at the given depth below it (objects and lists)."""
    for key, depth in placements:
        holder: Any = {key: SECRET}
        for level in range(depth):
            holder = [holder] if level % 2 else {"layer": holder}
        value = {**value, f"slot{len(value)}": holder}
    return value


placements = st.lists(st.tuples(network_keys, st.integers(min_value=0, max_value=8)), min_size=1, max_size=4)
#: Text jsonb can hold: UTF-8 (no lone surrogate) without NUL -- what else is refused is tested above.
storable_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
storable_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | storable_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(storable_text, inner, max_size=3), max_leaves=8)
readable_values = st.dictionaries(st.sampled_from(["note", "extra", "client", "device"]), storable_values, max_size=3)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_data=readable_values, data_places=placements, metadata=readable_values, meta_places=placements)
def test_no_reader_but_the_pipeline_sees_a_network_identity(readers: tuple[str, str], client: AnalyticsClient,
                                                            conn: psycopg.Connection, event_data: dict,
                                                            data_places: list, metadata: dict,
                                                            meta_places: list) -> None:
    reset(conn)
    user = uuid.uuid4()
    payload = {"amount": 1, "currency": "USD", "failure_code": "x", **with_secrets(event_data, data_places)}
    client.track("payment.failed", payload, user_id=user, metadata=with_secrets(metadata, meta_places))
    app_url, analyst_url = readers
    query = ("SELECT event_data, metadata FROM query_platform_events(now() - interval '1 hour',"
             " now() + interval '1 hour')")
    with psycopg.connect(app_url) as app, psycopg.connect(analyst_url) as analyst:
        app.execute("SELECT set_config('workdev.user_id', %s, false)", (str(user),))
        seen = [*app.execute(query), *analyst.execute(query),
                *analyst.execute("SELECT event_data, metadata FROM analyst_events")]
    assert len(seen) == 3
    for event_data_seen, metadata_seen in seen:
        assert "203.0.113.77" not in json.dumps(event_data_seen) + json.dumps(metadata_seen)
        assert event_data_seen["failure_code"] == "x"
