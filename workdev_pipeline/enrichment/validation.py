"""Validate each event's ``event_data`` (JSON text) against its type's JSON Schema, in bulk.

Schemas come from the ``event_schemas`` table (:func:`workdev_pipeline.catalog.event_schema_rows`). They
declare draft 2020-12 but use only keywords that mean the same in draft-07, so each is compiled once with
``fastjsonschema`` as draft-07 (which generates plain Python code: ~1 µs per event), with a ``uuid`` format
added. A schema that relies on 2020-12-only semantics (``prefixItems``, ``dependentRequired``,
``unevaluatedProperties``, array-form ``items``, ...) is validated with ``jsonschema``'s draft 2020-12
validator instead: slower, but never silently wrong. JSON text is parsed with ``orjson`` (the standard library,
numbers as Decimals, for numbers past a float's range; the text itself is what the lake keeps, never re-serialised).

This is the full schema check: the SQL emit functions only check that ``event_data`` is an object, its size
and its required keys. ``format`` is asserted (``uuid``, ``date``), not just annotated.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import fastjsonschema
import orjson
import pyarrow as pa
from fastjsonschema import JsonSchemaValueException

from workdev_pipeline.enrichment._arrow import StringColumn, distinct_strings

__all__ = ["UUID_PATTERN", "SchemaValidator"]

#: RFC 9562 textual form, any case (the same as fastjsonschema's draft 2019-09 ``uuid`` format).
UUID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\Z"
_DRAFT_07 = "http://json-schema.org/draft-07/schema#"
#: Keywords whose meaning differs between draft 2020-12 and draft-07 (or that draft-07 ignores).
_DRAFT_2020_ONLY = frozenset({
    "prefixItems", "dependentRequired", "dependentSchemas", "unevaluatedProperties", "unevaluatedItems",
    "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor", "minContains", "maxContains",
    "$vocabulary",
})
_ROOT = "event_data"
_VALUE_PREVIEW = 40  # characters of an offending value quoted in a message

Check = Callable[[Any], Any]


def _needs_2020_semantics(schema: Any) -> bool:
    """True when compiling ``schema`` as draft-07 could change its meaning (over-approximated)."""
    if isinstance(schema, list):
        return any(_needs_2020_semantics(item) for item in schema)
    if not isinstance(schema, Mapping):
        return False
    if _DRAFT_2020_ONLY.intersection(schema) or isinstance(schema.get("items"), list):
        return True
    return any(_needs_2020_semantics(value) for value in schema.values())


def _compile(schema: Mapping[str, Any]) -> Check:
    """A function raising :class:`JsonSchemaValueException` for the first violation of ``schema``.

    Draft 2020-12 (or undeclared, the ``event_schemas`` convention) compiles as draft-07 unless that would change
    its meaning; other declared drafts compile as declared.
    """
    definition = copy.deepcopy(dict(schema))
    declared = str(definition.get("$schema", ""))
    if not declared or "2020-12" in declared:
        if _needs_2020_semantics(definition):
            return _jsonschema_check(definition)
        definition["$schema"] = _DRAFT_07
    return fastjsonschema.compile(definition, formats={"uuid": UUID_PATTERN}, use_default=False)


def _jsonschema_check(schema: Mapping[str, Any]) -> Check:
    """Draft 2020-12 validation with ``jsonschema`` (the fallback), raising like fastjsonschema does."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)

    def check(data: Any) -> Any:
        error = best_match(validator.iter_errors(data))
        if error is not None:
            name = "data" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            raise JsonSchemaValueException(error.message, value=error.instance, name=name,
                                           definition={error.validator: error.validator_value}, rule=error.validator)
        return data

    return check


# -- messages -----------------------------------------------------------------------------------------------------

