"""The column-wise validation of a batch agrees with the per-event reference (orjson + fastjsonschema), event by
event: the same verdict and the same message, for random payloads of every catalog type and of a schema using the
rest of the compiled subset. Pure functions: no database."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workdev_pipeline import catalog
from workdev_pipeline.demo import generate_events, generate_users
from workdev_pipeline.enrichment import SchemaValidator
from workdev_pipeline.enrichment.batch_validation import BatchValidator
from workdev_pipeline.enrichment.column_checks import REFERENCE

#: The rest of the compiled subset: minLength, exclusive bounds, integer bounds, enum without type, nested
#: required keys, arrays of numbers with minItems, a format fastjsonschema does not know.
EXTRA_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
    "properties": {
        "code": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-z]+-?[0-9]*$"},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1.5},
        "count": {"type": "integer", "minimum": -3, "maximum": 7.5},
        "kind": {"enum": ["a", "b"]},
        "when": {"type": "string", "format": "date"},
        "tag": {"type": "string", "format": "color"},
        "flag": {"type": "boolean"},
        "scores": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
        "owner": {"type": "object", "required": ["id"],
                  "properties": {"id": {"type": "string", "format": "uuid"}, "age": {"type": "integer"}}},
    },
    "required": ["code"],
}
SCHEMAS = {**{row["event_type"]: row["json_schema"] for row in catalog.event_schema_rows()}, "extra.type": EXTRA_SCHEMA}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def validator() -> SchemaValidator:
    return SchemaValidator(SCHEMAS)


def test_every_schema_is_checked_column_wise(validator: SchemaValidator) -> None:
    assert validator.column_checked_types == set(SCHEMAS)


def test_demo_events_need_no_reference() -> None:
    """The demo's events (what a sweep reads) are judged by the columns alone, and all valid."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    events = list(generate_events(generate_users(200, seed=3, now=now), 5_000, seed=3, now=now))
    batch = BatchValidator(SCHEMAS)
    types = pa.array([e["event_type"] for e in events]).dictionary_encode()
    texts = pa.array([orjson.dumps(e["event_data"]).decode() for e in events])
    verdicts = batch.verdicts(types.indices, types.dictionary.to_pylist(), texts)
    assert (verdicts == REFERENCE).sum() == 0
    assert (verdicts != None).sum() == 0  # noqa: E711 (element-wise)


# -- random payloads ------------------------------------------------------------------------------------------

characters = st.characters(codec="utf-8", exclude_categories=["Cc"])  # control characters: escaped as \u
texts = st.text(characters, max_size=12) | st.sampled_from(
    ["", "USD", "usd", "EU", "EURO", "ÉUR", "2026-02-29", "2024-02-29", "2026-13-01", "٢٠٢٤-01-01", "fixed",
     "hourly", "weekly", "a", "b", "ab", "ab-12", "a\n", "USD\n", "client", "password", "totp", "null", "x" * 101])
uuids = st.builds(lambda u, upper: str(u).upper() if upper else str(u), st.uuids(), st.booleans()) | st.sampled_from(
    ["not-a-uuid", "3f0c2a9e-8b1d-4c6e-9a7f-2d5b8e1c4a9", "3f0c2a9e-8b1d-4c6e-9a7f-2d5b8e1c4a90\n"])
usual_numbers = st.integers(-10, 10) | st.sampled_from([0, -0.0, 0.0, 1.5, 5, 5.0, 6, 7.5, 8]) | st.floats(-10, 10)
numbers = st.one_of([usual_numbers] * 4 + [st.integers(-(2**70), 2**70) | st.floats()])
scalars = st.none() | st.booleans() | numbers | texts | uuids
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(texts, inner, max_size=3), max_leaves=8)


def _value(schema: Any) -> st.SearchStrategy:
    """Values for ``schema``: often what it asks for (near its bounds), sometimes anything."""
    if not isinstance(schema, dict):
        return json_values
    kind = schema.get("type")
    if "enum" in schema:
        good = st.sampled_from(schema["enum"])
    elif kind == "string":
        good = uuids if schema.get("format") == "uuid" else texts
        if "maxLength" in schema:
            good = good | st.integers(schema["maxLength"] - 1, schema["maxLength"] + 1).map(lambda n: "é" * n)
    elif kind in ("number", "integer"):
        good = numbers
    elif kind == "boolean":
        good = st.booleans()
    elif kind == "array":
        good = st.lists(_value(schema.get("items")), max_size=4)
        if "maxItems" in schema:
            good = good | st.integers(schema["maxItems"], schema["maxItems"] + 1).map(lambda n: ["go"] * n)
    elif kind == "object":
        good = _object(schema)
    else:
        good = json_values
    return st.one_of([good] * 4 + [json_values])


def _object(schema: dict) -> st.SearchStrategy:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    keys = sorted(set(properties) | required)
    present = st.fixed_dictionaries({k: st.booleans() if k not in required else st.sampled_from([True] * 5 + [False])
                                     for k in keys})
    extras = {k: json_values for k in ("extra", "note") if k not in keys}
    return present.flatmap(lambda keep: st.fixed_dictionaries(
        {k: _value(properties.get(k)) for k in keys if keep[k]}, optional=extras))


