"""The local warehouse (the embedded default): day-partitioned Parquet files, queried with DuckDB."""

from __future__ import annotations

from datetime import date

import duckdb
from dagster import ConfigurableResource
from pydantic import Field

from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.ingest.local_store import LocalEventFiles, schema_problems
from workdev_pipeline.settings import workdev_home


def default_warehouse_dir() -> str:
    return str(workdev_home() / "warehouse")


class LocalWarehouseResource(ConfigurableResource):
    """Parquet under ``<data_dir>/platform_events/event_date=YYYY-MM-DD/``: nothing to start."""

    data_dir: str = Field(default="", description="where the files live; empty for $WORKDEV_HOME/warehouse")
    geoip_database: str = Field(default="", description="a MaxMind .mmdb file; empty for geoip2fast's data")
    consumer: str = Field(default="local", description="the name this warehouse's progress is kept under")
    retries: int = Field(default=3, description="retries of a transient failure before events are dead-lettered")
    backoff_seconds: float = Field(default=0.5, description="base of the exponential backoff (with jitter)")

    def files(self) -> LocalEventFiles:
        return LocalEventFiles(self.data_dir or default_warehouse_dir())

    def ingestor(self, database_url: str) -> Ingestor:
        return Ingestor(database_url, self.files(), consumer=self.consumer,
                        geoip_database=self.geoip_database or None, retries=self.retries,
                        backoff_seconds=self.backoff_seconds)

    def _day_glob(self, day: date) -> str | None:
        files = self.files().day_files(day)
        return str(self.files().day_dir(day) / "*.parquet") if files else None

    def day_counts(self, day: date) -> dict[str, int]:
        glob = self._day_glob(day)
        if glob is None:
            return {}
        rows = duckdb.execute("SELECT event_type, count(*) FROM read_parquet(?) GROUP BY 1", [glob]).fetchall()
        return dict(rows)

    def duplicate_event_ids(self, day: date, limit: int = 20) -> list[tuple[str, int]]:
        glob = self._day_glob(day)
        if glob is None:
            return []
        return duckdb.execute("SELECT event_id, count(*) FROM read_parquet(?) GROUP BY 1 HAVING count(*) > 1 "
                              "ORDER BY 2 DESC, 1 LIMIT ?", [glob, limit]).fetchall()

    def schema_problems(self, day: date) -> list[str]:
        return schema_problems(self.files(), day)

    def event_ids(self, day: date) -> set[str]:
        glob = self._day_glob(day)
        if glob is None:
            return set()
        return {r[0] for r in duckdb.execute("SELECT event_id FROM read_parquet(?)", [glob]).fetchall()}

    def query(self, sql: str, parameters: list | None = None) -> list[tuple]:
        """Run DuckDB SQL where ``platform_events`` is a view over every file (for checks, tests, notebooks)."""
        con = duckdb.connect()
        try:
            glob = self.files().glob().replace("'", "''")  # a path, not data; views take no parameters
            if self.files().days():
                con.execute(f"CREATE VIEW platform_events AS SELECT * FROM read_parquet('{glob}', "
                            "hive_partitioning = true)")
            return con.execute(sql, parameters or []).fetchall()
        finally:
            con.close()
