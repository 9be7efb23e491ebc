"""Exact amount sums of the aggregations, and where they fit.

``aggregate_events.sql`` adds in DuckDB (as DECIMAL(38, 9)) only the amounts it reads exactly, and returns per row
the payloads of the other events (``unsure_payloads``: a number of more than 15 digits, more than 9 decimals or
with an exponent somewhere in the payload, or an amount given as a string). Here their amounts are read with
every digit (the standard library's JSON parser, numbers as Decimals) and added exactly: a row's amount is the
exact sum of its events' amounts, whatever their size.

PostgreSQL's ``event_aggregations.amount_sum`` (``numeric``, unbounded) holds that exact sum. The lake's table and
the engines hold DECIMAL(38, 9) (Arrow ``decimal128(38, 9)``, BigQuery NUMERIC, Redshift DECIMAL(38, 9)): up to 29
integer digits and 9 decimals. A sum that does not fit is never rounded: it is NULL there, and the row's
``amount_overflow`` is true in every store (PostgreSQL keeps the exact sum; the ``amount_sums_fit`` asset check
fails on such rows).

Each event's own amount is typed too: the lake's events table (and the engines' tables it feeds) has ``amount``
(DECIMAL(38, 9): the event type's amount field, :func:`workdev_pipeline.catalog.amount_fields`, read exactly) and
``amount_overflow`` (true when that amount is not representable there: it is NULL then, never rounded; the payload
keeps every digit). :func:`event_amounts` computes them and :func:`fill_amounts` fills them into rows that do not
have them yet (``amount_overflow`` NULL: rows of files written before the columns existed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_DOWN, Context, Decimal, Inexact, InvalidOperation, Overflow
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from workdev_pipeline.catalog import amount_fields

#: The lake's and the engines' amount type: 38 digits, 9 of them decimals.
PRECISION, SCALE = 38, 9
LAKE_DECIMAL = pa.decimal128(PRECISION, SCALE)
_NANO = Decimal(1).scaleb(-SCALE)
#: Arithmetic that is exact or raises (never a rounded result).
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact, Overflow, InvalidOperation])
_WIDE = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def amount_of(payload: str, field: str) -> Decimal | None:
    """The amount of one event, exactly: its payload's top-level ``field`` when it is a JSON number or a string
    holding a finite decimal (as DuckDB's ``TRY_CAST`` takes it); None otherwise."""
    data = json.loads(payload, parse_float=Decimal, parse_int=Decimal)  # (ints: no 4,300-digit limit either)
    value = data.get(field) if isinstance(data, dict) else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            return None
        return amount if amount.is_finite() else None
    return None


def fits(amount: Decimal) -> bool:
    """True when DECIMAL(38, 9) holds ``amount`` exactly (at most 29 integer digits and 9 decimals)."""
    if not amount.is_finite():
        return False
    if amount.is_zero():
        return True
    return amount.adjusted() < PRECISION - SCALE and amount.quantize(_NANO, rounding=ROUND_DOWN,
                                                                     context=_WIDE) == amount


def nanos(amount: Decimal | int | str) -> Decimal:
    """``amount`` with exactly 9 decimals (as DECIMAL(38, 9) renders it), at any width (never the default context's
    28 digits); a finer amount is cut, so compare only amounts that fit."""
    return Decimal(amount).quantize(_NANO, rounding=ROUND_DOWN, context=_WIDE)


def exact_sum(fast_sum: Decimal | None, payloads: list[str] | None, field: str | None) -> Decimal | None:
    """A row's exact amount: DuckDB's sum of the amounts it read exactly plus those of the unsure payloads."""
    if fast_sum is None or not payloads or field is None:
        return fast_sum
    total = fast_sum
    for payload in payloads:
        amount = amount_of(payload, field)
        if amount is not None:
            total = _EXACT.add(total, amount)
    return total


def amount_columns(rows: pa.Table, fields: Mapping[str, str]) -> dict[str, pa.Array]:
    """From DuckDB's rows (``event_type``, ``amount_sum``, ``unsure_payloads``): ``amount_sum`` as the lake holds
    it (the exact sum when it fits DECIMAL(38, 9), else NULL), ``amount_overflow`` (true when it does not fit),
    and ``amount_exact``, the exact sum's text (NULL for types without an amount)."""
    stored: list[Decimal | None] = []
    overflow: list[bool] = []
    exact_text: list[str | None] = []
    columns: list[list[Any]] = [rows.column(n).to_pylist() for n in ("event_type", "amount_sum", "unsure_payloads")]
    for event_type, fast_sum, payloads in zip(*columns, strict=True):
        exact = exact_sum(fast_sum, payloads, fields.get(event_type))
        held = exact is None or fits(exact)
        stored.append(exact.quantize(_NANO, context=_EXACT) if exact is not None and held else None)
        overflow.append(not held)
        exact_text.append(None if exact is None else str(exact))
    return {"amount_sum": pa.array(stored, LAKE_DECIMAL), "amount_overflow": pa.array(overflow, pa.bool_()),
            "amount_exact": pa.array(exact_text, pa.string())}


def event_amounts(event_types: pa.Array | pa.ChunkedArray, event_data: pa.Array | pa.ChunkedArray,
                  fields: Mapping[str, str] | None = None) -> tuple[pa.Array, pa.Array]:
    """Each event's typed amount: ``amount`` (``LAKE_DECIMAL``; the payload's amount field as :func:`amount_of`
    reads it; NULL when the type has no amount field, the payload no amount, or the amount does not fit) and
    ``amount_overflow`` (true when the amount is there but does not fit DECIMAL(38, 9)). ``fields``: {event type:
    amount field}, the catalog's (:func:`~workdev_pipeline.catalog.amount_fields`) by default; ``event_data``:
    JSON text (or Arrow's JSON extension type).

    The payloads of the types sharing an amount field are read together by Arrow's JSON reader into
    ``decimal128(38, 9)`` (exact: it converts a number's text, never a double; it refuses more than 9 decimals, a
    boolean, an array, a non-decimal string); payloads with long digit runs or exponents, and every payload of a
    group it refuses, are read by :func:`amount_of` one at a time (~9x slower, ``bench/README.md``)."""
    fields = amount_fields() if fields is None else fields
    n = len(event_types)
    if isinstance(event_data.type, pa.BaseExtensionType):
        event_data = event_data.cast(pa.string())
    if isinstance(event_types, pa.ChunkedArray):
        event_types = event_types.combine_chunks()
    if isinstance(event_data, pa.ChunkedArray):
        event_data = event_data.combine_chunks()
    rows: list[pa.Array] = []
    amounts: list[pa.Array] = []
    overflows: list[pa.Array] = []
    for field in sorted(set(fields.values())):
        types = pa.array(sorted(t for t, f in fields.items() if f == field), pa.string())
        mask = pc.and_(pc.fill_null(pc.is_in(event_types, value_set=types), False), pc.is_valid(event_data))
        wanted = pc.indices_nonzero(mask)
        if len(wanted):
            amount, overflow = _read_amounts(pc.take(event_data, wanted), field)
            rows.append(wanted)
            amounts.append(amount)
            overflows.append(overflow)
    if not rows:
        return pa.nulls(n, LAKE_DECIMAL), pa.array(np.zeros(n, dtype=bool))
    positions = np.full(n, -1, dtype=np.int64)
    positions[pa.concat_arrays(rows).to_numpy()] = np.arange(sum(len(r) for r in rows))
    index = pa.array(positions, mask=positions < 0)
    overflow = pc.fill_null(pc.take(pa.concat_arrays(overflows), index), False)
    return pc.take(pa.concat_arrays(amounts), index), overflow


#: Payloads Arrow's reader is not given: a run of more than 20 digits, a value with an exponent -- a number, or a
#: string holding nothing else, after ``:``, ``,`` or ``[`` (its conversion can overflow 128 bits silently for those --
#: a wrong number, not an error; found by tests/test_exact_money.py) --, an escape (``\u0031e40`` is such a string
#: once decoded), or a line break (one payload a line). Ids such as ``"2487e639-8ab9-…"`` are no such value: counting
#: them sent ~70 % of the demo's payloads to the per-payload reader.
_FOR_PYTHON = r'[0-9]{21}|(?:^|[:,\[])\s*"?\s*[-+]?[0-9.]+[eE][-+]?[0-9]*\s*"?\s*(?:[,}\]]|$)|\\u|\n'


def _read_amounts(payloads: pa.Array, field: str) -> tuple[pa.Array, pa.Array]:
    """(amount, amount_overflow) of each payload's top-level ``field`` (see :func:`event_amounts`)."""
    exact = pc.match_substring_regex(payloads, _FOR_PYTHON)
    if not exact.true_count:
        read = _read_with_arrow(payloads, field)
        if read is not None:
            return read, pa.array(np.zeros(len(payloads), dtype=bool))
        return _read_with_python(payloads, field)
    fast, slow = pc.indices_nonzero(pc.invert(exact)), pc.indices_nonzero(exact)
    fast_amounts = _read_with_arrow(pc.take(payloads, fast), field) if len(fast) else None
    if fast_amounts is None:
        return _read_with_python(payloads, field)
    slow_amounts, slow_overflow = _read_with_python(pc.take(payloads, slow), field)
    positions = np.empty(len(payloads), dtype=np.int64)
    positions[fast.to_numpy()] = np.arange(len(fast))
    positions[slow.to_numpy()] = np.arange(len(slow)) + len(fast)
    index = pa.array(positions)
    return (pc.take(pa.concat_arrays([fast_amounts, slow_amounts]), index),
            pc.take(pa.concat_arrays([pa.array(np.zeros(len(fast), dtype=bool)), slow_overflow]), index))


def _read_with_arrow(payloads: pa.Array, field: str) -> pa.Array | None:
    """The payloads' ``field`` by Arrow's JSON reader (one payload a line); None when it refuses one of them."""
    lines = pc.binary_join_element_wise(payloads, "\n", "")  # each payload and its line break, in one buffer
    _, offsets, data = lines.buffers()
    start, end = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + len(lines)]]
    text = data.slice(int(start), int(end - start)) if len(lines) else pa.py_buffer(b"")
    options = pj.ParseOptions(explicit_schema=pa.schema([(field, LAKE_DECIMAL)]), unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(pa.BufferReader(text), parse_options=options,
                             read_options=pj.ReadOptions(block_size=max(1 << 20, min(len(text) + 1, 1 << 24))))
    except pa.ArrowInvalid:
        return None
    return table.column(0).combine_chunks() if table.num_rows == len(payloads) else None


def _read_with_python(payloads: pa.Array, field: str) -> tuple[pa.Array, pa.Array]:
    """The payloads' ``field`` by :func:`amount_of`, one at a time."""
    amounts: list[Decimal | None] = []
    overflow: list[bool] = []
    for payload in payloads.to_pylist():
        try:
            amount = amount_of(payload, field)
        except ValueError:  # not JSON (validation stops such events before the lake)
            amount = None
        held = amount is not None and fits(amount)
        amounts.append(amount.quantize(_NANO, context=_EXACT) if held else None)
        overflow.append(amount is not None and not held)
    return pa.array(amounts, LAKE_DECIMAL), pa.array(overflow, pa.bool_())


def amount_totals(rows: pa.Table) -> dict[str, tuple[Decimal, int]]:
    """Per event type of ``rows`` (``event_type``, ``amount``, ``amount_overflow``): (exact sum of ``amount``,
    events with ``amount_overflow``), for the types having either -- what an engine's ``amounts(day)`` returns."""
    totals: dict[str, tuple[Decimal, int]] = {}
    columns = [rows.column(n).to_pylist() for n in ("event_type", "amount", "amount_overflow")]
    for event_type, amount, overflow in zip(*columns, strict=True):
        if amount is None and not overflow:
            continue
        total, overflowed = totals.get(event_type, (Decimal(0), 0))
        totals[event_type] = (total if amount is None else _EXACT.add(total, amount), overflowed + bool(overflow))
    return totals


def fill_amounts(rows: pa.Table) -> pa.Table:
    """``rows`` (with ``event_type`` and ``event_data``) with ``amount`` and ``amount_overflow`` computed
    (:func:`event_amounts`) where ``amount_overflow`` is NULL or the columns are missing (added last); rows that
    have them are kept as they are."""
    names = rows.column_names
    held = rows.column("amount_overflow") if "amount_overflow" in names else None
    if held is not None and held.null_count == 0:
        return rows
    amount, overflow = event_amounts(rows.column("event_type"), rows.column("event_data"))
    if held is not None and "amount" in names:
        known = pc.is_valid(held)
        amount = pc.if_else(known, rows.column("amount").cast(LAKE_DECIMAL), amount)
        overflow = pc.if_else(known, held, overflow)
    for name, column in (("amount", amount), ("amount_overflow", overflow)):
        field = pa.field(name, column.type)
        rows = (rows.set_column(names.index(name), field, column) if name in names else
                rows.append_column(field, column))
        names = rows.column_names
    return rows
