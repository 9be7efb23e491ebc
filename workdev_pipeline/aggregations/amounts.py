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
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_DOWN, Context, Decimal, Inexact, InvalidOperation, Overflow
from typing import Any

import pyarrow as pa

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
    data = json.loads(payload, parse_float=Decimal)
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
