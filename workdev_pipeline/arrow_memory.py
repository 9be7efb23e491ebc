"""The process's Arrow memory pool: jemalloc for the lake's writes.

pyarrow's default pool (mimalloc) hands the pages of large freed buffers back to the kernel and faults them in
again: a sweep's batches, their copies and its Parquet pages cost ~1.2 CPU-s of system time per 1,000,000 events
with it, ~0.5 with jemalloc, and its peak RSS is ~120 MiB higher (``bench/README.md``, "The ratio to the wire").
``ARROW_DEFAULT_MEMORY_POOL``, when set, is left to decide.
"""

from __future__ import annotations

import os

import pyarrow as pa

POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def use_jemalloc() -> None:
    """Make jemalloc the process's default Arrow pool (buffers allocated before keep their own pool); nothing when
    ``ARROW_DEFAULT_MEMORY_POOL`` is set or this pyarrow has no jemalloc."""
    if os.environ.get(POOL_ENV) or pa.default_memory_pool().backend_name == "jemalloc":
        return
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow built without it
        return
