"""Arrow helpers shared by the enrichment functions: dictionary-encode a string column and scatter results back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

StringColumn = pa.Array | pa.ChunkedArray

_STRING_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)


def _is_string_type(type_: pa.DataType) -> bool:
    return any(check(type_) for check in _STRING_TYPES)


def distinct_strings(values: StringColumn | Sequence[str | None]) -> tuple[pa.Array, list[str | None]]:
    """Dictionary-encode ``values``: (int32 indices, null where the value is null; the distinct values).

    Accepts string, large_string and string_view arrays (plain, chunked or already dictionary-encoded), an
    all-null array, or a Python sequence of ``str | None``. A chunked input is encoded as a whole, so each
    distinct value appears once however many chunks carry it.
    """
    indices, dictionary = distinct_array(values)
    return indices, dictionary.to_pylist()


def distinct_array(values: StringColumn | Sequence[str | None]) -> tuple[pa.Array, pa.Array]:
    """:func:`distinct_strings` with the distinct values as an Arrow array (no null among them)."""
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(values, type=pa.string())
    if pa.types.is_null(values.type):
        values = values.cast(pa.string())
    if pa.types.is_dictionary(values.type):
        if not _is_string_type(values.type.value_type):
            raise TypeError(f"expected a column of strings, got {values.type}")
        encoded = values
    elif _is_string_type(values.type):
        encoded = pc.dictionary_encode(values)
    else:
        raise TypeError(f"expected a column of strings, got {values.type}")
    if isinstance(encoded, pa.ChunkedArray):
        if encoded.num_chunks == 0:
            return pa.array([], pa.int32()), pa.array([], pa.string())
        encoded = encoded.unify_dictionaries()  # cheap when the chunks already share one dictionary
        indices = pa.concat_arrays([chunk.indices for chunk in encoded.chunks])
        dictionary = encoded.chunk(0).dictionary
    else:
        indices, dictionary = encoded.indices, encoded.dictionary
    return indices, dictionary


def scatter(indices: pa.Array, rows: Sequence[tuple[Any, ...] | None], type_: pa.StructType) -> pa.StructArray:
    """One result per distinct value (a tuple of field values, or ``None`` for a null struct), taken by ``indices``."""
    mask = pa.array([row is None for row in rows], type=pa.bool_())
    children = [
        pa.array([None if row is None else row[i] for row in rows], type=field.type) for i, field in enumerate(type_)
    ]
    per_value = pa.StructArray.from_arrays(children, fields=list(type_), mask=mask)
    return per_value.take(indices)
