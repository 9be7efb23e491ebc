"""Payload nesting, both ways: how deep a value nests (checked before sending it), and decoding stored payloads
without letting one odd document (nested a thousand levels, say) fail a whole read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from workdev_pipeline.limits import MAX_PAYLOAD_DEPTH


def too_deep(value: Any, limit: int = MAX_PAYLOAD_DEPTH) -> bool:
    """Whether ``value`` nests containers (mappings, lists, tuples) deeper than ``limit`` levels, counting
    ``value`` itself as level 1. Iterative, and stops at ``limit + 1``, so cycles and any depth are safe."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children)
    return False


def depth_message(name: str) -> str:
    """The rejection message of a too-deep payload, as the SQL ``event_rejection`` words it."""
    return f"{name} is nested deeper than {MAX_PAYLOAD_DEPTH} levels"


@dataclass(frozen=True)
class UnreadablePayload:
    """A stored payload that could not be decoded; ``reason`` says why."""

    reason: str


def lenient_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """JSON text decoded, or an :class:`UnreadablePayload` -- never an exception (orjson refuses documents
    deeper than 1,024 levels instead of recursing; integers past 64 bits fall back to the standard library)."""
    try:
        return orjson.loads(bytes(data) if isinstance(data, memoryview) else data)
    except orjson.JSONDecodeError as exc:
        first = str(exc)
    try:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
    except (ValueError, RecursionError):
        return UnreadablePayload(first)
