"""The limits of the event store's input and reads, mirrored from SQL's ``event_query_limits()``
(``sql/migrations/0014_bounded_input_and_access.sql``; a test keeps the two equal).

The client checks page sizes and offsets before calling, with the very messages the SQL functions raise.
"""

from __future__ import annotations

from typing import Any

from workdev_pipeline.errors import QueryLimitExceeded

#: event_data and metadata nest at most this deep (the top-level object is level 1, each nested object or
#: array one more).
MAX_PAYLOAD_DEPTH = 32
#: ``query_events``: events a page, the furthest offset, the longest range.
MAX_PAGE_SIZE = 1_000
MAX_OFFSET = 100_000
MAX_RANGE_DAYS = 93
#: ``query_aggregations``: rows returned, the longest range (a year of daily rows of every type is 11,712).
MAX_AGGREGATION_ROWS = 50_000
MAX_AGGREGATION_DAYS = 1_100


def check_page(limit: Any, offset: Any) -> None:
    """Raise :class:`QueryLimitExceeded` unless ``limit`` and ``offset`` are integers within the limits."""
    if not _int_within(limit, 1, MAX_PAGE_SIZE):
        raise QueryLimitExceeded(f"limit must be an integer between 1 and {MAX_PAGE_SIZE}, got {_shown(limit)}")
    if not _int_within(offset, 0, MAX_OFFSET):
        raise QueryLimitExceeded(f"offset must be an integer between 0 and {MAX_OFFSET}, got {_shown(offset)}")


def _int_within(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _shown(value: Any) -> str:
    """A value as SQL's ``format('%s')`` shows it (NULL for None); anything not an integer as its repr."""
    if value is None:
        return "NULL"
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else repr(value)
