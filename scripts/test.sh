#!/usr/bin/env bash
# One command to run the tests: install, lint, then pytest against a real PostgreSQL
# (WORKDEV_TEST_ADMIN_URL, else 127.0.0.1:5432 if it answers, else an embedded server the tests start).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_bqemulator.sh   # the BigQuery emulator the engine tests start, in a venv of its own
# apt-get, waiting (up to APT_LOCK_WAIT seconds, 5 minutes by default) while another package manager holds its lock:
# apt's DPkg::Lock::Timeout alone does not cover every lock on every apt version (`apt-get update`), hence the retries
apt_get() {
    local start=$SECONDS limit=${APT_LOCK_WAIT:-300} out
    until out=$(apt-get -o DPkg::Lock::Timeout=10 "$@" 2>&1); do
        if ! grep -Eq 'Could not get lock|Unable to (lock|acquire)' <<<"$out" || ((SECONDS - start >= limit)); then
            printf '%s\n' "$out" >&2
            return 1
        fi
        echo "apt-get: another process holds the package manager's lock ($((SECONDS - start)) s of ${limit})" >&2
        sleep 5
    done
    printf '%s\n' "$out"
}
# the UI tests drive Debian's Chromium (Playwright never downloads a browser here)
if ! command -v "${WORKDEV_CHROMIUM:-chromium}" >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt_get update -q && DEBIAN_FRONTEND=noninteractive apt_get install -y -q chromium
fi
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
