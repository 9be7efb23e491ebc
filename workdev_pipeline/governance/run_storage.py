"""The erasure proof's search of Dagster's own storage, which an erasure cannot rewrite: every run's config and
tags, every entry of its event log (log messages, and the metadata, descriptions and tags of materializations,
observations and check evaluations, failures' error texts), the runless asset events (sensors' observations),
and the sensors' and schedules' ticks (run requests with their config and tags, cursors, skip reasons, errors).

Each stored object is read through Dagster's API (``get_run_records``, ``get_records_for_run``,
``all_instigator_state``, ``get_ticks``), serialized back to JSON (``serialize_value``: what the storage holds)
and walked; the candidates of each JSON string (key or value) are those of
:func:`workdev_pipeline.governance.traces.candidates`.

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

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dagster import DagsterInstance, serialize_value

from workdev_pipeline.governance.traces import TraceSearch, json_strings

#: Dagster's run id of runless asset events (``report_runless_asset_event``, a sensor's ``asset_events``).
RUNLESS_RUN_ID = ""
RUNS_PAGE = 100

@dataclass(frozen=True)
class RunStorageTrace:
    """One occurrence: where (a run id, ``""`` for runless events, or ``tick:<instigator>``), in what
    (``run``, ``event:<DagsterEventType or log>``, ``tick``, ``instigator``), of which kind and hash."""

    run_id: str
    where: str
    kind: str
    hash: str


def find_run_storage_traces(instance: DagsterInstance, key: bytes, hashes: Mapping[str, Iterable[str]], *,
                            max_runs: int | None = None, page_size: int = 1_000,
                            max_ticks: int | None = 1_000) -> Iterator[RunStorageTrace]:
    """Every occurrence of a hashed value (``hashes``: {kind: keyed hashes}) in ``instance``'s storage, newest
    runs first, streamed (memory: one page of events)."""
    yield from _find(instance, TraceSearch(key, hashes), max_runs=max_runs, page_size=page_size, max_ticks=max_ticks)


def search_run_storage(instance: DagsterInstance, search: TraceSearch, *, max_runs: int | None = None,
                       max_ticks: int | None = 1_000) -> None:
    """Count every occurrence ``search`` wants in ``instance``'s storage, under the place ``dagster_run_storage``
    (erasure's proof)."""
    for trace in _find(instance, search, max_runs=max_runs, page_size=1_000, max_ticks=max_ticks):
        search.found[(f"dagster_run_storage ({trace.where})", trace.hash)] += 1


def _matches(search: TraceSearch, stored: Any) -> Iterator[tuple[str, str]]:
    """(kind, hash) of every hash found in ``stored`` (a serialized object), once per string holding it."""
    for text in json_strings(json.loads(serialize_value(stored)), keys=True):
        for h in search.hashes_in([text]):
            for kind in search.kinds[h]:
                yield kind, h


def _find(instance: DagsterInstance, search: TraceSearch, *, max_runs: int | None, page_size: int,
          max_ticks: int | None) -> Iterator[RunStorageTrace]:
    if not search:
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
            for kind, h in _matches(search, run):
                yield RunStorageTrace(run.run_id, "run", kind, h)
            yield from _events(instance, search, run.run_id, page_size)
        seen += len(records)
        cursor = records[-1].dagster_run.run_id
    yield from _events(instance, search, RUNLESS_RUN_ID, page_size)
    if instance.schedule_storage is None:  # an ephemeral instance keeps no ticks
        return
    for state in instance.all_instigator_state():
        where = f"tick:{state.instigator_name}"
        for kind, h in _matches(search, state):
            yield RunStorageTrace(where, "instigator", kind, h)
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=max_ticks):
            for kind, h in _matches(search, tick.tick_data):
                yield RunStorageTrace(where, "tick", kind, h)


def _events(instance: DagsterInstance, matcher: TraceSearch, run_id: str, page_size: int) -> Iterator[RunStorageTrace]:
    cursor: str | None = None
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, limit=page_size)
        for record in page.records:
            entry = record.event_log_entry
            what = f"event:{entry.dagster_event_type.value}" if entry.dagster_event_type else "event:log"
            for kind, h in _matches(matcher, entry):
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
