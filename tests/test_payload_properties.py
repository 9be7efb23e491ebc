"""Property-based tests of payload validation: the client and the SQL function agree with a simple oracle."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workdev_pipeline import catalog
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.errors import EventRejected, InvalidPayload, MissingRequiredKeys, PayloadTooLarge

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
payloads = st.builds(
    lambda base, pad: {**base, "pad": "x" * pad} if pad else base,
    st.dictionaries(keys, json_values, max_size=6),
    st.sampled_from([0, 0, 0, LIMIT // 2, LIMIT - 200, LIMIT, LIMIT + 100]),
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
