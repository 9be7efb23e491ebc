"""The Dagster code location loads and validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dagster import Definitions

from workdev_pipeline.definitions import defs

REPO = Path(__file__).resolve().parent.parent


def test_definitions_object_loads() -> None:
    assert isinstance(defs(), Definitions)


def test_dagster_definitions_validate_passes() -> None:
    dagster = Path(sys.executable).with_name("dagster")
    for args in (["-m", "workdev_pipeline.definitions"], ["-w", "workspace.yaml"]):
        result = subprocess.run([str(dagster), "definitions", "validate", *args], cwd=REPO, capture_output=True,
                                text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
