"""Named crash points, for the tests that kill a run at several places and prove nothing is lost or doubled.

``WORKDEV_CRASH_AT=after_claim`` (say) makes the process SIGKILL itself when it reaches that point, exactly
as an OOM killer or a lost machine would. Unset (always, outside those tests) it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "WORKDEV_CRASH_AT"
CRASH_POINTS = frozenset({"after_claim", "mid_write", "after_commit", "after_remote_load", "after_resolve"})


def crash_point(name: str) -> None:
    """SIGKILL this process if ``WORKDEV_CRASH_AT`` names ``name``."""
    if name not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
