"""``workdev-pipeline``: the command line of the event pipeline."""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import click

from workdev_pipeline.cli_errors import ReportingGroup, explain
from workdev_pipeline.errors import OperationFailed, PayloadTooDeep
from workdev_pipeline.lake_cli import lake_group
from workdev_pipeline.payloads import depth_message

WORKSPACE_YAML = """load_from:
  - python_module:
      module_name: workdev_pipeline.definitions
      location_name: workdev_pipeline
"""


def _url(database_url: str | None) -> str:
    """The URL given, else the configured or embedded database."""
    from workdev_pipeline.embedded import database_url as default_url

    return database_url or default_url()


_db_option = click.option(
    "--database-url", envvar="WORKDEV_DATABASE_URL", default=None,
    help="PostgreSQL URL (env WORKDEV_DATABASE_URL); unset: the embedded server under WORKDEV_HOME.",
)


@click.group(cls=ReportingGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log retries, warnings and progress details to stderr.")
def main(verbose: bool) -> None:
    """WorkDev event pipeline: the Postgres event store, demo traffic and the Dagster pipeline."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            force=True)


@main.command()
@_db_option
def migrate(database_url: str | None) -> None:
    """Apply pending schema migrations, sync the event catalog, create partitions ahead."""
    from workdev_pipeline.migrate import migrate as run_migrate

    report = run_migrate(_url(database_url))
    names = f": {', '.join(report.applied)}" if report.applied else ""
    click.echo(f"applied {len(report.applied)} migration(s){names}; {len(report.already_applied)} already applied")
    click.echo(f"event catalog: {report.event_types_added} added, {report.event_types_updated} updated, "
               f"{report.event_types_deactivated} deactivated; {report.partitions_created} partition(s) created")


@main.command()
@_db_option
@click.option("--users", default=2_000, show_default=True, help="Users to create.")
@click.option("--events", default=100_000, show_default=True, help="Events to emit.")
@click.option("--days", default=7.0, show_default=True, help="Spread the events over this many past days.")
@click.option("--seed", default=42, show_default=True, help="Random seed (same seed, same traffic).")
@click.option("--batch-size", default=10_000, show_default=True, help="Events per COPY batch.")
def demo(database_url: str | None, users: int, events: int, days: float, seed: int, batch_size: int) -> None:
    """Generate realistic, deterministic WorkDev traffic into the event store."""
    from workdev_pipeline.demo_loader import load_demo

    report = load_demo(_url(database_url), users=users, events=events, days=days, seed=seed,
                       batch_size=batch_size, progress=True)
    click.echo(f"{report.users} users, {report.events_emitted} events emitted "
               f"({report.events_inserted} new) in {report.seconds:.1f} s "
               f"({report.events_emitted / max(report.seconds, 1e-9):,.0f} events/s)")


@main.command()
@_db_option
@click.argument("event_type")
@click.option("--data", "event_data", default="{}", help="event_data as a JSON object.")
@click.option("--user-id", default=None, help="The acting user's UUID.")
@click.option("--entity-type", default=None)
@click.option("--entity-id", default=None)
@click.option("--event-id", default=None, help="Producer-supplied event id (re-sending it is a no-op).")
def emit(database_url: str | None, event_type: str, event_data: str, user_id: str | None,
         entity_type: str | None, entity_id: str | None, event_id: str | None) -> None:
    """Emit one event and print its event_id."""
    from workdev_pipeline.client import AnalyticsClient

    try:
        data = json.loads(event_data, parse_float=Decimal)  # amounts keep every digit
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
    except RecursionError:  # nested far past the limit the database would refuse anyway
        raise PayloadTooDeep(depth_message("event_data")) from None
    with AnalyticsClient(_url(database_url), source="cli") as client:
        click.echo(client.track(event_type, data, user_id=user_id, entity_type=entity_type, entity_id=entity_id,
                                event_id=event_id))


@main.command()
@_db_option
@click.option("--months-ahead", default=3, show_default=True)
def partitions(database_url: str | None, months_ahead: int) -> None:
    """Create the event store's monthly partitions ahead (and move stray rows out of the default one)."""
    import psycopg

    with psycopg.connect(_url(database_url), autocommit=True) as conn:
        created = conn.execute(
            "SELECT ensure_event_partitions(coalesce((SELECT min(\"timestamp\") FROM platform_event_store_default),"
            " now()), now() + make_interval(months => %s))", (months_ahead,)).fetchone()[0]
    click.echo(f"{created} partition(s) created")


@main.command("db-url")
def db_url() -> None:
    """Print the database URL in use (starting the embedded server when none is configured)."""
    click.echo(_url(None))


@main.command("stop-db")
def stop_db() -> None:
    """Stop the embedded PostgreSQL server."""
    from workdev_pipeline.embedded import stop_embedded

    click.echo("stopped" if stop_embedded() else "not running")


@main.command()
@_db_option
@click.option("--demo-events", default=50_000, show_default=True,
              help="Demo events to generate when the store is empty (0: none).")
def up(database_url: str | None, demo_events: int) -> None:
    """Set everything up on the embedded default: database, migrations, demo traffic."""
    import psycopg

    from workdev_pipeline.demo_loader import load_demo
    from workdev_pipeline.migrate import migrate as run_migrate

    url = _url(database_url)
    click.echo(f"database: {url}")
    report = run_migrate(url)
    click.echo(f"migrations: {len(report.applied)} applied, {len(report.already_applied)} already applied")
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM platform_event_store").fetchone()[0]
    if stored == 0 and demo_events > 0:
        demo_report = load_demo(url, users=max(100, demo_events // 25), events=demo_events, progress=True)
        click.echo(f"demo traffic: {demo_report.events_inserted} events from {demo_report.users} users")
    else:
        click.echo(f"event store holds {stored} events; no demo traffic generated")
    click.echo(f"ready at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC — try: workdev-pipeline emit user.login "
               f"--user-id {uuid.uuid4()} --data '{{\"method\": \"github\"}}'")


def _lake(lake_uri: str | None):  # -> LakeResource
    """The lake, feeding the engines BIGQUERY_ENABLED / REDSHIFT_ENABLED enable (a sweep registers them)."""
    from workdev_pipeline.engine_settings import enabled_engines
    from workdev_pipeline.resources.lake import LakeResource

    return LakeResource(uri=lake_uri or "", geoip_database=os.environ.get("WORKDEV_GEOIP_DATABASE", ""),
                        engines=enabled_engines())


def _ingestor(database_url: str | None, lake_uri: str | None):  # -> Ingestor
    """The ingestion engine of the lake."""
    return _lake(lake_uri).ingestor(_url(database_url))


def _recorded_load(kind: str, database_url: str | None, lake_uri: str | None, launch):  # -> LoadOutcome | None
    """The outcome of ``launch(runs)`` run on the Dagster instance (:mod:`workdev_pipeline.cli_runs`), read back
    from what the run recorded; None when no instance is configured (the caller then runs the engine directly)."""
    from workdev_pipeline.assets.ingestion import DEAD_LETTER_REPLAY, ENRICHED_EVENTS, LAKE_EVENTS
    from workdev_pipeline.assets.metadata import outcome_from_metadata
    from workdev_pipeline.cli_runs import configured_dagster_home, recording

    home = configured_dagster_home()
    if home is None:
        return None
    key = {"sweep": ENRICHED_EVENTS, "rebuild": LAKE_EVENTS, "replay": DEAD_LETTER_REPLAY}[kind]
    with recording(home, _url(database_url), lake_uri) as runs:
        run = launch(runs)
    click.echo(f"recorded in Dagster: run {run.run_id} of {run.job_name} (DAGSTER_HOME={home})")
    return outcome_from_metadata(kind, run.metadata(key))


def _report(outcome) -> None:
    days = ", ".join(f"{d}: {n:,}" for d, n in sorted(outcome.days.items())) or "none"
    click.echo(f"{outcome.kind} {outcome.status}: {outcome.events_loaded:,} loaded, {outcome.events_failed:,} "
               f"failed, {outcome.bytes_written:,} bytes in {outcome.seconds:.2f} s "
               f"({outcome.events_per_second:,.0f} events/s); days: {days}")
    for note in outcome.notes:
        click.echo(f"  {note}")
    if outcome.error:
        raise OperationFailed(f"{outcome.kind} failed: {outcome.error}; fix the cause, then run it again "
                              f"(`workdev-pipeline replay` sends dead-lettered events back)")


_lake_option = click.option(
    "--lake-uri", envvar="WORKDEV_LAKE_URI", default=None,
    help="The lake's root: a path, s3://, gs://, az:// (env WORKDEV_LAKE_URI); unset: $WORKDEV_HOME/lake.")


@main.command()
@_db_option
@_lake_option
def sweep(database_url: str | None, lake_uri: str | None) -> None:
    """Load the pending events into the lake now (what the sensor's runs do): one Delta commit. A transient fault
    (database restarting, lake storage read-only or full) is retried for WORKDEV_RETRY_SECONDS (60); past that, one
    line and exit status 1, the events left pending for the next sweep."""
    outcome = _recorded_load("sweep", database_url, lake_uri, lambda runs: runs.run("ingest_events")) \
        or _ingestor(database_url, lake_uri).sweep(run_id="cli")
    if outcome.status == "busy":
        raise OperationFailed("another sweep or rebuild holds the lake's lock: run the command again once it ends")
    if outcome.status == "failed":
        raise OperationFailed(f"sweep failed: {outcome.error}; its events stay pending, the next sweep resumes them")
    _report(outcome)


@main.command()
@_db_option
@_lake_option
@click.option("--from", "first", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First UTC day.")
@click.option("--to", "last", default=None, type=click.DateTime(["%Y-%m-%d"]), help="Last UTC day (default: --from).")
def rebuild(database_url: str | None, lake_uri: str | None, first: datetime, last: datetime | None) -> None:
    """Rebuild whole days of the lake from PostgreSQL in one commit (idempotent; other days untouched)."""
    last = last or first
    if last < first:
        raise click.BadParameter(f"--to {last:%Y-%m-%d} is before --from {first:%Y-%m-%d}")
    days = [(first + timedelta(days=i)).date() for i in range((last - first).days + 1)]
    from workdev_pipeline.assets.ingestion import LAKE_EVENTS

    recorded = _recorded_load("rebuild", database_url, lake_uri, lambda runs: runs.materialize_days(
        LAKE_EVENTS, [d.isoformat() for d in days]))
    if recorded:
        _report(recorded)
        return
    from tqdm import tqdm

    with tqdm(total=len(days), unit="day", desc="rebuild", disable=len(days) < 2) as bar:
        def advance(day: date, rows: int) -> None:
            bar.set_postfix_str(f"{day}: {rows:,} events")
            bar.update()

        outcome = _ingestor(database_url, lake_uri).rebuild(days, run_id="cli", on_day=advance)
    _report(outcome)


@main.command()
@_db_option
@_lake_option
def replay(database_url: str | None, lake_uri: str | None) -> None:
    """Send the dead letter (failed events) back through once the cause is fixed."""
    _report(_recorded_load("replay", database_url, lake_uri, lambda runs: runs.run("replay_failed_events"))
            or _ingestor(database_url, lake_uri).replay(run_id="cli"))


@main.command()
@_db_option
@_lake_option
@click.option("--engine", "engines", multiple=True, type=click.Choice(["bigquery", "redshift"]),
              help="The engine(s) to deliver to (default: every one enabled by BIGQUERY_ENABLED / REDSHIFT_ENABLED).")
def deliver(database_url: str | None, lake_uri: str | None, engines: tuple[str, ...]) -> None:
    """Load what the lake committed since each engine's last delivery into it now (what its sensor's runs do)."""
    from workdev_pipeline.engine_settings import bigquery_resource, redshift_resource, remote_engine_resources

    enabled = remote_engine_resources()
    chosen = engines or tuple(enabled)
    if not chosen:
        raise click.UsageError("no engine enabled: set BIGQUERY_ENABLED or REDSHIFT_ENABLED, or pass --engine")
    url, events = _url(database_url), _lake(lake_uri).events()
    for name in chosen:
        resource = (enabled.get(name) or (bigquery_resource() if name == "bigquery" else redshift_resource()))
        outcome = resource.process_config_and_initialize().deliver(url, events, run_id="cli")
        click.echo(f"{name}: {outcome.status} ({outcome.mode}) lake version {outcome.from_version} -> "
                   f"{outcome.to_version}: {outcome.rows:,} rows, {len(outcome.days_replaced)} day(s) replaced, "
                   f"{len(outcome.days_merged)} merged in {outcome.seconds:.2f} s")
        for note in outcome.notes:
            click.echo(f"  {note}")


@main.command()
@_db_option
@_lake_option
@click.option("--no-probe", is_flag=True, help="Do not contact the enabled engines (BigQuery, Redshift).")
def status(database_url: str | None, lake_uri: str | None, no_probe: bool) -> None:
    """The pipeline's health: backlog, sweeps, dead letter, loads, deliveries, queues -- and what to do about each
    problem. Exit status 0 unless a problem of error severity is found (then 1)."""
    from workdev_pipeline.engine_settings import remote_engine_resources
    from workdev_pipeline.status import Limits, diagnose, read_status, render

    probes = {name: None if no_probe else (lambda r=r: r.process_config_and_initialize().ping())
              for name, r in remote_engine_resources().items()}  # configured inside: a missing setting is reported
    found = read_status(_url(database_url), _lake(lake_uri).events(), probes)
    problems = diagnose(found, Limits.from_env())
    click.echo(render(found, problems))
    if any(p.severity == "error" for p in problems):
        sys.exit(1)


@main.command()
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Where the UI listens.")
@click.option("--port", default=3000, show_default=True)
def dev(database_url: str | None, host: str, port: int) -> None:
    """Start Dagster (webserver + daemon: the UI, the ingest sensor) on this database and the lake; the partitions
    start at WORKDEV_PARTITIONS_START, or when it is unset at the day of the store's earliest event; the ingest sensor
    ticks every WORKDEV_INGEST_INTERVAL_SECONDS (30)."""
    from workdev_pipeline.cli_runs import dev_dagster_home, prepare_dagster_home
    from workdev_pipeline.partitions_start import PARTITIONS_START_ENV, earliest_event_day, partitions_start
    from workdev_pipeline.settings import DATABASE_URL_ENV, ingest_interval_seconds

    interval = ingest_interval_seconds()  # a bad value is an input error here, not a code location failing to load
    env = dict(os.environ)
    env[DATABASE_URL_ENV] = _url(database_url)
    try:
        partitions_start()  # a malformed value is an input error here, not a code location failing to load
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not env.get(PARTITIONS_START_ENV, "").strip():
        env[PARTITIONS_START_ENV] = (earliest_event_day(env[DATABASE_URL_ENV]) or datetime.now(UTC).date()).isoformat()
    dagster_home = prepare_dagster_home(Path(env["DAGSTER_HOME"]) if env.get("DAGSTER_HOME")
                                        else dev_dagster_home())
    env["DAGSTER_HOME"] = str(dagster_home)
    workspace = dagster_home / "workspace.yaml"  # the code location, named workdev_pipeline wherever this runs
    workspace.write_text(WORKSPACE_YAML)
    dg = Path(sys.executable).with_name("dg")
    click.echo(f"Dagster UI at http://{host}:{port} (DAGSTER_HOME={dagster_home}, ingest sensor every {interval} s, "
               f"partitions from {env[PARTITIONS_START_ENV]}); Ctrl-C stops it")
    sys.stdout.flush()  # execve replaces the process: what is buffered would be lost
    os.execve(dg, [str(dg), "dev", "-w", str(workspace), "-h", host, "-p", str(port)], env)


@contextmanager
def _governed(database_url: str | None, lake_uri: str | None):  # -> (url, [GovernedWarehouse], lake, remote)
    """Every store of the events: the lake, and BigQuery/Redshift when BIGQUERY_ENABLED/REDSHIFT_ENABLED (their
    resources initialised and torn down as Dagster does)."""
    from workdev_pipeline.engine_settings import remote_engine_resources
    from workdev_pipeline.governance.warehouse import governed_warehouses

    url = _url(database_url)
    lake = _lake(lake_uri)
    with ExitStack() as stack:
        remote = [stack.enter_context(r.process_config_and_initialize_cm())
                  for r in remote_engine_resources().values()]
        governed = governed_warehouses([lake], url)
        governed += [w for engine in remote for w in engine.governance(url, lake=lake.events())]
        yield url, governed, lake, remote


@main.command()
@_db_option
@_lake_option
@click.option("--dry-run", is_flag=True, help="Only report what would go (per category, per store); change nothing.")
@click.option("--as-of", default=None, help="Apply the policy as of this instant (ISO 8601; naive means UTC). "
                                            "Default: now; never the future.")
def retention(database_url: str | None, lake_uri: str | None, dry_run: bool, as_of: str | None) -> None:
    """Apply the retention policy (the daily 02:00 UTC job): expired events leave PostgreSQL and every warehouse."""
    from workdev_pipeline.assets.governance import RETENTION_OP, RETENTION_RUNS
    from workdev_pipeline.cli_runs import configured_dagster_home, recording
    from workdev_pipeline.governance.common import parse_instant
    from workdev_pipeline.governance.retention import apply_retention

    home = configured_dagster_home()
    if home is not None:
        parse_instant(as_of)  # bad input is reported before anything runs
        config = {"dry_run": dry_run, "as_of": as_of or "", "reason": "workdev-pipeline retention"}
        with recording(home, _url(database_url), lake_uri) as runs:
            run = runs.run("apply_retention", run_config={"ops": {RETENTION_OP: {"config": config}}})
        click.echo(f"recorded in Dagster: run {run.run_id} of {run.job_name} (DAGSTER_HOME={home})")
        for message in run.messages:
            click.echo(message)
        metadata = run.metadata(RETENTION_RUNS)
        for name in ("postgres_events_by_category", "dead_letter_rows", "bookkeeping_rows", "ledger_hashes_expired"):
            if name in metadata:
                click.echo(f"  {name}: {json.dumps(metadata[name].value)}")
        return
    with _governed(database_url, lake_uri) as (url, warehouses, _, _):
        report = apply_retention(url, warehouses, as_of=as_of, dry_run=dry_run, run_id="cli")
    verb = "would go" if dry_run else "gone"
    click.echo(f"retention as of {report.as_of:%Y-%m-%d %H:%M:%S} UTC"
               + (" -- dry run, nothing changed" if dry_run else "") + f"; events {verb}:")
    for category, (days, cutoff) in report.policy.categories().items():
        stores = [f"postgres {report.postgres.get(category, 0):,}"]
        stores += [f"{w.consumer} {w.events.get(category, 0):,}" for w in report.warehouses]
        click.echo(f"  {category:<14} kept {days:>5,} days (older than {cutoff:%Y-%m-%d %H:%M}): {', '.join(stores)}")
    dropped = ", ".join(report.partitions_dropped) or "none"
    click.echo(f"  partitions {'to drop' if dry_run else 'dropped'}: {dropped}; rows "
               f"{'to delete' if dry_run else 'deleted'} in {len(report.partitions_trimmed)} partition(s)")
    bookkeeping = ", ".join(f"{t} {n:,}" for t, n in report.bookkeeping_rows.items()) or "none"
    click.echo(f"  dead letter: {report.dead_letter_rows:,} row(s); bookkeeping: {bookkeeping}")
    for w in report.warehouses:
        click.echo(f"  {w.consumer}: {len(w.days_removed):,} day(s) "
                   f"{'to remove' if dry_run else 'removed'}, {len(w.days_rewritten):,} "
                   f"{'to rewrite' if dry_run else 'rewritten'}")
    for note in report.notes:
        click.echo(f"  {note}")


@main.command()
@_db_option
@_lake_option
@click.option("--file-only", is_flag=True, help="Only file the requests and print their ids (the "
              "gdpr_erasure_requests_sensor runs them in Dagster).")
@click.option("--pending", is_flag=True, help="Run every open request (those the seed's GDPR statement implies "
              "included) instead of naming users.")
@click.argument("user_ids", nargs=-1, metavar="[USER_ID ...]")
def erase(database_url: str | None, lake_uri: str | None, file_only: bool, pending: bool,
          user_ids: tuple[str, ...]) -> None:
    """GDPR erasure: remove these users' personal data (by the catalog's marks) from PostgreSQL, its dead letter,
    other users' references, the lake and every enabled engine, then recompute the closed aggregation periods
    they were counted in."""
    from workdev_pipeline.assets.governance import ERASURE_OP
    from workdev_pipeline.cli_runs import configured_dagster_home, recording
    from workdev_pipeline.governance.erasure import erase_requests, file_erasure_requests, parse_user_ids
    from workdev_pipeline.governance.reaggregation import reaggregate_erasures

    if pending and user_ids:
        raise click.UsageError("give USER_IDs or --pending, not both")
    ids = [] if pending else parse_user_ids(user_ids)  # every id is checked before anything is touched
    url = _url(database_url)
    request_ids = file_erasure_requests(url, ids) if ids else None
    if file_only:
        click.echo(f"filed request(s) #{', #'.join(map(str, request_ids or []))}")
        return
    home = configured_dagster_home()
    if home is not None:  # run by request id: the run's config and tags name requests, never users
        config = {"request_ids": request_ids or [], "reason": "workdev-pipeline erase"}
        tags = {"workdev/erasure_requests": ",".join(map(str, request_ids))} if request_ids else {}
        with recording(home, url, lake_uri) as runs:
            run = runs.run("gdpr_erasure", run_config={"ops": {ERASURE_OP: {"config": config}}}, tags=tags)
        click.echo(f"recorded in Dagster: run {run.run_id} of {run.job_name} (DAGSTER_HOME={home})")
        for message in run.messages:
            click.echo(message)
        return
    with _governed(database_url, lake_uri) as (url, warehouses, lake, remote):
        batch = erase_requests(url, request_ids, warehouses)
        for result in batch.results:
            click.echo(result.summary)
        if batch.completed_earlier:
            click.echo(f"also finished the queued warehouse work of request(s) "
                       f"#{', #'.join(map(str, batch.completed_earlier))}")
        reaggregation = reaggregate_erasures(url, lake.location(), engines=remote)
        if reaggregation.request_ids:
            counts = ", ".join(f"{len(p)} {t}" for t, p in reaggregation.periods.items() if p) or "no closed"
            click.echo(f"aggregations recomputed: {counts} period(s) in {reaggregation.seconds:.2f} s")


main.add_command(lake_group)


def run() -> None:
    """Entry point: a failure is one ``error: …`` line on stderr, exit status 2 for bad input and 1 for a failed
    operation (the rules: :mod:`workdev_pipeline.cli_errors`); only a bug shows a traceback."""
    logging.captureWarnings(True)  # libraries' warnings and our retry logs: only with --verbose
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        main(standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:  # a usage error, or a CommandFailed of ReportingGroup
        failure = explain(exc)
        click.echo(failure.line, err=True)
        sys.exit(failure.status)


if __name__ == "__main__":
    run()
