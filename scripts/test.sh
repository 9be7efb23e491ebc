#!/usr/bin/env bash
# One command to run the tests: install, lint, then pytest against a real PostgreSQL
# (WORKDEV_TEST_ADMIN_URL, else 127.0.0.1:5432 if it answers, else an embedded server the tests start).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_bqemulator.sh   # the BigQuery emulator the engine tests start, in a venv of its own
# the UI tests drive Debian's Chromium (Playwright never downloads a browser here)
if ! command -v "${WORKDEV_CHROMIUM:-chromium}" >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
