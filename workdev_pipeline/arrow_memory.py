"""The process's Arrow memory: jemalloc for the lake's writes, keeping the pages it frees.

pyarrow's default pool (mimalloc) hands the pages of large freed buffers back to the kernel and faults them in
again: a sweep's batches, their copies and its Parquet pages cost ~1.2 CPU-s of system time per 1,000,000 events
with it, ~0.5 with jemalloc, and its peak RSS is ~120 MiB higher (``bench/README.md``, "The ratio to the wire").
``ARROW_DEFAULT_MEMORY_POOL``, when set, is left to decide.

Arrow's jemalloc hands freed pages back too (``MADV_DONTNEED``, a second after they were freed), so a sweep that
frees a batch's copy and allocates the next one faults the same pages in again. :data:`JEMALLOC_CONF` turns the
last step of that decay off (``muzzy_decay_ms:-1``): freed pages go lazily freeable (``MADV_FREE``: the kernel takes
them back under memory pressure) and are reused without a fault (``bench/README.md``, "Arrow's jemalloc keeps its
pages"). jemalloc reads its options once, when pyarrow is imported: the package sets them on import
(``workdev_pipeline/__init__.py``), before any of its modules imports pyarrow.
"""

from __future__ import annotations

import os

POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"
#: The variable Arrow's (prefixed) jemalloc reads its options from, and the options the package sets in it.
JEMALLOC_CONF_ENV = "JE_ARROW_MALLOC_CONF"
JEMALLOC_CONF = "muzzy_decay_ms:-1"


def keep_freed_pages() -> None:
    """Set :data:`JEMALLOC_CONF` for Arrow's jemalloc, unless the environment already says something (effective only
    before pyarrow is first imported in the process)."""
    os.environ.setdefault(JEMALLOC_CONF_ENV, JEMALLOC_CONF)


def use_jemalloc() -> None:
    """Make jemalloc the process's default Arrow pool (buffers allocated before keep their own pool); nothing when
    ``ARROW_DEFAULT_MEMORY_POOL`` is set or this pyarrow has no jemalloc."""
    import pyarrow as pa

    if os.environ.get(POOL_ENV) or pa.default_memory_pool().backend_name == "jemalloc":
        return
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow built without it
        return
