"""The Redshift warehouse through redshift-connector: connection settings (the password from the environment,
never logged), the schema, the S3 bucket and IAM role of the COPY path, and the remote-engine behaviour of
:class:`RemoteWarehouseMixin` (fed from the lake, governed in place)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from dagster import ConfigurableResource
from pydantic import Field

from workdev_pipeline.resources.remote import RemoteWarehouseMixin
from workdev_pipeline.warehouses.remote import RemoteAggregationTable, RemoteEventTable

if TYPE_CHECKING:  # the driver (and boto3 behind it) is imported when a connection is made
    import redshift_connector


class RedshiftWarehouseResource(ConfigurableResource, RemoteWarehouseMixin):
    """``platform_events`` in a Redshift schema: staging table + delete/insert merge in one transaction."""

    host: str = Field(description="the cluster's endpoint (REDSHIFT_HOST)")
    port: int = Field(default=5439)
    database: str = Field(default="workdev", description="REDSHIFT_DATABASE")
    user: str = Field(default="admin", description="REDSHIFT_USER")
    password: str = Field(default="", description="REDSHIFT_PASSWORD (from the environment: EnvVar)")
    ssl: bool = Field(default=True, description="TLS to the cluster")
    db_schema: str = Field(default="public", description="the schema holding platform_events")
    dialect: Literal["redshift", "postgres"] = Field(
        default="redshift", description="'postgres' only for the PostgreSQL stand-in the tests use")
    s3_bucket: str = Field(default="", description="with iam_role: load by COPY of the day's Parquet from S3")
    s3_prefix: str = Field(default="workdev/loads")
    iam_role: str = Field(default="", description="the role Redshift assumes to read the bucket")
    retries: int = Field(default=3, description="retries of a transient failure before a load fails (the next "
                                                "delivery redoes it)")
    backoff_seconds: float = Field(default=0.5, description="base of the exponential backoff (with jitter)")

    @property
    def engine(self) -> str:
        return "redshift"

    def connect(self, timeout_seconds: int | None = None) -> redshift_connector.Connection:
        import redshift_connector

        return redshift_connector.connect(host=self.host, port=self.port, database=self.database, user=self.user,
                                          password=self.password, ssl=self.ssl, timeout=timeout_seconds)

    def ping(self, timeout_seconds: float = 10.0) -> None:
        """Connect (and authenticate), then close."""
        self.connect(timeout_seconds=max(1, round(timeout_seconds))).close()

    def open_table(self) -> RemoteEventTable:
        from workdev_pipeline.warehouses.redshift import RedshiftEventTable

        return RedshiftEventTable(self.connect, schema=self.db_schema, dialect=self.dialect,
                                  s3_bucket=self.s3_bucket or None, s3_prefix=self.s3_prefix,
                                  iam_role=self.iam_role or None)

    def open_aggregations(self) -> RemoteAggregationTable:
        from workdev_pipeline.warehouses.redshift_aggregations import RedshiftAggregationTable

        return RedshiftAggregationTable(self.connect, schema=self.db_schema, dialect=self.dialect)
