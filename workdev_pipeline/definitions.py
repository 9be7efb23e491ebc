"""The Dagster code location: ``Definitions`` for ``dagster dev`` and ``dagster definitions validate``.

The event store, its client and its demo traffic come first; the ingestion assets, sensors and schedules
that move events to the warehouses are assembled here as they land.
"""

from __future__ import annotations

from dagster import Definitions

defs = Definitions()
