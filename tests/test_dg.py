"""``dg`` sees the code location as Dagster loads it: ``dg check defs`` and ``dg list defs`` pass and list exactly
what the definitions hold, and loading the code location prints no warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workdev_pipeline.assets.keys import LAKE_EVENTS
from workdev_pipeline.definitions import build_definitions

pytestmark = pytest.mark.slow  # each `dg` command loads the code location in a process of its own

REPO = Path(__file__).resolve().parent.parent
DG = Path(sys.executable).with_name("dg")
ENGINE_FLAGS = ("BIGQUERY_ENABLED", "REDSHIFT_ENABLED")


@pytest.fixture
def dg_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a fresh checkout: no engine enabled, a home of its own, this virtual environment."""
    for flag in ENGINE_FLAGS:
        monkeypatch.delenv(flag, raising=False)
    monkeypatch.setenv("WORKDEV_HOME", str(tmp_path))
    env = dict(os.environ, VIRTUAL_ENV=str(Path(sys.executable).parent.parent))
    return env


def _dg(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(DG), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, f"dg {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def test_dg_check_defs_passes(dg_env: dict[str, str]) -> None:
    done = _dg(dg_env, "check", "defs")
    assert "All definitions loaded successfully" in done.stdout + done.stderr


def test_dg_list_defs_lists_every_definition(dg_env: dict[str, str]) -> None:
    listed = json.loads(_dg(dg_env, "list", "defs", "--json").stdout)
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    assert {a["asset_key"] for a in listed["assets"]} == {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {c["key"] for c in listed["asset_checks"]} == {
        f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys}
    assert {j["name"] for j in listed["jobs"]} == {j.name for j in defs.resolve_all_job_defs()} - {"__ASSET_JOB"}
    assert {s["name"] for s in listed["sensors"]} == {s.name for s in defs.sensors or ()}
    assert {s["name"] for s in listed["schedules"]} == {s.name for s in defs.schedules or ()}
    assert LAKE_EVENTS.to_user_string() in {a["asset_key"] for a in listed["assets"]}


def test_loading_the_code_location_prints_no_warning(dg_env: dict[str, str]) -> None:
    """Every warning shown (``-W always``) while the code location is imported and its definitions are built."""
    code = ("import workdev_pipeline.definitions as d\n"
            "print(len(d.defs().resolve_asset_graph().get_all_asset_keys()))\n")
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=REPO, env=dg_env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) > 0
    assert "Warning" not in done.stderr, done.stderr
