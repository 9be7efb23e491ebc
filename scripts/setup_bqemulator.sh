#!/usr/bin/env bash
# Create .venv-bqemulator: the BigQuery emulator (PyPI `bqemulator`) that the BigQuery tests run against.
#
# It lives in its own virtual environment because it pins an older DuckDB (through the packaged spatial
# extension, duckdb-extension-spatial==<duckdb version>) than the project's. The emulator refuses to start
# without DuckDB's spatial extension and would download it from DuckDB's site, which this machine cannot
# reach: the extension comes from PyPI instead and is installed into a DuckDB home inside the venv
# (.venv-bqemulator/duckdb-home); `bin/bqemulator-local` runs the emulator with HOME pointing there.
# Idempotent: a no-op (well under a second) when the stamp matches the pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${BQEMULATOR_VENV:-.venv-bqemulator}
DUCKDB_VERSION=1.5.5
PACKAGES=(
    "bqemulator==1.4.0"
    "duckdb==${DUCKDB_VERSION}"
    "duckdb-extensions==${DUCKDB_VERSION}"
    "duckdb-extension-spatial==${DUCKDB_VERSION}"
    "duckdb-extension-avro==${DUCKDB_VERSION}"  # optional for the emulator; bundled so it never tries to download it
    "numpy>=1.26"
)
STAMP_TEXT="${PACKAGES[*]}"
STAMP="$VENV/.workdev-stamp"
HOME_DIR="$VENV/duckdb-home"
EXTENSION_DIR="$HOME_DIR/.duckdb/extensions/v${DUCKDB_VERSION}"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_TEXT" ] && [ -x "$VENV/bin/bqemulator-local" ] \
        && ls "$EXTENSION_DIR"/*/spatial.duckdb_extension >/dev/null 2>&1; then
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}"

mkdir -p "$HOME_DIR"
HOME="$(cd "$HOME_DIR" && pwd)" "$VENV/bin/python" - <<'PY'
import duckdb
from duckdb_extensions import import_extension

for name in ("spatial", "avro"):
    import_extension(name)
    duckdb.sql(f"LOAD {name}")
PY

cat > "$VENV/bin/bqemulator-local" <<'SH'
#!/usr/bin/env bash
# bqemulator with DuckDB's home inside this venv (where setup_bqemulator.sh installed the extensions).
here="$(cd "$(dirname "$0")/.." && pwd)"
HOME="$here/duckdb-home" exec "$here/bin/bqemulator" "$@"
SH
chmod +x "$VENV/bin/bqemulator-local"
echo "$STAMP_TEXT" > "$STAMP"
