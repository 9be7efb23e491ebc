"""The wording of a schema violation: ``event_data.<path> must ...``, naming the field, the rule and what was found.

One wording for both validators (:mod:`~workdev_pipeline.enrichment.validation`'s per-event reference and
:mod:`~workdev_pipeline.enrichment.batch_validation`'s column checks), so they give the same message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["violation_message"]

_ROOT = "event_data"
_VALUE_PREVIEW = 40  # characters of an offending value quoted in a message
_BOUNDS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


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


def violation_message(name: str, rule: str | None, expected: Any, value: Any, fallback: str) -> str:
    """The message for ``value`` at ``name`` (fastjsonschema's ``data.a[0].b``) breaking ``rule`` (whose value in
    the schema is ``expected``); ``fallback``: the validator's own message, for rules without a wording here."""
    path = _ROOT + name[4:] if name.startswith("data") else f"{_ROOT}.{name}"
    if rule == "type":
        types = " or ".join(map(str, expected)) if isinstance(expected, list) else expected
        return f"{path} must be of type {types}, got {_json_type(value)}"
    if rule in _BOUNDS:
        return f"{path} must be {_BOUNDS[rule]} {expected}, got {_preview(value)}"
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
    return _ROOT + fallback[4:] if fallback.startswith("data") else f"{path}: {fallback}"
