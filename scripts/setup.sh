#!/usr/bin/env bash
# Create .venv (if missing) and install the project with its test extras from pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# pip 23 backtracks for minutes on the Dagster family: upgrade pip first (the family is pinned together).
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
