"""The whole-batch regex scan of ``enrichment/batch_validation.py`` against a row-by-row scan (no database)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from workdev_pipeline.enrichment import SchemaValidator
from workdev_pipeline.enrichment.batch_validation import _SCAN_MATCHES, _rows_matching

PATTERN = SchemaValidator.from_catalog()._batch._unreadable
FRAGMENTS = ['{"amount": ', "null", '"currency"', ": ", ":", ",", "[", "nan", "-Inf", "1e400", "1", "9" * 10, "\\", "u",
             "\\u0031", "\n", "\r", "é", "{", "}", '"', " ", "x"]


def _by_row(texts: pa.Array) -> list[bool]:
    return pc.fill_null(pc.match_substring_regex(texts, PATTERN), False).to_pylist()


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.one_of(st.none(), st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join)),
                     max_size=3 * _SCAN_MATCHES),
       start=st.integers(0, 3), garbage=st.booleans())
def test_whole_batch_scan_is_the_row_by_row_scan(rows: list[str | None], start: int, garbage: bool) -> None:
    texts = pa.array(rows, pa.string())
    if garbage:  # null rows holding bytes (Arrow allows it): a match there must not count
        data = "".join("null" if r is None else r for r in rows).encode()
        lengths = [4 if r is None else len(r.encode()) for r in rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        texts = pa.Array.from_buffers(pa.string(), len(rows), [texts.buffers()[0], pa.py_buffer(offsets),
                                                               pa.py_buffer(data)])
    texts = texts.slice(min(start, len(rows)))
    assert _rows_matching(texts, PATTERN).tolist() == _by_row(texts)


def test_matches_running_into_the_next_row_and_many_matches() -> None:
    rows = ['{"a": 1, "amount": ', 'null}', '{"b": "\\', 'u"}', "{}", '{"c": [NaN]}'] + ['{"d": "\\u0041"}'] * (
        2 * _SCAN_MATCHES) + ['{"e": 1}', '{"f": "\\u"}']
    texts = pa.array(rows)
    found = _rows_matching(texts, PATTERN).tolist()
    assert found == _by_row(texts)
    assert found[:6] == [False, False, False, False, False, True] and found[-2:] == [False, True]
