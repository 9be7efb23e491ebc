#!/usr/bin/env bash
# Start Dagster's webserver (127.0.0.1 only) and daemon for workdev-pipeline in the foreground, as a service
# manager would (see deploy/systemd/ for the systemd units, deploy/Procfile for honcho/foreman).
#
#   DAGSTER_HOME=/var/lib/workdev/dagster deploy/run-services.sh
#
# DAGSTER_HOME must hold the instance configuration: it is installed from deploy/dagster.yaml when missing.
# The storage and the project's database come from the environment (docs/deploy.md): DAGSTER_PG_HOST,
# DAGSTER_PG_PORT, DAGSTER_PG_USER, DAGSTER_PG_PASSWORD, DAGSTER_PG_DB; WORKDEV_DATABASE_URL and
# WORKDEV_LAKE_URI (the Delta lake's root: a path or s3://, gs://, az://; WORKDEV_LAKE_STORAGE_OPTIONS for its
# storage options). DAGSTER_WEBSERVER_PORT (default 3000) is the UI's port; WORKDEV_VENV (default .venv of the
# repository) the environment the project is installed in.
#
# SIGTERM or SIGINT stops both and exits 0 once they have stopped; if either dies on its own, the other is
# stopped too and the script exits with the dead one's status, so a supervisor restarts the pair.
set -euo pipefail
DEPLOY=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$DEPLOY")
VENV=${WORKDEV_VENV:-$REPO/.venv}
PORT=${DAGSTER_WEBSERVER_PORT:-3000}
: "${DAGSTER_HOME:?set DAGSTER_HOME to the directory of the instance (dagster.yaml)}"
for var in DAGSTER_PG_HOST DAGSTER_PG_PORT DAGSTER_PG_USER DAGSTER_PG_DB; do
    [ -n "${!var:-}" ] || { echo "run-services: $var is not set (see docs/deploy.md)" >&2; exit 2; }
done
export DAGSTER_PG_PASSWORD=${DAGSTER_PG_PASSWORD:-}
mkdir -p "$DAGSTER_HOME"
if [ ! -f "$DAGSTER_HOME/dagster.yaml" ]; then
    cp "$DEPLOY/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
    echo "run-services: installed $DAGSTER_HOME/dagster.yaml from deploy/dagster.yaml" >&2
fi
cd "$REPO"

# Children of a non-interactive shell start with SIGINT ignored: restore the default dispositions so both
# services stop on the signals forwarded to them.
env --default-signal=INT,TERM "$VENV/bin/dagster-webserver" -h 127.0.0.1 -p "$PORT" -w "$DEPLOY/workspace.yaml" &
webserver=$!
env --default-signal=INT,TERM "$VENV/bin/dagster-daemon" run -w "$DEPLOY/workspace.yaml" &
daemon=$!
echo "run-services: webserver pid $webserver on http://127.0.0.1:$PORT, daemon pid $daemon" >&2

stopping=0
helpers=""
stop() {
    stopping=1
    # their code servers (dagster api grpc) too: orphaned, they can outlive their parents
    helpers="$helpers $(pgrep -P "$webserver" 2>/dev/null | tr '\n' ' ') $(pgrep -P "$daemon" 2>/dev/null | tr '\n' ' ')"
    kill -TERM "$webserver" "$daemon" 2>/dev/null || true
}
trap stop TERM INT

status=0
wait -n "$webserver" "$daemon" || status=$?
if [ "$stopping" = 0 ]; then  # one of them died on its own: stop the other, report the failure
    echo "run-services: a service exited (status $status); stopping the other" >&2
    stop
    stopping=0
fi
wait "$webserver" 2>/dev/null || true
wait "$daemon" 2>/dev/null || true
for pid in $helpers; do kill -TERM "$pid" 2>/dev/null || true; done
if [ "$stopping" = 1 ]; then
    exit 0
fi
exit $(( status == 0 ? 1 : status ))
