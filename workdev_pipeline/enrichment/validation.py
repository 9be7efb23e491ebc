"""Validate each event's ``event_data`` (JSON text) against its type's JSON Schema, in bulk.

Schemas come from the ``event_schemas`` table (:func:`workdev_pipeline.catalog.event_schema_rows`). A batch is
validated column-wise (:mod:`~workdev_pipeline.enrichment.batch_validation`: each type's rows parsed at once by
Arrow's JSON reader, checks over the columns); the per-event *reference* below judges the rows the columns cannot
(types whose schema leaves the compiled subset, text the two readers could read differently, values of the wrong
JSON type) and is what the property tests compare the column checks with, verdict and message.

The reference: schemas declare draft 2020-12 but use only keywords that mean the same in draft-07, so each is
compiled once with ``fastjsonschema`` as draft-07 (plain Python code: ~1 µs per event), with a ``uuid`` format
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
import numpy as np
import orjson
import pyarrow as pa
from fastjsonschema import JsonSchemaValueException

from workdev_pipeline.enrichment._arrow import StringColumn, distinct_strings
from workdev_pipeline.enrichment.batch_validation import BatchValidator
from workdev_pipeline.enrichment.column_checks import FORMATS, REFERENCE, UUID_PATTERN
from workdev_pipeline.enrichment.violations import violation_message

__all__ = ["UUID_PATTERN", "SchemaValidator"]

_DRAFT_07 = "http://json-schema.org/draft-07/schema#"
#: Keywords whose meaning differs between draft 2020-12 and draft-07 (or that draft-07 ignores).
_DRAFT_2020_ONLY = frozenset({
    "prefixItems", "dependentRequired", "dependentSchemas", "unevaluatedProperties", "unevaluatedItems",
    "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor", "minContains", "maxContains",
    "$vocabulary",
})

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
    return fastjsonschema.compile(definition, formats=FORMATS, use_default=False)


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


def _describe(error: JsonSchemaValueException) -> str:
    """``event_data.<path> must ...`` for one violation the reference found."""
    name = error.name or "data"
    message = error.message or f"must satisfy {error.rule}"
    return violation_message(name, error.rule, error.rule_definition, error.value, message)


def _validate_exactly(check: Check, text: str | bytes, event_type: str, error: Exception) -> str | None:
    """The error message for JSON text orjson could not read: valid JSON whose numbers a float cannot hold (past
    1.8e308: jsonb's numerics are unbounded) is read with the standard library, numbers as Decimals, and validated."""
    try:
        data = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the interpreter's stack
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
    """Validates ``event_data`` of events of the given types; each schema is compiled once.

    ``schemas`` maps an event type to its JSON Schema (a dict, or its JSON text as stored in
    ``event_schemas.json_schema``). Each is compiled twice: into column-wise checks over a batch parsed once per type
    by Arrow's JSON reader, here, when it stays within :mod:`~workdev_pipeline.enrichment.column_checks`' subset
    (every catalog schema does); per event (fastjsonschema, the reference) when a row first needs it. The column
    checks decide; the reference judges the rows they cannot (types outside the subset, text the readers could read
    differently, values of the wrong JSON type) -- in most sweeps none, so their run does not compile the catalog's
    reference validators before its first event (~0.4 s of CPU).
    """

    def __init__(self, schemas: Mapping[str, Mapping[str, Any] | str | bytes]) -> None:
        parsed = {name: orjson.loads(schema) if isinstance(schema, (str, bytes)) else schema
                  for name, schema in schemas.items()}
        self._schemas = parsed
        self._checks: dict[str, Check] = {}  # the reference validators compiled so far
        self._batch = BatchValidator({name: schema for name, schema in parsed.items() if _is_draft_07(schema)})

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
        return frozenset(self._schemas)

    @property
    def column_checked_types(self) -> frozenset[str]:
        """The types validated column-wise (the others, per event by the reference)."""
        return self._batch.event_types

    def validate_one(self, event_type: str | None, event_data: str | bytes | None) -> str | None:
        """The error message for one event, or ``None`` when it is valid."""
        return self.validate(pa.array([event_type], pa.string()), [event_data])[0].as_py()

    def validate(self, event_types: StringColumn | Sequence[str | None],
                 event_data: StringColumn | Sequence[str | bytes | None]) -> pa.StringArray:
        """Per event: an error message, or null when ``event_data`` is valid for ``event_type``.

        ``event_types`` and ``event_data`` (JSON text: string, large_string or binary) have one row per event.
        """
        type_indices, type_names = distinct_strings(event_types)
        texts, originals = _text_column(event_data)
        if len(texts) != len(type_indices):
            raise ValueError(f"event_types has {len(type_indices)} rows but event_data has {len(texts)}")
        verdicts = self._batch.verdicts(type_indices, type_names, texts)
        rows = np.flatnonzero(verdicts != None)  # noqa: E711 (element-wise)
        if not len(rows):
            return pa.nulls(len(verdicts), pa.string())
        errors = np.full(len(verdicts), None, dtype=object)
        row_types = type_indices.take(pa.array(rows)).to_pylist()
        for row, t, text in zip(rows.tolist(), row_types, originals(rows), strict=True):
            errors[row] = self._message(t, type_names, verdicts[row], text)
        return pa.array(errors, type=pa.string())

    def reference(self, event_type: str | None, event_data: str | bytes | None) -> str | None:
        """The per-event reference (orjson + fastjsonschema): the message for one event, or ``None``. The column
        checks must agree with it (the property tests compare them); it judges the rows they cannot."""
        if event_type is None:
            return "event_type is null"
        check = self._reference_check(event_type)
        if check is None:
            return f"unknown event type {event_type[:100]!r}"
        if event_data is None:
            return f"event_data of {event_type!r} is null"
        try:
            check(orjson.loads(event_data))
        except JsonSchemaValueException as error:
            return _describe(error)
        except orjson.JSONDecodeError as error:
            return _validate_exactly(check, event_data, event_type, error)
        return None

    def _reference_check(self, event_type: str) -> Check | None:
        """The reference validator of ``event_type`` (compiled on first use), None for a type without a schema."""
        check = self._checks.get(event_type)
        if check is None and event_type in self._schemas:
            check = self._checks[event_type] = _compile(self._schemas[event_type])
        return check

    def _message(self, t: int | None, type_names: list[str | None], verdict: str,
                 text: str | bytes | None) -> str | None:
        """The message of one row the batch flagged: the rule its verdict names, or the reference's."""
        name = type_names[t] if t is not None else None
        if verdict == REFERENCE or name is None or text is None:
            return self.reference(name, text)
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:  # never for a row the columns judged; the reference's word if it were
            return self.reference(name, text)
        return self._batch.message(name, verdict, document)


def _is_draft_07(schema: Any) -> bool:
    """True when the reference reads ``schema`` with draft-07 semantics (what the column checks reproduce)."""
    if not isinstance(schema, Mapping):
        return False
    declared = str(schema.get("$schema", ""))
    return (not declared or "2020-12" in declared or declared.rstrip("#") == _DRAFT_07.rstrip("#")) \
        and not _needs_2020_semantics(schema)


def _text_column(values: StringColumn | Sequence[str | bytes | None]) \
        -> tuple[pa.Array, Callable[[np.ndarray], list[str | bytes | None]]]:
    """``values`` as one string array (text that is not UTF-8 as null: its row goes to the reference), and a
    function giving the original values of some rows."""
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = list(values)
        texts = pa.array([_decoded(v) for v in values], pa.string())
        return texts, lambda rows: [values[row] for row in rows.tolist()]
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values.type, pa.ExtensionType):
        values = values.storage
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
        try:
            texts = values.cast(pa.string())
        except pa.ArrowInvalid:
            texts = pa.array([_decoded(v) for v in values.to_pylist()], pa.string())
    else:
        texts = values.cast(pa.string()) if not pa.types.is_string(values.type) else values
    return texts, lambda rows: values.take(pa.array(rows)).to_pylist()


def _decoded(value: str | bytes | None) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return value
