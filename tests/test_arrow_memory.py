"""The sweep's process allocates Arrow buffers with jemalloc (arrow_memory.py), unless told otherwise, and Arrow's
jemalloc keeps the pages it frees."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from workdev_pipeline.arrow_memory import JEMALLOC_CONF, JEMALLOC_CONF_ENV, POOL_ENV, use_jemalloc
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


def _imported_pipeline(conf: str | None) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter importing the sweep's modules (pyarrow with them), ``JE_ARROW_MALLOC_CONF`` as given;
    prints the variable as the process ended up with it."""
    env = {k: v for k, v in os.environ.items() if k != JEMALLOC_CONF_ENV}
    if conf is not None:
        env[JEMALLOC_CONF_ENV] = conf
    code = ("import os, workdev_pipeline.ingest.ingestor, pyarrow as pa; "
            "pa.allocate_buffer(1 << 20, memory_pool=pa.jemalloc_memory_pool()); "
            f"print(os.environ[{JEMALLOC_CONF_ENV!r}])")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_importing_the_package_sets_arrows_jemalloc_options_before_pyarrow_reads_them() -> None:
    done = _imported_pipeline(None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == JEMALLOC_CONF
    assert "<jemalloc>" not in done.stderr


def test_this_jemalloc_takes_the_options() -> None:
    # abort_conf: jemalloc aborts the process on an option it does not know or a value it refuses
    done = _imported_pipeline(f"abort_conf:true,{JEMALLOC_CONF}")
    assert done.returncode == 0, done.stderr
    assert "<jemalloc>" not in done.stderr
    assert _imported_pipeline("abort_conf:true,muzzy_decay_ms:soon").returncode != 0  # the check can fail


def test_the_environments_jemalloc_options_win() -> None:
    done = _imported_pipeline("muzzy_decay_ms:1000")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "muzzy_decay_ms:1000"
