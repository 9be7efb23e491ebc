"""The search behind erasure's proof: every string a store holds, hashed with the ledger's key and compared with
the hashes the ledger keeps. The candidates of a string (:func:`candidates`) are the string itself, each quoted
part (``"..."`` JSON, ``'...'`` a Python repr: a value quoted in a message), each cell of a markdown table
(previews), and each substring shaped like a UUID (lowercased too: the ledger hashes canonical ids), an email
address or an IP address."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from workdev_pipeline.governance.common import keyed_hash
from workdev_pipeline.governance.redaction import EMAIL_PATTERN, IPV4_PATTERN, IPV6_PATTERN, UUID_PATTERN

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'', re.DOTALL)


def candidates(text: str) -> set[str]:
    """The values looked for in one stored string (see the module's documentation)."""
    found = {text, text.strip()}
    for match in _QUOTED.finditer(text):
        quoted = match.group(1) if match.group(1) is not None else match.group(2)
        found.add(quoted)
        if match.group(1) is not None and "\\" in quoted:
            with contextlib.suppress(ValueError):
                found.add(json.loads(match.group(0)))
    if "|" in text:
        found.update(cell.strip() for cell in text.split("|"))
    for uuid_text in UUID_PATTERN.findall(text):
        found.update((uuid_text, uuid_text.lower()))
    if "@" in text:
        found.update(EMAIL_PATTERN.findall(text))
    for pattern in (IPV4_PATTERN, IPV6_PATTERN):
        for ip in pattern.findall(text):
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                continue
            found.add(ip)
    found.discard("")
    return found


def json_strings(value: Any, *, keys: bool = False) -> Iterator[str]:
    """Every string of a JSON value, at any depth (object keys too when ``keys``)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for key, sub in item.items():
                if keys:
                    yield key
                stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)


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
        """A JSON document (text or parsed): the candidates of each string in it."""
        if isinstance(document, str | bytes):
            try:
                document = json.loads(document)
            except ValueError:
                self.text(place, document if isinstance(document, str) else document.decode("utf-8", "replace"))
                return
        for h in self.hashes_in(json_strings(document)):
            self.found[(place, h)] += rows

    def text(self, place: str, text: str, rows: int = 1) -> None:
        """Free text (a log file, a message): its candidates."""
        for h in self.hashes_in([text]):
            self.found[(place, h)] += rows

    def hashes_in(self, texts: Iterable[str]) -> set[str]:
        """The wanted hashes among the candidates of ``texts``."""
        hits = set()
        for text in texts:
            for candidate in candidates(text):
                h = self._match(candidate)
                if h is not None:
                    hits.add(h)
        return hits

    def _count(self, place: str, values: Iterable[str], rows: int) -> None:
        for value in values:
            h = self._match(value)
            if h is not None:
                self.found[(place, h)] += rows

    def traces(self) -> list[Trace]:
        return [Trace(place, kind, h, rows) for (place, h), rows in sorted(self.found.items())
                for kind in self.kinds[h]]

