"""Redaction of what leaves the pipeline for Dagster's run storage (event log, materialization metadata, run
logs), which an erasure cannot rewrite: event ids, event types, field paths, rules, type names and lengths stay;
the values an event carried go.

:func:`redact_message` applies, in order:

1. a validation message (``event_data.<path> must ...``, built by ``enrichment/validation.py``) keeps its head --
   the path, the rule and what the schema expects (enum members, a pattern, bounds) -- and loses the value it
   ends with (``, got "alice@example.com"`` -> ``, got [redacted]``), except a JSON type name (``got string``) or
   the length of a length rule (``must be at most 20 characters long, got 23``);
2. an enrichment failure (``enrichment failed: <Exception>: <text>``) keeps the kind and the exception's type: the
   text of a library's exception is free text that may quote the user agent or the address;
3. in any other message (exceptions, notes) every quoted string (``"..."`` or ``'...'``) is replaced, unless it
   is a name of the catalog (an event type, a payload or metadata key), which says where, never what;
4. then, everywhere: anything shaped like an email, an IP address (v4 or v6, checked with :mod:`ipaddress`), a
   phone number (international ``+...``, or 9 to 15 digits in 3 to 5 separated groups, dates excepted) or a UUID.
   UUIDs go because a message cannot tell a user id from an event id; the caller passes the ids it knows to be
   event ids in ``keep`` (a dead-letter sample names its own event in its own column anyway).

Numbers outside these shapes (counts, versions, bounds) stay. Over-redaction of free text is accepted: it is
shown to operators, who read the event itself in PostgreSQL (where erasure reaches it) when they need it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable
from functools import lru_cache
from typing import Any

REDACTED = "[redacted]"

#: JSON type names a ``type`` rule reports (``got string``): what kind of value, not which.
JSON_TYPE_NAMES = frozenset({"null", "boolean", "integer", "number", "string", "array", "object"})

_GOT = ", got "
_VALIDATION = re.compile(r"event_data(?:[.\[]\S*)? (?:must |is missing required key)")
_LENGTH_RULE = re.compile(r"(?:characters long|items)\Z")
_ENRICHMENT = re.compile(r"(enrichment failed: [A-Za-z_][\w.]*)(?:: .*)?\Z", re.DOTALL)
#: A JSON string (escapes included) or a Python ``repr`` of a str (single quotes).
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', re.DOTALL)
EMAIL_PATTERN = re.compile(r"[\w.!#$%&*+/=?^`{}~-]+@[\w-]+(?:\.[\w-]+)*", re.UNICODE)
UUID_PATTERN = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
                   r"(?![0-9A-Fa-f])")
IPV4_PATTERN = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.]*\d)")
IPV6_PATTERN = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?(?![\w:])")
_PHONE_INTERNATIONAL = re.compile(r"(?<![\w+])\+\(?\d[\d\s().-]{5,}\d")
_PHONE_GROUPS = re.compile(r"(?<![\w.:/-])\(?\d{2,5}\)?(?:[ .-]\(?\d{2,5}\)?){2,4}(?![\w.:/-]*\d)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@lru_cache(maxsize=1)
def catalog_names() -> frozenset[str]:
    """Event types and every key of the catalog's schemas (payload and metadata), at any depth."""
    from workdev_pipeline.catalog import EVENT_TYPES, METADATA_SCHEMA

    names: set[str] = set()

    def walk(schema: Any) -> None:
        if isinstance(schema, dict):
            for key, sub in (schema.get("properties") or {}).items():
                names.add(key)
                walk(sub)
            for keyword in ("items", "additionalProperties", "x-metadata"):
                walk(schema.get(keyword))
            for keyword in ("anyOf", "oneOf", "allOf"):
                for sub in schema.get(keyword) or ():
                    walk(sub)
            names.update(k for k in schema.get("required") or () if isinstance(k, str))

    for event_type in EVENT_TYPES:
        names.add(event_type.name)
        walk(event_type.json_schema)
    walk(METADATA_SCHEMA)
    names.update(("event_data", "metadata"))
    return frozenset(names)


_EVENT_TYPE_SHAPE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+")


def redact_event_type(event_type: str | None) -> str:
    """An event type as shown next to a sample: a catalog type, or one shaped like one (``noun.verb``); anything
    else (an application sending garbage as its type) is redacted."""
    if event_type is None:
        return "null"
    if event_type in catalog_names() or (len(event_type) <= 100 and _EVENT_TYPE_SHAPE.fullmatch(event_type)):
        return event_type
    return REDACTED


def redact_message(message: str | None, *, keep: Collection[str] = ()) -> str:
    """``message`` with the values it quotes redacted (see the module's documentation); UUIDs in ``keep`` (event
    ids, any case) stay."""
    if not message:
        return message or ""
    enrichment = _ENRICHMENT.match(message)
    if enrichment:
        return enrichment.group(1) + (": " + REDACTED if enrichment.group(0) != enrichment.group(1) else "")
    if _VALIDATION.match(message):
        message = without_quoted_value(message)
    else:
        names = catalog_names()
        message = _QUOTED.sub(lambda m: m.group(0) if m.group(0)[1:-1] in names else REDACTED, message)
    return redact_patterns(message, keep=keep)


def without_quoted_value(message: str, replacement: str = REDACTED) -> str:
    """A validation message without the value it ends with (``..., got "alice@example.com"``); a JSON type name
    or the length of a length rule stays."""
    head, sep, tail = message.rpartition(_GOT)
    if sep and not _harmless_tail(head, tail):
        return head + sep + replacement
    return message


def _harmless_tail(head: str, tail: str) -> bool:
    return tail in JSON_TYPE_NAMES or (tail.isdigit() and bool(_LENGTH_RULE.search(head)))


def redact_patterns(text: str, *, keep: Collection[str] = ()) -> str:
    """``text`` without emails, IP addresses, phone numbers and UUIDs (but those in ``keep``)."""
    kept = {k.lower() for k in keep}
    text = EMAIL_PATTERN.sub(REDACTED, text)
    text = UUID_PATTERN.sub(lambda m: m.group(0) if m.group(0).lower() in kept else REDACTED, text)
    text = IPV4_PATTERN.sub(lambda m: REDACTED if _is_ip(m.group(0)) else m.group(0), text)
    text = IPV6_PATTERN.sub(lambda m: REDACTED if _is_ip(m.group(0)) else m.group(0), text)
    text = _PHONE_INTERNATIONAL.sub(REDACTED, text)
    return _PHONE_GROUPS.sub(lambda m: REDACTED if _is_phone(m.group(0)) else m.group(0), text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_phone(text: str) -> bool:
    return 9 <= sum(c.isdigit() for c in text) <= 15 and not _DATE.search(text)


def redact_all(messages: Iterable[str]) -> list[str]:
    """Each of ``messages`` redacted (notes, reasons)."""
    return [redact_message(m) for m in messages]


def failure_sample(event_id: str, event_type: str | None, message: str) -> tuple[str, str, str]:
    """A dead-letter sample as shown in metadata: its event id, its type and its message, redacted."""
    return str(event_id), redact_event_type(event_type), redact_message(message, keep=(str(event_id),))
