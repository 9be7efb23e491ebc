"""What erasure does to one event's payload and metadata, driven by the catalog's marks. Pure (no I/O).

- :func:`erase_own`: an event of the erased user (or an event without a user in one of their sessions): every
  field the catalog marks personal removed, at any depth, and every key named like personal data
  (:func:`key_kind`, the readers' rule, at any depth) whatever the schema says; returns what it removed.
- :func:`erase_references`: another user's event: each reference to the erased user (``x-user-ref``) replaced by
  the request's pseudonym, fields the catalog says belong to the referenced user (``x-owner``) removed, and every
  string holding one of the erased user's identifying values scrubbed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workdev_pipeline.catalog import (
    COMMON_PERSONAL_PROPERTIES,
    EVENT_TYPES_BY_NAME,
    IDENTIFYING_KINDS,
    ITEMS,
    METADATA_PERSONAL_FIELDS,
    PersonalField,
    marked_fields,
)
from workdev_pipeline.events import encode_json
from workdev_pipeline.governance.traces import json_strings

#: The readers' rule for keys naming personal data (``is_network_key()`` / ``is_personal_key()`` in
#: ``0014_bounded_input_and_access.sql``: the key lowercased, everything but letters and digits dropped), applied by
#: erasure too, at any depth, whatever the type declares; a device fingerprint besides.
_NETWORK_KEY = re.compile(r"(ipaddr|useragent|forwarded|remoteaddr)|^(x|client|remote|real|xreal|user|source|src|"
                          r"peer|origin|cfconnecting|trueclient|xclient|public|private|device|last|login)?"
                          r"(ip|ips|ipv4|ipv6)$|^ua$")
_PERSONAL_KEY = re.compile(r"(email|phone|address$)")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def key_kind(key: str) -> str | None:
    """The kind of personal data a key names (by the readers' rule), or None."""
    k = _NOT_ALNUM.sub("", key.lower())
    if _NETWORK_KEY.search(k):
        return "user_agent" if "useragent" in k or k == "ua" else "ip_address"
    if k == "devicefingerprint":
        return "device_id"
    found = _PERSONAL_KEY.search(k)
    return found.group(1) if found is not None else None


#: What replaces an erased value inside a string that is kept.
ERASED = "[erased]"
#: Values shorter than this are not scrubbed from other strings (too likely to occur by chance).
MIN_SCRUB_LENGTH = 4

_UNTYPED_FIELDS = tuple(marked_fields({"properties": COMMON_PERSONAL_PROPERTIES}))


@dataclass
class Removed:
    """Values removed from events, by kind (strings as they were; other JSON values as their JSON text)."""

    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, dict | list):  # a structured value: its strings are what identifies
            for leaf in json_strings(value):
                self.add(kind, leaf)
            return
        text = value if isinstance(value, str) else encode_json(value)  # a number keeps its digits
        if text:
            self.values.setdefault(kind, set()).add(text)

    def identifying(self) -> set[str]:
        """The values that identify the person wherever they occur (emails, phones, addresses, names)."""
        return {v for k in IDENTIFYING_KINDS for v in self.values.get(k, ()) if len(v) >= MIN_SCRUB_LENGTH}


def personal_fields(event_type: str) -> tuple[PersonalField, ...]:
    """The catalog's personal fields of a type (for a type it does not know: the keys every type marks)."""
    known = EVENT_TYPES_BY_NAME.get(event_type)
    return known.personal_fields if known is not None else _UNTYPED_FIELDS


def _required(event_type: str) -> set[tuple[str, ...]]:
    known = EVENT_TYPES_BY_NAME.get(event_type)
    return {(key,) for key in known.required} if known is not None else set()


def user_refs(event_type: str) -> tuple[PersonalField, ...]:
    known = EVENT_TYPES_BY_NAME.get(event_type)
    return known.user_refs if known is not None else ()


def erase_own(event_type: str, data: Any, metadata: Any, removed: Removed) -> tuple[Any, Any]:
    """The payload and metadata of an erased event: marked fields and personal key names removed at any depth
    (a required one keeps its key, its value replaced by ``[erased]``, so the event stays valid), what they held
    added to ``removed``, then the identifying values removed so far scrubbed from the strings that remain."""
    required = _required(event_type)
    for f in personal_fields(event_type):
        if f.path in required and isinstance(data, dict) and f.path[0] in data:
            removed.add(f.kind, data[f.path[0]])
            data = {**data, f.path[0]: ERASED}
            continue
        data = _remove(data, f.path, f.kind, removed)
    data = _remove_named(data, removed)
    for f in METADATA_PERSONAL_FIELDS:
        metadata = _remove(metadata, f.path, f.kind, removed)
    metadata = _remove_named(metadata, removed)
    scrub = _scrubber({}, removed.identifying())
    return scrub(data), scrub(metadata)


def erase_references(event_type: str, data: Any, metadata: Any, user_id: str, pseudonym: str,
                     secrets: Iterable[str]) -> tuple[Any, Any]:
    """Another user's event: references to ``user_id`` replaced by ``pseudonym``, the referenced user's own
    fields (``x-owner``) removed, the user id and the ``secrets`` scrubbed from every string."""
    refs = user_refs(event_type)
    referenced = {f.path for f in refs if _get(data, f.path) == user_id}
    for f in personal_fields(event_type):
        if f.owner is not None and f.owner in referenced:
            data = _remove(data, f.path, f.kind, Removed())
    scrub = _scrubber({user_id: pseudonym}, secrets)
    return scrub(data), scrub(metadata)


def scrub_json(value: Any, secrets: Iterable[str], replacements: Mapping[str, str] | None = None) -> Any:
    """``value`` with every occurrence of a secret in its strings replaced by ``[erased]`` (and of a
    ``replacements`` key by its value); keys are kept."""
    return _scrubber(dict(replacements or {}), secrets)(value)


def _scrubber(replacements: dict[str, str], secrets: Iterable[str]):
    pairs = sorted({**{s: ERASED for s in secrets if s and len(s) >= MIN_SCRUB_LENGTH}, **replacements}.items(),
                   key=lambda kv: len(kv[0]), reverse=True)

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            for old, new in pairs:
                if old in v:
                    v = v.replace(old, new)
            return v
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk if pairs else (lambda v: v)


def _get(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if key == ITEMS or not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _remove(value: Any, path: tuple[str, ...], kind: str, removed: Removed) -> Any:
    """``value`` without what ``path`` reaches (through every item of an array at :data:`ITEMS`)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if head == ITEMS:
        if not isinstance(value, list):
            return value
        if not rest:
            for item in value:
                removed.add(kind, item)
            return []
        return [_remove(item, rest, kind, removed) for item in value]
    if not isinstance(value, dict) or head not in value:
        return value
    if not rest:
        removed.add(kind, value[head])
        return {k: v for k, v in value.items() if k != head}
    return {**value, head: _remove(value[head], rest, kind, removed)}


def _remove_named(value: Any, removed: Removed) -> Any:
    """``value`` without any key named like personal data, at any depth."""
    if isinstance(value, dict):
        kept = {}
        for k, v in value.items():
            kind = key_kind(k)
            if kind is None:
                kept[k] = _remove_named(v, removed)
            else:
                removed.add(kind, v)
        return kept
    if isinstance(value, list):
        return [_remove_named(v, removed) for v in value]
    return value

