"""Waiting on a condition in the end-to-end tests: poll until it holds, within a generous limit (a shared 2-core
machine under load is slow, never wrong); a wait that fails says what it waited for and what it last saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
SHOWN = 2_000  # characters of the last value seen, in the failure message


class WaitTimedOut(AssertionError):
    """The condition did not hold within the limit (or the thing waited on stopped: ``gone``)."""


def wait_until(probe: Callable[[], T], what: str, *, timeout: float, until: Callable[[T], object] = bool,
               interval: float = 1.0, ignore: tuple[type[Exception], ...] = (),
               gone: Callable[[], str | None] | None = None, context: Callable[[], str] | None = None) -> T:
    """Call ``probe`` every ``interval`` seconds until ``until(value)`` is true; return that value.

    ``what`` names the condition ("the lake holds every event"). Exceptions of the ``ignore`` types count as
    "not yet" (a server still starting). ``gone`` returns a reason to stop waiting at once (a process that
    exited). On failure the error names the condition, the time waited, the last value or exception seen and
    ``context()`` (a log's tail)."""
    start = time.monotonic()
    seen: object = "nothing yet"
    while True:
        try:
            value = probe()
            if until(value):
                return value
            seen = value
        except ignore as exc:
            seen = exc
        reason = gone() if gone else None
        waited = time.monotonic() - start
        if reason or waited > timeout:
            why = reason or f"not within {timeout:.0f} s"
            extra = context() if context else ""
            shown = repr(seen)
            shown = shown if len(shown) <= SHOWN else f"{shown[:SHOWN]}… ({len(shown)} characters)"
            raise WaitTimedOut(f"waited for {what}: {why} ({waited:.0f} s); last seen: {shown}"
                               + (f"\n{extra}" if extra else ""))
        time.sleep(interval)
