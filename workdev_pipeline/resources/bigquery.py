"""The BigQuery warehouse: dagster-gcp's ``BigQueryResource`` (project, location, base64 credentials) with the
dataset and table of the events, an optional API endpoint (an emulator, with anonymous credentials), and the
remote-engine behaviour of :class:`RemoteWarehouseMixin` (fed from the lake, governed in place)."""

from __future__ import annotations

from dagster_gcp import BigQueryResource
from pydantic import Field

from workdev_pipeline.resources.remote import RemoteWarehouseMixin
from workdev_pipeline.warehouses.remote import RemoteAggregationTable, RemoteEventTable


class BigQueryWarehouseResource(BigQueryResource, RemoteWarehouseMixin):
    """``platform_events`` in a BigQuery dataset, partitioned by DATE(timestamp), loaded by Parquet load jobs."""

    dataset: str = Field(default="workdev_events", description="the dataset (BIGQUERY_DATASET_ID)")
    table_name: str = Field(default="platform_events", description="the events table")
    api_endpoint: str = Field(default="", description="an API endpoint other than Google's (an emulator: "
                                                      "anonymous credentials are used); empty for BigQuery")
    retry_deadline_seconds: float = Field(default=60.0, description="how long the client retries a call itself "
                                                                    "before the engine's own retries take over")
    retries: int = Field(default=3, description="retries of a transient failure before a load fails (the next "
                                                "delivery redoes it)")
    backoff_seconds: float = Field(default=0.5, description="base of the exponential backoff (with jitter)")

    @property
    def engine(self) -> str:
        return "bigquery"

    def get_object_to_set_on_execution_context(self) -> BigQueryWarehouseResource:
        """``context.resources.bigquery`` is this resource (dagster-gcp's sets a client there instead)."""
        return self

    def client(self):  # -> google.cloud.bigquery.Client
        """A client for the project: the emulator's when ``api_endpoint`` is set, else dagster-gcp's (which
        reads the base64 credentials, when given)."""
        from workdev_pipeline.warehouses.bigquery import emulator_client

        if self.api_endpoint:
            return emulator_client(self.api_endpoint, self.project or "workdev", location=self.location)
        with self.get_client() as client:  # the credentials are read when the client is built
            return client

    def ping(self, timeout_seconds: float = 10.0) -> None:
        """Read the dataset's metadata (a dataset not created yet, before the first delivery, is no error)."""
        from google.api_core.exceptions import NotFound
        from google.api_core.retry import Retry

        client = self.client()
        try:
            client.get_dataset(self.dataset, retry=Retry(timeout=timeout_seconds), timeout=timeout_seconds)
        except NotFound:
            pass
        finally:
            client.close()

    def open_table(self) -> RemoteEventTable:
        from workdev_pipeline.warehouses.bigquery import BigQueryEventTable

        return BigQueryEventTable(self.client(), self.dataset, table=self.table_name, location=self.location,
                                  retry_deadline=self.retry_deadline_seconds)

    def open_aggregations(self) -> RemoteAggregationTable:
        from workdev_pipeline.warehouses.bigquery_aggregations import BigQueryAggregationTable

        return BigQueryAggregationTable(self.client(), self.dataset, location=self.location,
                                        retry_deadline=self.retry_deadline_seconds)