@st.composite
def events(draw: st.DrawFn) -> tuple[str, str | None]:
    event_type = draw(st.sampled_from(sorted(SCHEMAS)))
    payload = draw(st.one_of([_object(SCHEMAS[event_type])] * 4 + [json_values]))
    text = json.dumps(payload, ensure_ascii=draw(st.sampled_from([False] * 3 + [True])),
                      separators=draw(st.sampled_from([None, (",", ":")])))
    mutation = draw(st.sampled_from(["none"] * 8 + ["pretty", "trailing", "prefix", "truncate", "duplicate", "null"]))
    if mutation == "pretty":
        text = json.dumps(payload, indent=1)
    elif mutation == "trailing" and text.endswith("}"):
        text = text[:-1] + ("," if len(text) > 2 else "") + "}"
    elif mutation == "prefix":
        text = draw(st.sampled_from([" ", "\t", "x", "[", "\ufeff"])) + text
    elif mutation == "truncate":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    elif mutation == "duplicate" and text.startswith("{") and isinstance(payload, dict) and payload:
        key = draw(st.sampled_from(sorted(payload)))
        text = "{" + json.dumps(key) + ": " + json.dumps(draw(json_values)) + ", " + text[1:]
    elif mutation == "null":
        text = None
    return event_type, text


@SETTINGS
@given(st.lists(events(), min_size=1, max_size=25))
def test_batch_agrees_with_the_reference(validator: SchemaValidator, batch: list[tuple[str, str | None]]) -> None:
    types = [t for t, _ in batch]
    data = [d for _, d in batch]
    got = validator.validate(pa.array(types, pa.string()), pa.array(data, pa.string())).to_pylist()
    assert got == [validator.reference(t, d) for t, d in batch]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["project.created", "extra.type"]), st.lists(numbers, max_size=3))
def test_numbers_agree_with_the_reference(validator: SchemaValidator, event_type: str, values: list[Any]) -> None:
    """Bounds and integer types at the edges: integral floats, -0.0, 2**70, NaN, infinities."""
    payloads = [{"title": "t", "budget": v, "project_type": "fixed", "code": "ab", "count": v, "ratio": v,
                 "scores": [v]} for v in values]
    data = [json.dumps(p) for p in payloads]
    got = validator.validate(pa.array([event_type] * len(data)), pa.array(data, pa.string())).to_pylist()
    assert got == [validator.reference(event_type, d) for d in data]


def test_unknown_and_null_types_and_texts(validator: SchemaValidator) -> None:
    types = pa.array(["nope", None, "user.logout", "user.logout", "extra.type"])
    data = pa.array(["{}", "{}", None, "{\"a\": 1}", '{"code": "abc"}'])
    assert validator.validate(types, data).to_pylist() == [
        "unknown event type 'nope'", "event_type is null", "event_data of 'user.logout' is null", None, None]


@pytest.mark.parametrize("text", [
    "2024-02-29", "2023-02-29", "2026-13-01", "٢٠٢٤-01-01", "２０２４-01-01", "2024-1-01", "2024-01-01\n", "USD", "ÜSD",
    "US", "3f0c2a9e-8b1d-4c6e-9a7f-2d5b8e1c4a90", "3F0C2A9E-8B1D-4C6E-9A7F-2D5B8E1C4A90",
    "３f0c2a9e-8b1d-4c6e-9a7f-2d5b8e1c4a90", "ab-1", "Ab", "ab\n"])
def test_patterns_and_formats_agree_with_the_reference(validator: SchemaValidator, text: str) -> None:
    """Python's ``re`` against RE2, past ASCII too (Python's ``\\d`` is any Unicode digit)."""
    value = json.dumps(text, ensure_ascii=False)
    cases = [("milestone.created", f'{{"project_id": "{uuid.UUID(int=1)}", "amount": 1, "due_date": {value}}}'),
             ("payment.completed", f'{{"amount": 1, "currency": {value}}}'),
             ("project.viewed", f'{{"project_id": {value}}}'),
             ("extra.type", f'{{"code": {value}, "when": {value}}}')]
    types = pa.array([t for t, _ in cases])
    got = validator.validate(types, pa.array([d for _, d in cases])).to_pylist()
    assert got == [validator.reference(t, d) for t, d in cases]


@pytest.mark.parametrize("depth", [600, 1100])
@pytest.mark.parametrize("budget", [1, -1])
def test_deep_nesting_agrees_with_the_reference(validator: SchemaValidator, depth: int, budget: int) -> None:
    """orjson refuses nesting past 1,024 levels (in a key no schema reads, too); Arrow's reader does not."""
    text = f'{{"title": "x", "budget": {budget}, "project_type": "fixed", "z": {"[" * depth}{"]" * depth}}}'
    got = validator.validate(pa.array(["project.created"]), pa.array([text])).to_pylist()
    assert got == [validator.reference("project.created", text)]


@pytest.mark.parametrize("every", [1, 2, 997])
def test_large_batches_with_type_errors_agree_with_the_reference(validator: SchemaValidator, every: int) -> None:
    """A failed read is read again in chunks (or, where errors are everywhere, left to the reference): every row
    still gets its own verdict, in place."""
    data = [json.dumps({"title": f"t{i}", "budget": str(i) if i % every == 0 else i - 1000, "project_type": "fixed"})
            for i in range(3_000)]
    got = validator.validate(pa.array(["project.created"] * len(data)), pa.array(data)).to_pylist()
    assert got == [validator.reference("project.created", d) for d in data]
    assert sum(m is not None for m in got) == 3_000 if every == 1 else sum(m is not None for m in got) > 1_000
