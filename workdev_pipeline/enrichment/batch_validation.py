"""Column-wise validation of a batch of events: each type's rows parsed at once by Arrow's JSON reader into the
columns its schema constrains (:mod:`~workdev_pipeline.enrichment.column_checks`), then checked column by column.

The reader is C++ that releases the GIL: the types of a batch are read and checked side by side on every core. It
is strict: a value of the wrong JSON type, a key twice, or text that is not JSON fails the read, and the rows of a
failed read are read again in smaller chunks until the failing rows are alone. Those, and rows whose text the
reader and orjson could read differently (:data:`~workdev_pipeline.enrichment.column_checks.UNREADABLE`; a ``null``
for a key some type reads, which the reader reads as absent; a document not starting with ``{``), get the verdict
:data:`~workdev_pipeline.enrichment.column_checks.REFERENCE`: the per-event reference judges them. Messages are
written for the failing rows only, from the rule broken and the value found.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from workdev_pipeline.enrichment.column_checks import (
    FORMATS,
    REFERENCE,
    UNREADABLE,
    ColumnChecks,
    UnsupportedSchema,
    _np,
    _numpy,
)
from workdev_pipeline.enrichment.violations import violation_message

__all__ = ["BatchValidator"]

#: Rows longer than this many bytes have their brackets counted: orjson refuses nesting past 1,024 levels.
_DEEP = 1_000
#: A failed read is retried in this many chunks; a chunk of at most this many rows that fails goes to the reference.
_SPLIT = 32
#: Matches of a whole-batch scan followed one by one; past that, the rest of the batch is scanned row by row.
_SCAN_MATCHES = 16
#: Bytes of JSON each reader thread takes at a time.
_BLOCK_BYTES = 1 << 20
_pools: dict[int, ThreadPoolExecutor] = {}  # per process (a forked child does not inherit the threads)


class BatchValidator:
    """The column checks of the given types' schemas (read with draft-07 semantics, as the reference does); a
    type outside the compiled subset is left out (its rows get :data:`REFERENCE`)."""

    def __init__(self, schemas: Mapping[str, Any]) -> None:
        self._checks: dict[str, ColumnChecks] = {}
        for name, schema in schemas.items():
            try:
                self._checks[name] = ColumnChecks(schema, FORMATS)
            except UnsupportedSchema:
                continue
        keys = sorted(set().union(*(c.keys for c in self._checks.values())))
        # a ``null`` for a read key (any type's) reads as absent: those rows too go to the reference
        self._unreadable = UNREADABLE + ('|"(?:' + "|".join(keys) + r')"\s*:\s*null' if keys else "")

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self._checks)

    def verdicts(self, type_indices: pa.Array, type_names: list[str | None], texts: pa.Array) -> np.ndarray:
        """Per row: ``None`` when valid, else a rule's token or :data:`REFERENCE` (also for a null type or text,
        and for a type without column checks). ``type_indices`` index ``type_names``; ``texts``: JSON text."""
        verdicts = np.full(len(texts), REFERENCE, dtype=object)
        checks = [self._checks.get(name) if name is not None else None for name in type_names]
        if not any(checks):
            return verdicts
        readable = _np(pc.starts_with(texts, "{"))
        others = np.flatnonzero(~readable)
        if len(others):  # rarely: a document after blanks
            first = pc.utf8_slice_codeunits(pc.utf8_ltrim(texts.take(pa.array(others)), characters=" \t"), 0, 1)
            readable[others] = _np(pc.equal(first, "{"))
        readable &= ~_rows_matching(texts, self._unreadable)
        long = np.flatnonzero(readable & (_numpy(pc.binary_length(texts), 0) > _DEEP))
        if len(long):  # nesting orjson refuses (past 1,024 levels) needs as many brackets: the reference judges
            brackets = pc.count_substring_regex(texts.take(pa.array(long)), r"[\[{]").to_numpy()
            readable[long[brackets > _DEEP // 2]] = False
        codes = _numpy(type_indices, len(type_names))
        # small integers: numpy's stable sort of 16-bit codes is a radix sort (~8 x faster than of 64-bit ones)
        codes = np.where(readable, codes, len(type_names)).astype(np.int16 if len(type_names) < 2**15 else np.int64)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(type_names) + 1))
        jobs = [(type_checks, order[bounds[i]:bounds[i + 1]]) for i, type_checks in enumerate(checks)
                if type_checks is not None and bounds[i + 1] > bounds[i]]
        # each type's rows are read and checked on their own: side by side, the GIL released
        list(_pool().map(lambda job: _check_type(job[0], texts.take(pa.array(job[1])), job[1], verdicts), jobs))
        return verdicts

    def message(self, event_type: str, verdict: str, document: Any) -> str:
        """The message of ``verdict`` (a rule's token) for the parsed ``document`` of an event of ``event_type``."""
        indices: list[int] = []
        rest = verdict
        while rest.startswith("["):
            index, rest = rest[1:].split("]", 1)
            indices.append(int(index))
        rule = self._checks[event_type].rules[int(rest)]
        name, value, found = "data", document, iter(indices)
        for key in rule.path:
            if key is None:
                index = next(found)
                name, value = f"{name}[{index}]", value[index]
            else:
                name, value = f"{name}.{key}", value[key]
        return violation_message(name, rule.keyword, rule.expected, value, f"{name} must satisfy {rule.keyword}")


def _check_type(checks: ColumnChecks, texts: pa.Array, rows: np.ndarray, verdicts: np.ndarray) -> None:
    """Verdicts for the rows ``rows`` of one type (their texts ``texts``)."""
    level, first = [(texts, rows)], True
    while level:
        failed = []
        for texts, rows in level:
            parsed = _read(texts, checks.arrow_schema)
            if parsed is not None:
                verdicts[rows] = checks.tokens(parsed)
            else:
                failed.append((texts, rows))
        # a failed read is read again in chunks, to find the failing rows; where most chunks fail too, errors are
        # everywhere and re-reading would cost more than the reference: their rows go to it (their verdict stays)
        if not first and len(failed) * 4 > len(level):
            break
        level, first = [], False
        for texts, rows in failed:
            if len(rows) > _SPLIT:
                step = -(-len(rows) // _SPLIT)
                level += [(texts.slice(k, step), rows[k:k + step]) for k in range(0, len(rows), step)]


def _pool() -> ThreadPoolExecutor:
    pool = _pools.get(os.getpid())
    if pool is None:
        pool = _pools[os.getpid()] = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="validation")
    return pool


def _read(texts: pa.Array, schema: pa.Schema) -> pa.Table | None:
    """``texts`` (one JSON object each, on one line) parsed into ``schema``'s columns; None when the reader rejects
    any of them (or reads another number of rows)."""
    lines = pc.binary_join_element_wise(texts, "\n", "")
    _, offsets, data = lines.buffers()
    start, end = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + len(lines)]]
    data = data.slice(int(start), int(end - start))
    try:
        parsed = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(use_threads=False, block_size=_BLOCK_BYTES),
            parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return parsed if parsed.num_rows == len(texts) else None


