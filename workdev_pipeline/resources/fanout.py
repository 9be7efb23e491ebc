"""Every store retention and GDPR erasure must reach as one resource: the lake first (the engines' erasure refresh
reads the lake's rows, so the lake is refreshed before them), then BigQuery and Redshift when enabled -- without
each governance asset naming every engine."""

from __future__ import annotations

from dagster import ConfigurableResource

from workdev_pipeline.resources.bigquery import BigQueryWarehouseResource
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.redshift import RedshiftWarehouseResource


class EnabledWarehouses(ConfigurableResource):
    """The lake and the remote engines that are enabled (``None``: not enabled)."""

    lake: LakeResource
    bigquery: BigQueryWarehouseResource | None = None
    redshift: RedshiftWarehouseResource | None = None

    def engines(self) -> list[LakeResource | BigQueryWarehouseResource | RedshiftWarehouseResource]:
        """The lake, then the enabled engines (in the order governance must reach them)."""
        return [self.lake, *self.remote()]

    def remote(self) -> list[BigQueryWarehouseResource | RedshiftWarehouseResource]:
        """The enabled remote engines."""
        return [w for w in (self.bigquery, self.redshift) if w is not None]

    def governed(self, database_url: str) -> list:  # -> list[GovernedWarehouse]
        """The governed stores, the lake first; each engine reads its erasure refresh from this lake (not from the
        one WORKDEV_LAKE_URI would name)."""
        from workdev_pipeline.governance.warehouse import governed_warehouses

        events = self.lake.events()
        return [*governed_warehouses([self.lake], database_url),
                *(w for engine in self.remote() for w in engine.governance(database_url, lake=events))]

    @classmethod
    def from_resources(cls, resources: dict[str, object]) -> EnabledWarehouses:
        """Built from a code location's resources (``lake``, ``bigquery``, ``redshift``)."""
        return cls(lake=resources["lake"], bigquery=resources.get("bigquery"), redshift=resources.get("redshift"))
