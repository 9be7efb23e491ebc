"""Enrichment and validation over Arrow arrays: device_info, geo_location / GeoLocator, SchemaValidator.

Pure functions: no database. The MaxMind DB tests write a tiny City-layout file with ``mmdb-writer``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workdev_pipeline import catalog
from workdev_pipeline.demo import generate_events, generate_users
from workdev_pipeline.enrichment import (
    DEVICE_INFO_TYPE,
    DEVICE_TYPES,
    GEO_LOCATION_TYPE,
    GeoLocator,
    SchemaValidator,
    device_info,
    geo_location,
    parse_user_agent,
)

CH = "AppleWebKit/537.36 (KHTML, like Gecko)"
SF = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
WINDOWS_CHROME = f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {CH} Chrome/124.0.0.0 Safari/537.36"
IPHONE_SAFARI = (f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) {SF} Version/17.4.1 Mobile/15E148 "
                 "Safari/604.1")
ANDROID_CHROME = f"Mozilla/5.0 (Linux; Android 14; Pixel 8) {CH} Chrome/124.0.6367.82 Mobile Safari/537.36"
IPAD = f"Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) {SF} Version/17.4 Mobile/15E148 Safari/604.1"
ANDROID_TABLET = f"Mozilla/5.0 (Linux; Android 13; SM-X700) {CH} Chrome/120.0.0.0 Safari/537.36"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CURL = "curl/8.5.0"
GARBAGE = random.Random(7).randbytes(300).decode("utf-8", errors="replace")
LONG_JUNK = "x" * 5000
LONG_CHROME = WINDOWS_CHROME + " " + "y" * (5000 - len(WINDOWS_CHROME) - 1)  # a real UA padded to 5,000 chars
OTHER = {"device_type": "other", "browser": "Other", "os": "Other"}


# -- device_info ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (WINDOWS_CHROME, {"device_type": "desktop", "browser": "Chrome", "os": "Windows"}),
        (IPHONE_SAFARI, {"device_type": "mobile", "browser": "Mobile Safari", "os": "iOS"}),
        (ANDROID_CHROME, {"device_type": "mobile", "browser": "Chrome Mobile", "os": "Android"}),
        (IPAD, {"device_type": "tablet", "browser": "Mobile Safari", "os": "iOS"}),
        (ANDROID_TABLET, {"device_type": "tablet", "browser": "Chrome", "os": "Android"}),
        (GOOGLEBOT, {"device_type": "bot", "browser": "Googlebot", "os": "Other"}),
        (CURL, {"device_type": "other", "browser": "curl", "os": "Other"}),
        (GARBAGE, OTHER),
        (LONG_JUNK, OTHER),
        (LONG_CHROME, {"device_type": "desktop", "browser": "Chrome", "os": "Windows"}),
        ("Mozilla/5.0 (", OTHER),
        ("-", OTHER),
    ],
    ids=["windows-chrome", "iphone-safari", "android-chrome", "ipad", "android-tablet", "googlebot", "curl",
         "garbage", "5000-junk", "5000-chrome", "truncated", "dash"],
)
def test_device_info_known_user_agents(ua: str, expected: dict[str, str]) -> None:
    assert device_info(pa.array([ua])).to_pylist() == [expected]


def test_device_info_null_and_empty_give_null_structs() -> None:
    result = device_info(pa.array([None, "", "   ", CURL]))
    assert result.type == DEVICE_INFO_TYPE
    assert result.to_pylist() == [None, None, None, {"device_type": "other", "browser": "curl", "os": "Other"}]
    assert result.field("browser").null_count == 3


@pytest.mark.parametrize(
    "column",
    [
        pa.array([WINDOWS_CHROME, None, IPAD], pa.large_string()),
        pa.chunked_array([[WINDOWS_CHROME], [], [None, IPAD]]),
        pa.array([WINDOWS_CHROME, None, IPAD]).dictionary_encode(),
        pa.chunked_array([pa.array([WINDOWS_CHROME, None]).dictionary_encode(), pa.array([IPAD]).dictionary_encode()]),
        [WINDOWS_CHROME, None, IPAD],
    ],
    ids=["large_string", "chunked", "dictionary", "chunked-dictionary", "list"],
)
def test_device_info_accepts_arrow_layouts(column: pa.Array | pa.ChunkedArray | list[str | None]) -> None:
    result = device_info(column)
    assert isinstance(result, pa.StructArray)
    assert [r and r["device_type"] for r in result.to_pylist()] == ["desktop", None, "tablet"]


def test_device_info_empty_and_all_null_columns() -> None:
    assert len(device_info(pa.array([], pa.string()))) == 0
    assert len(device_info(pa.chunked_array([], pa.string()))) == 0
    assert device_info(pa.array([None, None])).to_pylist() == [None, None]
    with pytest.raises(TypeError, match="strings"):
        device_info(pa.array([1, 2]))


def test_device_info_parses_each_distinct_user_agent_once() -> None:
    parse_user_agent.cache_clear()
    column = pa.array([WINDOWS_CHROME, IPHONE_SAFARI, None, GOOGLEBOT, ""] * 2_000)
    first = device_info(column)
    info = parse_user_agent.cache_info()
    assert (info.misses, info.hits) == (3, 0)  # 3 distinct non-empty values, each parsed once, none re-asked
    second = device_info(column)
    info = parse_user_agent.cache_info()
    assert (info.misses, info.hits) == (3, 3)  # the next batch is served from the LRU cache
    assert first.equals(second)
    assert len(first) == 10_000 and first.null_count == 4_000


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), st.text(max_size=300), st.sampled_from([WINDOWS_CHROME, IPAD, CURL])),
                max_size=20))
def test_device_info_never_raises(values: list[str | None]) -> None:
    result = device_info(pa.array(values, pa.string())).to_pylist()
    assert len(result) == len(values)
    for value, row in zip(values, result, strict=True):
        if value is None or not value.strip():
            assert row is None
        else:
            assert row["device_type"] in DEVICE_TYPES and row["browser"] and row["os"]


# -- geo_location (bundled geoip2fast data) --------------------------------------------------------------------

NOWHERE = {"country": None, "region": None, "city": None}


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        ("8.8.8.8", "US"),  # Google DNS
        ("81.2.69.160", "GB"),  # MaxMind's documented London test address
        ("193.0.6.139", "NL"),  # RIPE NCC, Amsterdam
        ("202.12.27.33", "JP"),  # m.root-servers.net (WIDE, Tokyo)
        ("2001:4860:4860::8888", "US"),  # Google DNS over IPv6
        ("2a00:1450:4001:82a::200e", "DE"),  # Google, Frankfurt
        ("::ffff:8.8.8.8", "US"),  # IPv4-mapped IPv6 is looked up as IPv4
    ],
)
def test_geo_location_public_addresses(ip: str, country: str) -> None:
    assert geo_location(pa.array([ip])).to_pylist() == [{"country": country, "region": None, "city": None}]


@pytest.mark.parametrize(
    "ip",
    ["10.0.0.5", "192.168.1.20", "172.16.8.33", "127.0.0.1", "::1", "169.254.1.1", "100.64.0.1", "224.0.0.1",
     "240.0.0.1", "0.0.0.0", "fe80::1", "2001:db8::1", "999.1.1.1", "abc", "", "1.2.3", "010.1.1.1", " 8.8.8.8",
     "not-an-ip"],
)
def test_geo_location_private_reserved_and_malformed_give_null_fields(ip: str) -> None:
    assert geo_location(pa.array([ip])).to_pylist() == [NOWHERE]


def test_geo_location_null_gives_null_struct_and_keeps_rows() -> None:
    result = geo_location(pa.chunked_array([["8.8.8.8", None], ["10.0.0.5"]]))
    assert result.type == GEO_LOCATION_TYPE
    assert result.to_pylist() == [{"country": "US", "region": None, "city": None}, None, NOWHERE]


def test_geo_location_resolves_each_distinct_address_once() -> None:
    locator = GeoLocator()
    ips = pa.array(["8.8.8.8", "193.0.6.139", "10.0.0.5", None, "8.8.8.8", "abc", "2001:4860:4860::8888"] * 1_000)
    first = locator.locate(ips)
    # (hits, misses): the dotted quads are resolved column-wise, the 2 other distinct values one by one
    assert locator.cache_info()[:2] == (0, 2)
    second = locator.locate(ips)
    assert locator.cache_info()[:2] == (2, 2)
    assert first.equals(second)
    assert first.field("country").to_pylist()[:7] == ["US", "NL", None, None, "US", None, "US"]


def test_geo_locator_from_env(tmp_path: Path) -> None:
    assert GeoLocator.from_env({}).database is None
    assert GeoLocator.from_env({"WORKDEV_GEOIP_DATABASE": " "}).database is None
    path = tmp_path / "City.mmdb"
    assert GeoLocator.from_env({"WORKDEV_GEOIP_DATABASE": str(path)}).database == path


def test_geoip2fast_loads_silently_offline_and_leaves_the_environment_alone() -> None:
    code = (
        "import json, os, socket, subprocess\n"
        "def refuse(*a, **k): raise RuntimeError('network access attempted')\n"
        "socket.socket.connect = socket.create_connection = refuse\n"
        "spawned = []\n"
        "subprocess.check_output = lambda *a, **k: spawned.append(a) or b'0'\n"
        "before = dict(os.environ)\n"
        "from workdev_pipeline.enrichment import geo_location\n"
        "rows = geo_location(['8.8.8.8', '10.1.1.1']).to_pylist()\n"
        "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))\n"
        "print(json.dumps([rows, changed, spawned]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "PYTHONIOENCODING", "GEOIP2FAST_DEBUG")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                          cwd=Path(__file__).parent, check=True)
    assert proc.stderr == ""
    rows, changed, spawned = json.loads(proc.stdout)  # stdout holds nothing but our line
    assert rows == [{"country": "US", "region": None, "city": None}, NOWHERE]
    assert changed == []  # geoip2fast sets PYTHONWARNINGS and PYTHONIOENCODING on import: undone
    assert spawned == []  # nor does its loader run `ps`


# -- geo_location with a MaxMind DB file -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def city_mmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GeoLite2-City-layout database with three networks, written with mmdb-writer."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City", languages=["en"],
                        description="workdev test")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {
        "city": {"geoname_id": 2643743, "names": {"en": "London", "de": "London"}},
        "country": {"geoname_id": 2635167, "iso_code": "GB", "names": {"en": "United Kingdom"}},
        "subdivisions": [{"geoname_id": 6269131, "iso_code": "ENG", "names": {"en": "England"}}],
    })
    writer.insert_network(IPSet(["2a00:1450:4001::/48"]), {
        "city": {"names": {"en": "Frankfurt am Main"}},
        "country": {"iso_code": "DE"},
        "subdivisions": [{"iso_code": "HE", "names": {"en": "Hesse"}}],
    })
    writer.insert_network(IPSet(["1.1.1.0/24"]), {"registered_country": {"iso_code": "AU"}})  # anycast: no country
    writer.insert_network(IPSet(["9.9.9.0/24"]), {"country": "not a GeoIP2 record"})
    path = tmp_path_factory.mktemp("mmdb") / "GeoLite2-City-test.mmdb"
    writer.to_db_file(str(path))
    return path


def test_geo_location_reads_a_city_database(city_mmdb: Path) -> None:
    ips = ["81.2.69.160", "2a00:1450:4001:82a::200e", "1.1.1.1", "8.8.8.8", "10.0.0.5", "9.9.9.9", "abc", None,
           "::ffff:81.2.69.1"]
    assert geo_location(pa.array(ips), database=city_mmdb).to_pylist() == [
        {"country": "GB", "region": "England", "city": "London"},
        {"country": "DE", "region": "Hesse", "city": "Frankfurt am Main"},
        {"country": "AU", "region": None, "city": None},
        NOWHERE,  # not in the file
        NOWHERE,
        NOWHERE,  # a record of another layout
        NOWHERE,
        None,
        {"country": "GB", "region": "England", "city": "London"},
    ]


def test_geo_location_ipv6_in_an_ipv4_only_database_gives_nulls(tmp_path: Path) -> None:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB"}})
    path = tmp_path / "v4.mmdb"
    writer.to_db_file(str(path))
    locator = GeoLocator(path)
    assert locator.locate(["81.2.69.1", "2a00:1450:4001:82a::200e"]).to_pylist() == [
        {"country": "GB", "region": None, "city": None}, NOWHERE]


def test_geo_location_missing_database_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        GeoLocator(tmp_path / "missing.mmdb").locate(["10.0.0.1"])


# -- SchemaValidator --------------------------------------------------------------------------------------------

UUID = "3f0c2a9e-8b1d-4c6e-9a7f-2d5b8e1c4a90"


@pytest.fixture(scope="module")
def validator() -> SchemaValidator:
    return SchemaValidator.from_catalog()


@pytest.fixture(scope="module")
def demo_events() -> list[dict]:
    users = generate_users(300, seed=5, now=datetime(2026, 1, 1, tzinfo=UTC))
    return list(generate_events(users, 20_000, seed=5, now=datetime(2026, 1, 1, tzinfo=UTC)))


def test_every_catalog_type_has_a_validator(validator: SchemaValidator) -> None:
    assert validator.event_types == {t.name for t in catalog.EVENT_TYPES if t.active}


def test_demo_events_of_every_type_are_valid(validator: SchemaValidator, demo_events: list[dict]) -> None:
    types = pa.array([e["event_type"] for e in demo_events])
    data = pa.array([orjson.dumps(e["event_data"]).decode() for e in demo_events])
    assert {e["event_type"] for e in demo_events} == validator.event_types  # the sample covers the catalog
    errors = validator.validate(types, data)
    assert isinstance(errors, pa.StringArray) and len(errors) == len(demo_events)
    assert errors.null_count == len(demo_events), [m for m in errors.to_pylist() if m][:5]


def test_the_per_event_reference_is_compiled_only_for_the_types_a_row_needs(demo_events: list[dict]) -> None:
    """A batch the column checks decide compiles no reference validator (a sweep run reads its first event without
    compiling the catalog's); a row only the reference can judge compiles its own type's, once."""
    validator = SchemaValidator.from_catalog()
    types = pa.array([e["event_type"] for e in demo_events])
    data = pa.array([orjson.dumps(e["event_data"]).decode() for e in demo_events])
    assert validator.validate(types, data).null_count == len(demo_events)
    assert not validator._checks
    assert validator.validate_one("user.login", "[1]") is not None  # not an object: the reference's to judge
    assert validator.validate_one("user.login", "[2]") is not None
    assert set(validator._checks) == {"user.login"}


def _project(**changes: object) -> str:
    data = {"title": "Build a React dashboard", "budget": 1500.0, "project_type": "fixed", "skills": ["React"]}
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not _MISSING})


_MISSING = object()


@pytest.mark.parametrize(
    ("event_type", "event_data", "message"),
    [
        ("project.created", _project(budget=-5), "event_data.budget must be >= 0, got -5"),
        ("project.created", _project(budget="1500"), "event_data.budget must be of type number, got string"),
        ("project.created", _project(budget=True), "event_data.budget must be of type number, got boolean"),
        ("project.created", _project(project_type="weekly"),
         'event_data.project_type must be one of ["fixed","hourly"], got "weekly"'),
        ("project.created", _project(title="x" * 501), "event_data.title must be at most 500 characters long, got 501"),
        ("project.created", _project(budget=_MISSING), "event_data is missing required key 'budget'"),
        ("project.created", _project(title=_MISSING, budget=_MISSING),
         "event_data is missing required keys 'title', 'budget'"),
        ("project.created", _project(skills=["React", 7]), "event_data.skills[1] must be of type string, got integer"),
        ("project.created", _project(skills=["Go"] * 51), "event_data.skills must have at most 50 items, got 51"),
        ("proposal.submitted", json.dumps({"project_id": "not-a-uuid", "bid_amount": 10}),
         'event_data.project_id must be a valid uuid, got "not-a-uuid"'),
        ("payment.completed", json.dumps({"amount": 10, "currency": "usd"}),
         'event_data.currency must match pattern ^[A-Z]{3}$, got "usd"'),
        ("review.posted", json.dumps({"reviewee_user_id": UUID, "reviewee_type": "client", "rating_overall": 6}),
         "event_data.rating_overall must be <= 5, got 6"),
        ("search.performed", json.dumps({"query": "go", "results_count": 1.5, "search_time_ms": 3}),
         "event_data.results_count must be of type integer, got number"),
        ("milestone.created", json.dumps({"project_id": UUID, "amount": 5, "due_date": "2026-13-01"}),
         'event_data.due_date must be a valid date, got "2026-13-01"'),
        ("project.created", "[]", "event_data must be of type object, got array"),
        ("project.created", '{"title": "x", "budget": ',
         "event_data of 'project.created' is not valid JSON: unexpected end of data: line 1 column 26 (char 25)"),
        ("user.logout", "", "event_data of 'user.logout' is not valid JSON: Input is a zero-length, empty document: "
                            "line 1 column 1 (char 0)"),
        ("user.logout", None, "event_data of 'user.logout' is null"),
        ("x", "{}", "unknown event type 'x'"),
        (None, "{}", "event_type is null"),
    ],
)
def test_specific_violation_messages(validator: SchemaValidator, event_type: str | None, event_data: str | None,
                                     message: str) -> None:
    assert validator.validate_one(event_type, event_data) == message


def test_valid_edge_cases(validator: SchemaValidator) -> None:
    assert validator.validate_one("project.created", _project(budget=0, extra_field={"any": 1})) is None
    assert validator.validate_one("project.created", _project(title="é" * 500)) is None  # characters, not bytes
    assert validator.validate_one("proposal.submitted", json.dumps({"project_id": UUID.upper(), "bid_amount": 0}))\
        is None
    assert validator.validate_one("search.performed", '{"query":"go","results_count":3.0,"search_time_ms":1}') is None


def test_validate_rows_align_with_mixed_input(validator: SchemaValidator) -> None:
    types = pa.chunked_array([["user.logout", "nope"], ["project.created", "user.login"]])
    data = pa.array([b"{}", b"{}", _project(budget=-1).encode(), b'{"method": "password"}'], pa.binary())
    assert validator.validate(types, data).to_pylist() == [
        None, "unknown event type 'nope'", "event_data.budget must be >= 0, got -1", None]
    with pytest.raises(ValueError, match="rows"):
        validator.validate(pa.array(["user.logout"]), pa.array(["{}", "{}"]))


def test_from_rows_takes_json_text_and_skips_inactive() -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]}
    validator = SchemaValidator.from_rows([
        {"event_type": "a.b", "json_schema": json.dumps(schema), "active": True},
        {"event_type": "old.type", "json_schema": schema, "active": False},
    ])
    assert validator.event_types == {"a.b"}
    assert validator.validate_one("a.b", '{"n": 0}') == "event_data.n must be >= 1, got 0"
    assert validator.validate_one("old.type", "{}") == "unknown event type 'old.type'"


def test_draft_2020_only_keywords_use_2020_semantics() -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "properties": {"pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]}},
              "dependentRequired": {"amount": ["currency"]}}
    validator = SchemaValidator({"t": schema})
    assert validator.validate_one("t", '{"pair": [1, "a"], "amount": 1, "currency": "EUR"}') is None
    assert validator.validate_one("t", '{"pair": ["a", "a"]}') == (
        "event_data.pair[0] must be of type integer, got string")
    assert validator.validate_one("t", '{"amount": 1}') == "event_data: 'currency' is a dependency of 'amount'"


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(-10**9, 10**9), st.floats(allow_nan=False, allow_infinity=False, width=64)))
def test_budget_is_valid_iff_not_negative(validator: SchemaValidator, budget: float) -> None:
    message = validator.validate_one("project.created", _project(budget=budget))
    assert (message is None) == (budget >= 0)
    if message is not None:
        assert message.startswith("event_data.budget must be >= 0, got ")


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(catalog.EVENT_TYPES_BY_NAME)), st.one_of(st.text(max_size=60), st.none()))
def test_validate_never_raises_on_arbitrary_text(validator: SchemaValidator, event_type: str, text: str | None) -> None:
    message = validator.validate_one(event_type, text)
    assert message is None or message.startswith(("event_data", "unknown event type"))
