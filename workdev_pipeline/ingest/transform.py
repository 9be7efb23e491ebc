"""One extracted batch -> validated, enriched warehouse rows, and the events that failed (the dead letter)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from workdev_pipeline.enrichment import DEVICE_INFO_TYPE, GEO_LOCATION_TYPE, GeoLocator, SchemaValidator, device_info
from workdev_pipeline.ingest.schema import warehouse_table


@dataclass
class Failures:
    """Events that cannot be loaded, column-wise (what ``record_failures.sql`` takes), by kind."""

    event_ids: list[str] = field(default_factory=list)
    timestamps: list[datetime] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.event_ids)

    def add(self, batch: pa.RecordBatch | pa.Table, mask: pa.Array, messages: list[str], kind: str) -> None:
        rows = batch.filter(mask)
        self.event_ids += rows.column("event_id").to_pylist()
        self.timestamps += rows.column("timestamp").to_pylist()
        self.event_types += rows.column("event_type").to_pylist()
        self.messages += messages
        self.kinds += [kind] * rows.num_rows

    def extend(self, other: Failures) -> None:
        for name in ("event_ids", "timestamps", "event_types", "messages", "kinds"):
            getattr(self, name).extend(getattr(other, name))

    def of_kind(self, kind: str) -> dict[str, list]:
        """The parameters of ``record_failures.sql`` for one error kind."""
        keep = [i for i, k in enumerate(self.kinds) if k == kind]
        return {"event_ids": [self.event_ids[i] for i in keep], "timestamps": [self.timestamps[i] for i in keep],
                "event_types": [self.event_types[i] for i in keep], "messages": [self.messages[i] for i in keep]}


class EventTransformer:
    """Validates each event against its type's schema and enriches the valid ones (geo, device)."""

    def __init__(self, validator: SchemaValidator, locator: GeoLocator) -> None:
        self.validator = validator
        self.locator = locator

    def transform(self, batch: pa.RecordBatch,
                  ingested_at: datetime | Callable[[pa.RecordBatch], pa.Array]) -> tuple[pa.Table, Failures]:
        """Valid rows in the warehouse schema, and the failures. ``ingested_at``: the instant the events were
        swept, or a function giving each row's (a rebuild restores the instants of the original sweeps)."""
        failures = Failures()
        errors = self.validator.validate(batch.column("event_type"), batch.column("event_data"))
        invalid = pc.is_valid(errors)
        if invalid.true_count:
            failures.add(batch, invalid, errors.filter(invalid).to_pylist(), "validation")
            batch = batch.filter(pc.invert(invalid))
        if callable(ingested_at):
            ingested_at = ingested_at(batch)
        try:
            return self._enrich(batch, ingested_at), failures
        except Exception:
            return self._enrich_row_by_row(batch, ingested_at, failures), failures

    def _enrich(self, batch: pa.RecordBatch, ingested_at: datetime | pa.Array) -> pa.Table:
        geo = self.locator.locate(batch.column("ip_address"))
        device = device_info(batch.column("user_agent"))
        return warehouse_table(batch, geo, device, ingested_at)

    def _enrich_row_by_row(self, batch: pa.RecordBatch, ingested_at: datetime | pa.Array,
                           failures: Failures) -> pa.Table:
        good: list[pa.Table] = []
        bad = [False] * batch.num_rows
        messages: list[str] = []
        for i in range(batch.num_rows):
            try:
                at = ingested_at.slice(i, 1) if isinstance(ingested_at, pa.Array) else ingested_at
                good.append(self._enrich(batch.slice(i, 1), at))
            except Exception as exc:
                bad[i] = True
                messages.append(f"enrichment failed: {type(exc).__name__}: {exc}"[:1000])
        if messages:
            failures.add(batch, pa.array(bad), messages, "enrichment")
        return pa.concat_tables(good) if good else warehouse_table(batch.slice(0, 0), pa.array([], GEO_LOCATION_TYPE),
                                                                   pa.array([], DEVICE_INFO_TYPE), datetime.now(UTC))
