"""Pure tests of the synthetic-traffic generator (no database)."""

from __future__ import annotations

import inspect
import ipaddress
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from typing import Any

import jsonschema
import pytest

from workdev_pipeline import catalog, demo

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DAYS = 7.0
N_EVENTS = 20_000



@pytest.fixture(scope="module")
def users() -> list[demo.DemoUser]:
    return demo.generate_users(300, seed=7, now=NOW)


@pytest.fixture(scope="module")
def events(users: list[demo.DemoUser]) -> list[dict[str, Any]]:
    return list(demo.generate_events(users, N_EVENTS, days=DAYS, seed=7, now=NOW))


@pytest.fixture(scope="module")
def user_by_id(users: list[demo.DemoUser]) -> dict[uuid.UUID, demo.DemoUser]:
    return {u.user_id: u for u in users}


def _validators() -> dict[str, Any]:
    """Per type: a callable returning the list of validation errors of one ``event_data``."""
    out: dict[str, Any] = {}
    for t in catalog.EVENT_TYPES:
        v = jsonschema.Draft202012Validator(t.json_schema, format_checker=jsonschema.FormatChecker())
        out[t.name] = lambda data, v=v: [e.message for e in v.iter_errors(data)]
    return out


# -- catalog consistency --------------------------------------------------------------------------------
def test_weights_cover_the_catalog() -> None:
    names = {t.name for t in catalog.EVENT_TYPES}
    assert set(demo.TYPE_WEIGHTS) == names
    assert all(w > 0 for w in demo.TYPE_WEIGHTS.values())
    assert set(demo.ROLE_RULES) <= names
    with pytest.raises(ValueError, match="not in the catalog"):
        demo._check_weights({"no.such_type": 1.0}, {})
    with pytest.raises(ValueError, match="> 0"):
        demo._check_weights({"user.login": 0.0}, {})


# -- users ----------------------------------------------------------------------------------------------
def test_generate_users(users: list[demo.DemoUser]) -> None:
    assert users == demo.generate_users(300, seed=7, now=NOW)
    assert users != demo.generate_users(300, seed=8, now=NOW)
    assert len({u.user_id for u in users}) == 300
    roles = Counter(u.role for u in users)
    assert set(roles) <= {"client", "developer", "admin"}
    assert roles["client"] > 60 and roles["developer"] > 60 and roles["admin"] < 20
    for u in users:
        assert u.user_id.version == 4
        assert u.signed_up_at.tzinfo is not None and u.signed_up_at.utcoffset() == timedelta(0)
        assert NOW - timedelta(days=3 * 365 + 1) <= u.signed_up_at < NOW
        assert u.country in demo.COUNTRY_PREFIXES
    spread = max(u.signed_up_at for u in users) - min(u.signed_up_at for u in users)
    assert spread > timedelta(days=700)


# -- events ---------------------------------------------------------------------------------------------
def test_is_a_lazy_generator(users: list[demo.DemoUser]) -> None:
    stream = demo.generate_events(users, 10_000_000, seed=1, now=NOW)
    assert inspect.isgenerator(stream)
    assert len(list(islice(stream, 100))) == 100


def test_deterministic(users: list[demo.DemoUser], events: list[dict[str, Any]]) -> None:
    again = list(demo.generate_events(users, N_EVENTS, days=DAYS, seed=7, now=NOW))
    assert repr(again) == repr(events)
    other = list(demo.generate_events(users, 2000, days=DAYS, seed=8, now=NOW))
    assert [e["event_id"] for e in other] != [e["event_id"] for e in again[:2000]]
    assert len({e["event_id"] for e in events}) == len(events)


def test_every_catalog_type_appears(events: list[dict[str, Any]]) -> None:
    counts = Counter(e["event_type"] for e in events)
    assert set(counts) == {t.name for t in catalog.EVENT_TYPES}
    share = {c: 0 for c in catalog.CATEGORIES}
    for name, n in counts.items():
        share[catalog.EVENT_TYPES_BY_NAME[name].category.name] += n / len(events)
    assert 0.5 < share["interaction"] < 0.7
    assert share["interaction"] > share["user_activity"] > share["transaction"] > share["content"]
    assert counts["proposal.submitted"] > counts["project.created"] > counts["payment.completed"]


def test_event_shape_and_schema(events: list[dict[str, Any]]) -> None:
    validators = _validators()
    keys = {"event_id", "event_type", "user_id", "entity_type", "entity_id", "event_data", "metadata",
            "source", "session_id", "timestamp"}
    for e in events:
        t = catalog.EVENT_TYPES_BY_NAME[e["event_type"]]
        assert set(e) == keys
        assert isinstance(e["event_id"], uuid.UUID) and e["event_id"].version == 4
        assert isinstance(e["session_id"], uuid.UUID)
        assert e["entity_type"] == t.entity_type
        if t.entity_type is None:
            assert e["entity_id"] is None
        else:
            assert uuid.UUID(e["entity_id"])
        assert not validators[t.name](e["event_data"]), (e["event_type"], e["event_data"])
        assert set(t.required) <= set(e["event_data"])
        assert set(e["metadata"]) == {"ip_address", "user_agent", "platform"}
        assert e["metadata"]["platform"] in {"web", "ios", "android"}
        assert e["source"] in {"web", "mobile", "api"}


