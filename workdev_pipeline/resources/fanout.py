"""Every enabled warehouse as one resource: what retention and GDPR erasure must reach (the local warehouse, and
BigQuery and Redshift when enabled), without each governance asset naming every engine."""

from __future__ import annotations

from dagster import ConfigurableResource

from workdev_pipeline.resources.bigquery import BigQueryWarehouseResource
from workdev_pipeline.resources.local import LocalWarehouseResource
from workdev_pipeline.resources.redshift import RedshiftWarehouseResource


class EnabledWarehouses(ConfigurableResource):
    """The local warehouse and the remote engines that are enabled (``None``: not enabled)."""

    local: LocalWarehouseResource
    bigquery: BigQueryWarehouseResource | None = None
    redshift: RedshiftWarehouseResource | None = None

    def engines(self) -> list[LocalWarehouseResource | BigQueryWarehouseResource | RedshiftWarehouseResource]:
        return [w for w in (self.local, self.bigquery, self.redshift) if w is not None]

    def remote(self) -> list[BigQueryWarehouseResource | RedshiftWarehouseResource]:
        """The enabled remote engines."""
        return [w for w in (self.bigquery, self.redshift) if w is not None]

    @classmethod
    def from_resources(cls, resources: dict[str, object]) -> EnabledWarehouses:
        """Built from a code location's resources (``warehouse``, ``bigquery``, ``redshift``)."""
        return cls(local=resources["warehouse"], bigquery=resources.get("bigquery"),
                   redshift=resources.get("redshift"))
