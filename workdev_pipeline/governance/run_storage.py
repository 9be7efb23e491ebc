"""The erasure proof's search of Dagster's own storage, which an erasure cannot rewrite: every run's config and
tags, every entry of its event log (log messages, and the metadata, descriptions and tags of materializations,
observations and check evaluations, failures' error texts), the runless asset events (sensors' observations),
and the sensors' and schedules' ticks (run requests with their config and tags, cursors, skip reasons, errors).

Each stored object is read through Dagster's API (``get_run_records``, ``get_records_for_run``,
``all_instigator_state``, ``get_ticks``), serialized back to JSON (``serialize_value``: what the storage holds)
and walked; the candidates of each JSON string (key or value) are:

* the string itself, and stripped of whitespace;
* each quoted part (``"..."`` JSON, ``'...'`` a Python repr: a value quoted in a message) and each cell of a
  markdown table (``| ... |``: previews);
* each substring shaped like a UUID (lowercased too: the ledger hashes canonical lowercase ids), an email or an
  IP address (v4 or v6, checked with :mod:`ipaddress`).

Each candidate is hashed with the ledger's key (:func:`~workdev_pipeline.governance.common.keyed_hash`) and
looked up in every kind's hashes. An occurrence is one JSON string holding the value (a string holding it twice
counts once; the same value in the config and in a log message counts twice).

Cost: one paged query per 100 runs, one per ``page_size`` events of each run, one per instigator for its ticks;
then about 1 µs per candidate (SHA-256 of a short string, cached across the search). Measured on this machine
(``tests/test_run_storage.py::test_cost_over_many_runs`` prints it, SQLite storage): ~0.6 ms per event-log entry,
so a 13-event asset run costs ~8 ms and 10,000 runs about 80 s, in memory one page of events at a time.
``max_runs`` caps the search at the newest runs, ``max_ticks`` the ticks per instigator.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dagster import DagsterInstance, serialize_value

from workdev_pipeline.governance.common import keyed_hash
from workdev_pipeline.governance.redaction import EMAIL_PATTERN, IPV4_PATTERN, IPV6_PATTERN, UUID_PATTERN

#: Dagster's run id of runless asset events (``report_runless_asset_event``, a sensor's ``asset_events``).
RUNLESS_RUN_ID = ""
RUNS_PAGE = 100

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'', re.DOTALL)


@dataclass(frozen=True)
class RunStorageTrace:
    """One occurrence: where (a run id, ``""`` for runless events, or ``tick:<instigator>``), in what
    (``run``, ``event:<DagsterEventType or log>``, ``tick``, ``instigator``), of which kind and hash."""

    run_id: str
    where: str
    kind: str
    hash: str


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


def _strings(value: Any) -> Iterator[str]:
    """Every string of a JSON value: object keys and string values, at any depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for key, sub in item.items():
                yield key
                stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)


class _Matcher:
    def __init__(self, key: bytes, hashes: Mapping[str, Iterable[str]], cache_size: int = 200_000) -> None:
        self._key = key
        self._kinds: dict[str, list[str]] = {}
        for kind, of_kind in hashes.items():
            for h in of_kind:
                self._kinds.setdefault(h, []).append(kind)
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size

    def hash(self, candidate: str) -> str:
        h = self._cache.get(candidate)
        if h is None:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            h = self._cache[candidate] = keyed_hash(self._key, candidate)
        return h

    def matches(self, stored: Any) -> Iterator[tuple[str, str]]:
        """(kind, hash) of every hash found in ``stored`` (a serialized object), once per string holding it."""
        if not self._kinds:
            return
        for text in _strings(json.loads(serialize_value(stored))):
            found = {self.hash(c) for c in candidates(text)}
            for h in found & self._kinds.keys():
                for kind in self._kinds[h]:
                    yield kind, h


def find_run_storage_traces(instance: DagsterInstance, key: bytes, hashes: Mapping[str, Iterable[str]], *,
                            max_runs: int | None = None, page_size: int = 1_000,
                            max_ticks: int | None = 1_000) -> Iterator[RunStorageTrace]:
    """Every occurrence of a hashed value (``hashes``: {kind: keyed hashes}) in ``instance``'s storage, newest
    runs first, streamed (memory: one page of events)."""
    matcher = _Matcher(key, hashes)
    if not matcher._kinds:
        return
    cursor: str | None = None
    seen = 0
    while max_runs is None or seen < max_runs:
        limit = RUNS_PAGE if max_runs is None else min(RUNS_PAGE, max_runs - seen)
        records = instance.get_run_records(limit=limit, cursor=cursor)
        if not records:
            break
        for record in records:
            run = record.dagster_run
            for kind, h in matcher.matches(run):
                yield RunStorageTrace(run.run_id, "run", kind, h)
            yield from _events(instance, matcher, run.run_id, page_size)
        seen += len(records)
        cursor = records[-1].dagster_run.run_id
    yield from _events(instance, matcher, RUNLESS_RUN_ID, page_size)
    if instance.schedule_storage is None:  # an ephemeral instance keeps no ticks
        return
    for state in instance.all_instigator_state():
        where = f"tick:{state.instigator_name}"
        for kind, h in matcher.matches(state):
            yield RunStorageTrace(where, "instigator", kind, h)
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=max_ticks):
            for kind, h in matcher.matches(tick.tick_data):
                yield RunStorageTrace(where, "tick", kind, h)


def _events(instance: DagsterInstance, matcher: _Matcher, run_id: str, page_size: int) -> Iterator[RunStorageTrace]:
    cursor: str | None = None
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, limit=page_size)
        for record in page.records:
            entry = record.event_log_entry
            what = f"event:{entry.dagster_event_type.value}" if entry.dagster_event_type else "event:log"
            for kind, h in matcher.matches(entry):
                yield RunStorageTrace(run_id, what, kind, h)
        if not page.has_more or not page.records:
            return
        cursor = page.cursor


def run_storage_traces(instance: DagsterInstance, key: bytes, hashes: Mapping[str, Iterable[str]], *,
                       max_runs: int | None = None, max_ticks: int | None = 1_000) -> dict[str, dict[str, int]]:
    """{kind: {hash: occurrences}} of the hashed values found in ``instance``'s storage (see
    :func:`find_run_storage_traces`); kinds and hashes not found are left out."""
    found: dict[str, dict[str, int]] = {}
    for trace in find_run_storage_traces(instance, key, hashes, max_runs=max_runs, max_ticks=max_ticks):
        of_kind = found.setdefault(trace.kind, {})
        of_kind[trace.hash] = of_kind.get(trace.hash, 0) + 1
    return found
