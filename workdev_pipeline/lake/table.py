"""What every Delta table of the lake shares: its URI under the lake's root, opening it (None before its first
commit), creating it empty with its schema, partitioning and configuration, its version, and vacuum."""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from workdev_pipeline.lake.location import LakeLocation


class LakeTable:
    """One Delta table of the lake at ``location``; subclasses name it and declare its layout."""

    NAME: ClassVar[str]
    SCHEMA: ClassVar[pa.Schema]
    PARTITION_COLUMN: ClassVar[str]
    CONFIGURATION: ClassVar[dict[str, str]]

    def __init__(self, location: LakeLocation) -> None:
        self.location = location
        self.uri = location.table_uri(self.NAME)
        self.storage_options = dict(location.storage_options) or None

    def table(self, version: int | None = None) -> DeltaTable | None:
        """The table (at ``version``; the latest by default), or None before its first commit."""
        try:
            return DeltaTable(self.uri, version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def ensure(self) -> DeltaTable:
        """The table, created empty (schema, partitioning, configuration) when missing."""
        table = self.table()
        if table is None:
            DeltaTable.create(self.uri, schema=self.SCHEMA, partition_by=[self.PARTITION_COLUMN], mode="ignore",
                              configuration=self.CONFIGURATION, storage_options=self.storage_options)
            table = self.table()
            assert table is not None
        return table

    def version(self) -> int | None:
        table = self.table()
        return None if table is None else table.version()

    def vacuum(self, retention_hours: float = 0.0) -> list[str]:
        """Delete the data files no longer in the table for longer than ``retention_hours`` (0: every such file
        now; readers of older versions need them)."""
        table = self.table()
        if table is None:
            return []
        return table.vacuum(retention_hours=int(retention_hours), enforce_retention_duration=False, dry_run=False)
