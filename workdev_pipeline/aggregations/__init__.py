"""Hourly, daily and weekly aggregations of the warehouse's events (exact unique users and sessions, amounts
of financial events) into PostgreSQL's ``event_aggregations`` and the warehouse. Plain Python (no Dagster):
the assets in ``workdev_pipeline.assets.aggregations`` call it."""
