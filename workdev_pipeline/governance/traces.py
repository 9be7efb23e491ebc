"""The search behind erasure's proof: every string a store holds, hashed with the ledger's key and compared with
the hashes the ledger keeps. Candidates are whole values (columns, every string of a JSON document) and, inside
any text, what is shaped like a UUID, an email address or a quoted string."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workdev_pipeline.governance.common import keyed_hash

#: UUIDs and email addresses inside text (a log line, a message, a string value holding more than one thing).
SHAPED = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                    r"|[^\s\"'\\<>(),;:\[\]{}|]+@[^\s\"'\\<>(),;:\[\]{}|]+\.[A-Za-z]{2,}")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.){4,2000})"')


@dataclass(frozen=True)
class Trace:
    place: str  # postgres | dead_letter | warehouse:<consumer> | lake_log | dagster_run_storage | ...
    kind: str  # user_id | email | phone | ... (the ledger's kinds)
    hash: str
    rows: int


class TraceSearch:
    """Counts, per place, the candidates whose keyed hash is one of ``hashes`` ({kind: hashes})."""

    def __init__(self, key: bytes, hashes: Mapping[str, Iterable[str]]) -> None:
        self.key = key
        self.kinds: dict[str, list[str]] = {}
        for kind, values in hashes.items():
            for h in values:
                self.kinds.setdefault(h, []).append(kind)
        self.found: Counter[tuple[str, str]] = Counter()
        self._seen: dict[str, str | None] = {}  # candidate -> its hash when wanted (most strings repeat)

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def _match(self, candidate: str) -> str | None:
        if candidate in self._seen:
            return self._seen[candidate]
        h = keyed_hash(self.key, candidate)
        hit = h if h in self.kinds else None
        if len(self._seen) < 1_000_000:
            self._seen[candidate] = hit
        return hit

    def values(self, place: str, values: Iterable[str | None], rows: int = 1) -> None:
        """Whole values (a column's)."""
        for value in values:
            if value:
                self._count(place, {value}, rows)

    def document(self, place: str, document: Any, rows: int = 1) -> None:
        """A JSON document (text or parsed): each string in it, and the UUIDs and addresses inside them."""
        if isinstance(document, str | bytes):
            try:
                document = json.loads(document)
            except ValueError:
                self.text(place, document if isinstance(document, str) else document.decode("utf-8", "replace"))
                return
        candidates: set[str] = set()
        for leaf in _strings(document):
            candidates.add(leaf)
            if len(leaf) > 36:
                candidates.update(SHAPED.findall(leaf))
        self._count(place, candidates, rows)

    def text(self, place: str, text: str, rows: int = 1) -> None:
        """Free text (a log file, a message): UUIDs, addresses and quoted strings in it."""
        candidates = set(SHAPED.findall(text))
        for quoted in _QUOTED.findall(text):
            try:
                candidates.add(json.loads(f'"{quoted}"'))
            except ValueError:
                candidates.add(quoted)
        self._count(place, candidates, rows)

    def _count(self, place: str, candidates: Iterable[str], rows: int) -> None:
        for candidate in candidates:
            h = self._match(candidate)
            if h is not None:
                self.found[(place, h)] += rows

    def traces(self) -> list[Trace]:
        return [Trace(place, kind, h, rows) for (place, h), rows in sorted(self.found.items())
                for kind in self.kinds[h]]


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
