"""The extraction's read-ahead thread: order kept, errors raised in the caller, an early stop stops it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest

from workdev_pipeline.ingest.extract import read_ahead


def batches(n: int, fail_at: int | None = None) -> Iterator[pa.RecordBatch]:
    for i in range(n):
        if i == fail_at:
            raise ConnectionError(f"lost the server at batch {i}")
        yield pa.record_batch({"i": [i]})


def test_batches_arrive_in_order() -> None:
    assert [b.column("i")[0].as_py() for b in read_ahead(batches(50))] == list(range(50))


def test_a_reader_error_is_raised_in_the_caller_after_the_batches_before_it() -> None:
    seen = []
    with pytest.raises(ConnectionError, match="batch 7"):
        for b in read_ahead(batches(20, fail_at=7)):
            seen.append(b.column("i")[0].as_py())
    assert seen == list(range(7))


def test_stopping_early_stops_the_reader() -> None:
    before = threading.active_count()
    stream = read_ahead(batches(10_000), depth=2)
    assert next(stream).column("i")[0].as_py() == 0
    stream.close()  # what a caller's exception or break does
    assert threading.active_count() == before
