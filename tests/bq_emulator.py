"""A local BigQuery emulator (PyPI ``bqemulator``, in ``.venv-bqemulator``) for the BigQuery tests.

``start_bqemulator`` runs ``scripts/setup_bqemulator.sh`` (a no-op when the venv is ready), starts the
emulator on free loopback ports in its own process group, and waits until its REST API answers. The
``bigquery_emulator`` fixture (session scope) wraps it; import it into a test module to use it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.waiting import WaitTimedOut, wait_until

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv-bqemulator"
SETUP = REPO / "scripts" / "setup_bqemulator.sh"
PROJECT = "workdev-test"
START_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class BigQueryEmulator:
    """A running emulator: ``endpoint`` is its REST API (``http://127.0.0.1:<port>``)."""

    process: subprocess.Popen
    endpoint: str
    project: str
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Terminate the emulator's process group (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def ensure_installed() -> Path:
    """The emulator's launcher, running the setup script first (quick when it is up to date)."""
    subprocess.run(["bash", str(SETUP)], check=True, cwd=REPO)
    return VENV / "bin" / "bqemulator-local"


def _answers(endpoint: str, project: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/bigquery/v2/projects/{project}/datasets", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_bqemulator(tmp_path: Path, project: str = PROJECT) -> BigQueryEmulator:
    """Start an ephemeral emulator on free ports; raises ``WaitTimedOut`` (with its log) when it does not answer."""
    launcher = ensure_installed()
    rest_port, grpc_port = free_port(), free_port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    log_path = tmp_path / "bqemulator.log"
    command = [str(launcher), "start", "--rest-host", "127.0.0.1", "--rest-port", str(rest_port),
               "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port), "--project", project,
               "--ephemeral", "--log-level", "warning", "--log-format", "console"]
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # its upload staging files stay under tmp_path
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=tmp_path, env=env, start_new_session=True)
    emulator = BigQueryEmulator(process, f"http://127.0.0.1:{rest_port}", project, log_path)
    try:
        wait_until(lambda: _answers(emulator.endpoint, project), "bqemulator's REST API to answer",
                   timeout=START_TIMEOUT, interval=0.2, context=emulator.log_tail,
                   gone=lambda: None if emulator.alive() else f"bqemulator exited ({process.returncode})")
    except WaitTimedOut:
        emulator.stop()
        raise
    return emulator


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    """One emulator for the session."""
    emulator = start_bqemulator(tmp_path_factory.mktemp("bqemulator"))
    try:
        yield emulator
    finally:
        emulator.stop()
