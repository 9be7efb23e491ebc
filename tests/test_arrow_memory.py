"""The sweep's process allocates Arrow buffers with jemalloc (arrow_memory.py), unless told otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from workdev_pipeline.arrow_memory import POOL_ENV, use_jemalloc
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake import EventLake, LakeLocation


@pytest.fixture
def default_pool() -> Iterator[None]:
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    yield
    pa.set_memory_pool(before)


def test_an_ingestor_makes_jemalloc_the_pool(default_pool: None, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POOL_ENV, raising=False)
    Ingestor("postgresql://127.0.0.1/unused", EventLake(LakeLocation.from_env(str(tmp_path))))
    assert pa.default_memory_pool().backend_name == "jemalloc"


def test_the_environment_chooses_when_it_says(default_pool: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POOL_ENV, "mimalloc")
    use_jemalloc()
    assert pa.default_memory_pool().backend_name == "mimalloc"
