"""What every Delta table of the lake shares: its URI under the lake's root, opening it (None before its first
commit), creating it empty with its schema, partitioning and configuration (and adding the columns a newer schema
gained), its version, and vacuum."""

from __future__ import annotations

import os
import tempfile
from typing import ClassVar

import pyarrow as pa
from deltalake import DeltaTable, Schema
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
        """The table, created empty (schema, partitioning, configuration) when missing; a table created with an
        older ``SCHEMA`` gets the columns it lacks (schema evolution: one metadata commit, the columns added last and
        nullable, NULL in the rows already held; never drops)."""
        table = self.table()
        if table is None:
            DeltaTable.create(self.uri, schema=self.SCHEMA, partition_by=[self.PARTITION_COLUMN], mode="ignore",
                              configuration=self.CONFIGURATION, storage_options=self.storage_options)
            table = self.table()
            assert table is not None
        held = {f.name for f in table.schema().fields}
        missing = [f.with_nullable(True) for f in self.SCHEMA if f.name not in held]
        if missing:
            table.alter.add_columns(list(Schema.from_arrow(pa.schema(missing)).fields))
            table = self.table()
            assert table is not None
        return table

    def check_writable(self) -> None:
        """Raise the file system's own error (read-only, full, not permitted) before a write by delta-rs's Parquet
        writer (retention's deletes, compaction) starts, for a table on this machine: that writer, failing
        mid-write, lets object_store's ``BufWriter`` panic (``Already shut down``) on its runtime's threads -- one
        Rust panic message per thread on stderr, besides the error it returns. A table in object storage is left
        to the write (a probe proves little there)."""
        root = self.location.local_path(self.NAME)
        if root is None or not os.path.isdir(root):
            return
        fd, probe = tempfile.mkstemp(prefix="_write_probe_", dir=root)  # "_": never read as table data
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
            os.unlink(probe)

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
