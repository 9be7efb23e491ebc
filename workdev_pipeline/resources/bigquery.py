"""The BigQuery warehouse: project, location and a base64 service-account key (the settings dagster-gcp's resource
had, without importing dagster-gcp and its Google client libraries each time the code location loads), the dataset
and table of the events, an optional API endpoint (an emulator, with anonymous credentials), and the remote-engine
behaviour of :class:`RemoteWarehouseMixin` (fed from the lake, governed in place). The client library is imported
when a client is built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

from workdev_pipeline.resources.remote import RemoteWarehouseMixin
from workdev_pipeline.warehouses.remote import RemoteAggregationTable, RemoteEventTable

if TYPE_CHECKING:
    from google.cloud import bigquery


class BigQueryWarehouseResource(ConfigurableResource, RemoteWarehouseMixin):
    """``platform_events`` in a BigQuery dataset, partitioned by DATE(timestamp), loaded by Parquet load jobs."""

    project: str | None = Field(default=None, description="the project the client acts for (BIGQUERY_PROJECT_ID); "
                                                          "unset: the key's project, else the environment's")
    location: str | None = Field(default=None, description="default location of jobs and datasets "
                                                           "(BIGQUERY_LOCATION)")
    gcp_credentials: str | None = Field(default=None, description="a base64 service-account key "
                                                                  "(BIGQUERY_CREDENTIALS, from the environment: "
                                                                  "EnvVar); unset: the environment's default "
                                                                  "credentials")

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

    def client(self) -> bigquery.Client:
        """A client for the project: the emulator's when ``api_endpoint`` is set, else one with the key's
        credentials (decoded in memory, never written to a file) or, without a key, the environment's."""
        from workdev_pipeline.warehouses.bigquery import emulator_client, service_client

        if self.api_endpoint:
            return emulator_client(self.api_endpoint, self.project or "workdev", location=self.location)
        return service_client(self.project, location=self.location, key=self.gcp_credentials)

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
