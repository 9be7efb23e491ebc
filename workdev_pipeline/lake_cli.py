"""``workdev-pipeline lake …``: the lake's own commands -- importing an old Parquet warehouse, maintenance.

Registered in :mod:`workdev_pipeline.cli` with ``main.add_command(lake_group)``, whose entry point reports every
failure as one ``error: …`` line (:mod:`workdev_pipeline.cli_errors`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from workdev_pipeline.cli_errors import ReportingGroup


def _database_url(database_url: str | None, no_lock: bool) -> str | None:
    """The URL whose advisory lock serialises lake writers (None with ``--no-lock``)."""
    if no_lock:
        return None
    if database_url:
        return database_url
    from workdev_pipeline.embedded import database_url as default_url

    return default_url()


def _lake(lake_uri: str | None):  # -> EventLake
    from workdev_pipeline.lake.events import EventLake
    from workdev_pipeline.lake.location import LakeLocation

    return EventLake(LakeLocation.from_env(lake_uri))


_db_option = click.option(
    "--database-url", envvar="WORKDEV_DATABASE_URL", default=None,
    help="PostgreSQL whose advisory lock serialises the lake's writers (env WORKDEV_DATABASE_URL; unset: the "
         "embedded server under WORKDEV_HOME).")
_no_lock_option = click.option(
    "--no-lock", is_flag=True,
    help="Do not take the lake writers' lock (only when nothing else writes the lake: no sensor, no schedule).")
_lake_option = click.option(
    "--lake-uri", envvar="WORKDEV_LAKE_URI", default=None,
    help="The lake's root: a path, s3://, gs://, az:// (env WORKDEV_LAKE_URI; unset: $WORKDEV_HOME/lake).")
_consumer_option = click.option("--consumer", default="lake", show_default=True,
                                help="The lake's consumer name (its writer lock is keyed by it).")


@click.group("lake", cls=ReportingGroup)
def lake_group() -> None:
    """The lake (Delta tables at WORKDEV_LAKE_URI): import an old warehouse, maintain the events table."""


@lake_group.command("import")
@click.argument("directory", type=click.Path(file_okay=False, path_type=str))
@_db_option
@_no_lock_option
@_lake_option
@_consumer_option
@click.option("--days-per-commit", default=31, show_default=True, type=click.IntRange(min=1),
              help="Days replaced per Delta commit.")
@click.option("--only-missing", is_flag=True, help="Leave the days the lake holds already as they are.")
def import_command(directory: str, database_url: str | None, no_lock: bool, lake_uri: str | None, consumer: str,
                   days_per_commit: int, only_missing: bool) -> None:
    """Import an old Parquet warehouse DIRECTORY (DIRECTORY/platform_events/event_date=YYYY-MM-DD/*.parquet) into the
    lake: each batch of days one predicate overwrite of exactly those days (re-running gives the same table)."""
    from workdev_pipeline.lake.migration import find_days, import_warehouse

    find_days(directory)  # bad input is reported before any connection or lake is touched
    result = import_warehouse(directory, _lake(lake_uri), database_url=_database_url(database_url, no_lock),
                              consumer=consumer, days_per_commit=days_per_commit, only_missing=only_missing)
    click.echo(result.summary())
    for note in result.notes:
        click.echo(f"  {note}")


@lake_group.command("maintain")
@_db_option
@_no_lock_option
@_lake_option
@_consumer_option
@click.option("--vacuum-retention-hours", default=None, type=click.FloatRange(min=0),
              help="Keep files removed from the table for this long (readers of older versions); unset: the "
                   "table's delta.deletedFileRetentionDuration (7 days unless set).")
@click.option("--target-file-mb", default=None, type=click.IntRange(min=1),
              help="Size compacted files aim at (MiB); unset: the lake's layout, FILE_ROWS rows per file in time "
                   "order (see docs/lake.md).")
@click.option("--since-days", default=0, show_default=True, type=click.IntRange(min=0),
              help="Compact only days from this many days ago on (0: every day with small files).")
@click.option("--z-order/--no-z-order", default=False, show_default=True,
              help="Rewrite the days z-ordered by user_id (measured not to pay; see docs/lake.md).")
def maintain_command(database_url: str | None, no_lock: bool, lake_uri: str | None, consumer: str,
                     vacuum_retention_hours: float | None, target_file_mb: int | None, since_days: int,
                     z_order: bool) -> None:
    """Compact the events table's small files, vacuum, write a checkpoint and clean the log (the hourly job)."""
    from workdev_pipeline.lake.maintenance import maintain

    since = (datetime.now(UTC) - timedelta(days=since_days)).date() if since_days else None
    result = maintain(_lake(lake_uri), vacuum_retention_hours=vacuum_retention_hours,
                      database_url=_database_url(database_url, no_lock), consumer=consumer,
                      target_size=None if target_file_mb is None else target_file_mb * 1024 * 1024, since=since,
                      z_order=z_order)
    click.echo(result.summary())
    for note in result.notes:
        click.echo(f"  {note}")