def _rows_matching(texts: pa.Array, pattern: str) -> np.ndarray:
    """Per row of ``texts`` (a string array): whether ``pattern`` (no anchors) matches in it; False for null.

    The rows' bytes are scanned as one string (RE2's cost per row is a third of a row-by-row scan); the row where a
    match starts is then tested alone (a match may run into the next row), and the scan goes on from the next row.
    """
    n = len(texts)
    if not pa.types.is_string(texts.type):
        return _np(pc.match_substring_regex(texts, pattern))
    found = np.zeros(n, dtype=bool)
    _, offsets_buffer, data = texts.buffers()
    if not n or data is None:
        return found
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=n + 1, offset=texts.offset * 4)
    row = 0
    for _ in range(_SCAN_MATCHES):
        start, size = int(offsets[row]), int(offsets[n] - offsets[row])
        rest = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(np.array([0, size], np.int32)),
                                                      data.slice(start, size)])
        at = pc.find_substring_regex(rest, pattern)[0].as_py()
        if at is None or at < 0:
            return found
        row = int(np.searchsorted(offsets, start + at, side="right")) - 1  # the (non-empty) row holding that byte
        if row >= n:
            return found
        found[row] = bool(pc.match_substring_regex(texts.slice(row, 1), pattern)[0].as_py())
        row += 1
        if row >= n:
            return found
    found[row:] = _np(pc.match_substring_regex(texts.slice(row), pattern))
    return found

