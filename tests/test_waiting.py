"""The end-to-end tests' wait helper: it returns the value that met the condition, and a wait that fails names
the condition, the last value or exception it saw and the context it was given (no clock involved: a limit of 0
gives up after the first look)."""

from __future__ import annotations

import pytest

from tests.waiting import WaitTimedOut, wait_until


def test_returns_the_value_that_met_the_condition() -> None:
    values = iter([0, 1, 5, 7])
    assert wait_until(lambda: next(values), "a value over 4", until=lambda v: v > 4, timeout=60, interval=0) == 5


def test_a_failed_wait_says_what_it_waited_for_and_what_it_saw() -> None:
    with pytest.raises(WaitTimedOut) as failed:
        wait_until(lambda: {"lake": 3, "postgres": 5}, "the lake to catch up", until=lambda c: c["lake"] == 5,
                   timeout=0, context=lambda: "--- server.log\nlast line")
    message = str(failed.value)
    assert message.startswith("waited for the lake to catch up: not within 0 s")
    assert "last seen: {'lake': 3, 'postgres': 5}" in message and message.endswith("--- server.log\nlast line")


def test_ignored_exceptions_are_what_it_saw_and_gone_stops_at_once() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(WaitTimedOut, match=r"the server exited \(1\).*ConnectionRefusedError\('connection refused'\)"):
        wait_until(refused, "the server to answer", timeout=600, ignore=(OSError,),
                   gone=lambda: "the server exited (1)")
    with pytest.raises(ValueError):  # anything not ignored is the test's failure, as raised
        wait_until(lambda: int("x"), "a number", timeout=600, ignore=(OSError,))