def test_realistic_values(events: list[dict[str, Any]]) -> None:
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_type[e["event_type"]].append(e["event_data"])
    for name in ("payment.initiated", "payment.completed", "payment.failed"):
        assert {d["currency"] for d in by_type[name]} <= {"USD", "EUR", "GBP"}
    ratings = {d["rating_overall"] for n in ("review.posted", "review.updated") for d in by_type[n]}
    assert ratings <= {x / 2 for x in range(2, 11)}
    assert all(d["budget"] >= 100 for d in by_type["project.created"])
    assert all(d["bid_amount"] > 0 for d in by_type["proposal.submitted"])
    assert {d["method"] for d in by_type["user.login"]} >= {"password", "google", "github"}
    searches = by_type["search.performed"]
    assert len({d["query"] for d in searches}) > 10
    assert all(d["results_count"] >= 0 and d["search_time_ms"] > 0 for d in searches)


def test_user_id_only_missing_where_allowed(events: list[dict[str, Any]],
                                            user_by_id: dict[uuid.UUID, demo.DemoUser]) -> None:
    anon_ok = {t.name for t in catalog.EVENT_TYPES if not t.requires_user}
    eligible = anonymous = 0
    for e in events:
        if e["user_id"] is None:
            assert e["event_type"] in anon_ok
        else:
            assert e["user_id"] in user_by_id
        if e["event_type"] in anon_ok:
            eligible += 1
            anonymous += e["user_id"] is None
    assert 0.03 < anonymous / eligible < 0.07
    none = demo.generate_events(list(user_by_id.values()), 3000, seed=3, now=NOW, anonymous_share=0.0)
    assert all(e["user_id"] is not None for e in none)


def test_timestamps(events: list[dict[str, Any]]) -> None:
    start = NOW - timedelta(days=DAYS)
    stamps = [e["timestamp"] for e in events]
    for ts in stamps:
        assert ts.tzinfo is not None and ts.utcoffset() == timedelta(0)
        assert start <= ts <= NOW
    assert stamps[0] < start + timedelta(hours=1) and stamps[-1] > NOW - timedelta(hours=1)
    # roughly increasing: never more than a few minutes backwards
    assert all(b - a > timedelta(minutes=-5) for a, b in pairwise(stamps))


def test_role_rules(events: list[dict[str, Any]], user_by_id: dict[uuid.UUID, demo.DemoUser]) -> None:
    for e in events:
        role = demo.ROLE_RULES.get(e["event_type"])
        if role is not None:
            assert user_by_id[e["user_id"]].role == role, e["event_type"]
        if e["event_type"] == "user.registered":
            assert e["event_data"]["role"] == user_by_id[e["user_id"]].role


def test_role_fallback_without_developers() -> None:
    clients = [u for u in demo.generate_users(100, seed=5, now=NOW) if u.role == "client"]
    counts = Counter(e["event_type"] for e in demo.generate_events(clients, 5000, seed=5, now=NOW))
    assert counts["proposal.submitted"] > 0 and counts["github.synced"] > 0


def test_sessions(events: list[dict[str, Any]]) -> None:
    sessions: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        sessions[e["session_id"]].append(e)
    sizes = [len(v) for v in sessions.values()]
    assert max(sizes) <= 40
    assert sum(sizes) / len(sizes) > 3
    for evs in sessions.values():
        assert len({e["user_id"] for e in evs}) == 1


def test_user_agents_and_ips(events: list[dict[str, Any]]) -> None:
    known_uas = {ua.string for ua in demo.USER_AGENTS}
    assert len(known_uas) >= 20
    garbage = sum(e["metadata"]["user_agent"] not in known_uas for e in events)
    assert 0.002 < garbage / len(events) < 0.01

    def public(ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip).is_global
        except ValueError:
            return False

    bad = [e["metadata"]["ip_address"] for e in events if not public(e["metadata"]["ip_address"])]
    assert 0.005 < len(bad) / len(events) < 0.02
    assert set(bad) <= set(demo.BAD_IPS)
    for e in events:
        ip = e["metadata"]["ip_address"]
        if ip not in demo.BAD_IPS:
            assert demo.country_for_ip(ip) in demo.COUNTRY_PREFIXES


def test_countries_match_usual_ips(events: list[dict[str, Any]],
                                   user_by_id: dict[uuid.UUID, demo.DemoUser]) -> None:
    ips: dict[uuid.UUID, Counter[str]] = defaultdict(Counter)
    for e in events:
        if e["user_id"] is not None:
            ips[e["user_id"]][e["metadata"]["ip_address"]] += 1
    matched = total = top_two = usual_country = 0
    for user_id, counter in ips.items():
        user = user_by_id[user_id]
        countries: Counter[str | None] = Counter()
        for ip, n in counter.items():
            countries[demo.country_for_ip(ip)] += n
        usual_country += countries.most_common(1)[0][0] == user.country
        total += counter.total()
        matched += countries[user.country]
        top_two += sum(n for _, n in counter.most_common(2))
    assert usual_country / len(ips) > 0.97
    assert matched / total > 0.9
    assert top_two / total > 0.8  # users mostly keep their IPs


def test_argument_checks(users: list[demo.DemoUser]) -> None:
    with pytest.raises(ValueError):
        demo.generate_events([], 10, now=NOW)
    with pytest.raises(ValueError):
        demo.generate_events(users, 10, days=0, now=NOW)
    with pytest.raises(ValueError):
        demo.generate_events(users, 10, now=NOW, anonymous_share=1.5)
    assert list(demo.generate_events(users, 0, now=NOW)) == []
    assert demo.generate_users(1)[0].signed_up_at < datetime.now(UTC)  # default ``now``
