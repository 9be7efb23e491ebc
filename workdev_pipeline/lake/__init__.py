"""The lake: the enriched events and their aggregations as Delta Lake tables (delta-rs) at ``WORKDEV_LAKE_URI``."""

from workdev_pipeline.lake.events import LAKE_SCHEMA, EventLake, LakeCommit
from workdev_pipeline.lake.location import LakeLocation

__all__ = ["LAKE_SCHEMA", "EventLake", "LakeCommit", "LakeLocation"]