def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _preview(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = repr(value)
    return text if len(text) <= _VALUE_PREVIEW else text[: _VALUE_PREVIEW - 3] + "..."


def _describe(error: JsonSchemaValueException) -> str:
    """``event_data.<path> must ...`` for one violation: which field, which rule, and what was found."""
    name = error.name or "data"
    path = _ROOT + name[4:] if name.startswith("data") else f"{_ROOT}.{name}"
    rule, expected, value = error.rule, error.rule_definition, error.value
    if rule == "type":
        types = " or ".join(map(str, expected)) if isinstance(expected, list) else expected
        return f"{path} must be of type {types}, got {_json_type(value)}"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if rule in bounds:
        return f"{path} must be {bounds[rule]} {expected}, got {_preview(value)}"
    if rule == "required" and isinstance(value, Mapping) and isinstance(expected, list):
        missing = [key for key in expected if key not in value]
        keys = ", ".join(repr(key) for key in missing)
        return f"{path} is missing required key{'s' if len(missing) > 1 else ''} {keys}"
    if rule == "enum":
        return f"{path} must be one of {_preview(expected)}, got {_preview(value)}"
    if rule == "const":
        return f"{path} must be {_preview(expected)}, got {_preview(value)}"
    if rule in ("maxLength", "minLength") and isinstance(value, str):
        most = "most" if rule == "maxLength" else "least"
        return f"{path} must be at {most} {expected} characters long, got {len(value)}"
    if rule in ("maxItems", "minItems") and isinstance(value, list):
        most = "most" if rule == "maxItems" else "least"
        return f"{path} must have at {most} {expected} items, got {len(value)}"
    if rule == "pattern":
        return f"{path} must match pattern {expected}, got {_preview(value)}"
    if rule == "format":
        return f"{path} must be a valid {expected}, got {_preview(value)}"
    message = error.message or f"must satisfy {rule}"
    return _ROOT + message[4:] if message.startswith("data") else f"{path}: {message}"


def _validate_exactly(check: Check, text: str | bytes, event_type: str, error: Exception) -> str | None:
    """The error message for JSON text orjson could not read: valid JSON whose numbers a float cannot hold (past
    1.8e308: jsonb's numerics are unbounded) is read with the standard library, numbers as Decimals, and validated."""
    try:
        data = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except ValueError:
        return f"event_data of {event_type!r} is not valid JSON: {error}"
    try:
        check(data)
    except JsonSchemaValueException as schema_error:
        return _describe(schema_error)
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# -- the validator ------------------------------------------------------------------------------------------------

class SchemaValidator:
    """Validates ``event_data`` of events of the given types; each schema is compiled once, here.

    ``schemas`` maps an event type to its JSON Schema (a dict, or its JSON text as stored in
    ``event_schemas.json_schema``).
    """

    def __init__(self, schemas: Mapping[str, Mapping[str, Any] | str | bytes]) -> None:
        self._checks: dict[str, Check] = {
            name: _compile(orjson.loads(schema) if isinstance(schema, (str, bytes)) else schema)
            for name, schema in schemas.items()
        }

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> SchemaValidator:
        """From ``event_schemas`` rows (``event_type``, ``json_schema``); inactive types are left out."""
        return cls({row["event_type"]: row["json_schema"] for row in rows if row.get("active", True)})

    @classmethod
    def from_catalog(cls) -> SchemaValidator:
        """From the in-code catalog (:mod:`workdev_pipeline.catalog`): what ``migrate`` seeds."""
        from workdev_pipeline.catalog import event_schema_rows

        return cls.from_rows(event_schema_rows())

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self._checks)

    def validate_one(self, event_type: str | None, event_data: str | bytes | None) -> str | None:
        """The error message for one event, or ``None`` when it is valid."""
        return self.validate(pa.array([event_type], pa.string()), [event_data])[0].as_py()

    def validate(self, event_types: StringColumn | Sequence[str | None],
                 event_data: StringColumn | Sequence[str | bytes | None]) -> pa.StringArray:
        """Per event: an error message, or null when ``event_data`` is valid for ``event_type``.

        ``event_types`` and ``event_data`` (JSON text: string, large_string or binary) have one row per event.
        """
        type_indices, type_names = distinct_strings(event_types)
        data = event_data.to_pylist() if isinstance(event_data, (pa.Array, pa.ChunkedArray)) else list(event_data)
        if len(data) != len(type_indices):
            raise ValueError(f"event_types has {len(type_indices)} rows but event_data has {len(data)}")
        checks = [self._checks.get(name) for name in type_names]  # type: ignore[arg-type]
        unknown = [f"unknown event type {name[:100]!r}" if name is not None else "event_type is null"
                   for name in type_names]
        loads, decode_error, schema_error = orjson.loads, orjson.JSONDecodeError, JsonSchemaValueException
        errors: list[str | None] = []
        append = errors.append
        for t, text in zip(type_indices.to_pylist(), data, strict=True):
            if t is None:
                append("event_type is null")
                continue
            check = checks[t]
            if check is None:
                append(unknown[t])
                continue
            if text is None:
                append(f"event_data of {type_names[t]!r} is null")
                continue
            try:
                check(loads(text))
            except schema_error as error:
                append(_describe(error))
            except decode_error as error:
                append(_validate_exactly(check, text, type_names[t], error))
            else:
                append(None)
        return pa.array(errors, type=pa.string())
