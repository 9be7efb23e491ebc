"""Real file-system faults for the lake: a tmpfs of its own, remounted read-only (EROFS) or shrunk to full (ENOSPC).

Running as root, chmod cannot make a directory unwritable (root ignores the mode bits); a read-only mount can, and so
can a full one. Mounting needs CAP_SYS_ADMIN: without it the tests using this skip, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


class LakeMount:
    """A tmpfs mounted at ``path``: :meth:`read_only`, :meth:`full`, :meth:`healthy`."""

    def __init__(self, path: Path, size_mb: int = 512) -> None:
        self.path = path
        self.size_mb = size_mb

    def _remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True, capture_output=True)

    def read_only(self) -> None:
        self._remount("ro")

    def full(self) -> None:
        """No room left: the size is cut to what is used (a few pages more, as tmpfs rounds)."""
        used = shutil.disk_usage(self.path).used
        self._remount(f"size={max(used, 4096)}")

    def healthy(self) -> None:
        self._remount(f"rw,size={self.size_mb}m")


@contextmanager
def lake_mount(path: Path, size_mb: int = 512) -> Iterator[LakeMount]:
    """A tmpfs at ``path`` for the test's lake, unmounted afterwards; skips the test when mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"a tmpfs cannot be mounted here (needs root / CAP_SYS_ADMIN, uid {os.getuid()}): "
                    f"{done.stderr.strip()}")
    try:
        yield LakeMount(path, size_mb)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
