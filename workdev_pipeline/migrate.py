"""Bring a database to the current schema: apply ``sql/migrations/NNNN_*.sql`` in order, record each with
its checksum, refuse to run when an applied file was edited, then sync the event catalog and make sure
the event store's monthly partitions exist ahead of time.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from workdev_pipeline import catalog
from workdev_pipeline.errors import MigrationError
from workdev_pipeline.settings import MIGRATIONS_DIR
from workdev_pipeline.sql_files import query

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x57444D47  # 'WDMG': serialises concurrent migrate runs on one database

#: Months of partitions kept ready behind and ahead of the current one.
PARTITION_MONTHS_BEHIND = 1
PARTITION_MONTHS_AHEAD = 3


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)
    event_types_added: int = 0
    event_types_updated: int = 0
    event_types_deactivated: int = 0
    partitions_created: int = 0


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order; a misnamed or duplicated version is an error."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    migrations: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_words.sql")
        version = match.group(1)
        if version in migrations:
            raise MigrationError(f"two migrations share version {version}: {migrations[version].name}, {path.name}")
        migrations[version] = Migration(version, path.name, path, path.read_text())
    return [migrations[v] for v in sorted(migrations)]


def migrate(conninfo: str, directory: Path = MIGRATIONS_DIR) -> MigrationReport:
    """Apply what is pending, then sync the catalog and partitions. Safe to run any number of times."""
    migrations = discover(directory)
    report = MigrationReport()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(query("create_schema_migrations"))
            applied = {v: (n, c) for v, n, c in conn.execute("SELECT version, name, checksum FROM schema_migrations")}
            _refuse_drift(migrations, applied)
            for m in migrations:
                if m.version in applied:
                    report.already_applied.append(m.name)
                    continue
                with conn.transaction():
                    conn.execute(m.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (m.version, m.name, m.checksum),
                    )
                report.applied.append(m.name)
            with conn.transaction():
                _sync_catalog(conn, report)
            report.partitions_created = conn.execute(
                "SELECT ensure_event_partitions(now() - make_interval(months => %s),"
                " now() + make_interval(months => %s))",
                (PARTITION_MONTHS_BEHIND, PARTITION_MONTHS_AHEAD)).fetchone()[0]
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return report


def _refuse_drift(migrations: list[Migration], applied: dict[str, tuple[str, str]]) -> None:
    on_disk = {m.version: m for m in migrations}
    problems = []
    for version, (name, checksum) in sorted(applied.items()):
        m = on_disk.get(version)
        if m is None:
            problems.append(f"{name} was applied but is missing from {MIGRATIONS_DIR}")
        elif m.checksum != checksum:
            problems.append(f"{m.name} was edited after it was applied (checksum {checksum[:12]} → {m.checksum[:12]})")
    if problems:
        raise MigrationError(
            "refusing to migrate: " + "; ".join(problems) + ". Applied migrations are immutable: restore the "
            "file and put the change in a new migration."
        )


def _sync_catalog(conn: psycopg.Connection, report: MigrationReport) -> None:
    rows = catalog.event_schema_rows()
    for row in rows:
        result = conn.execute(
            query("sync_event_schema"),
            {**row, "json_schema": Jsonb(row["json_schema"])},
        ).fetchone()
        if result is not None:
            if result[0]:
                report.event_types_added += 1
            else:
                report.event_types_updated += 1
    gone = conn.execute(query("deactivate_unlisted_event_types"), {"event_types": [r["event_type"] for r in rows]})
    report.event_types_deactivated = gone.rowcount
