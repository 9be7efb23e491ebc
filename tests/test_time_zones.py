"""The lake's DuckDB readers draw days in UTC whatever the machine's zone (``.ci/run``'s non-UTC lane runs this,
with the ingest and aggregation tests, under ``TZ=America/New_York``)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from lake_helpers import events, make_lake

from workdev_pipeline.lake.aggregations import AggregationLake

DAY = date(2026, 3, 1)


def test_the_lake_readers_see_utc_days(tmp_path) -> None:
    lake = make_lake(tmp_path / "lake")
    lake.append([events(DAY, 100)], app_id="lake", version=1)  # 00:00:00 to 00:01:39 UTC: the day before in New York
    snapshot = lake.snapshot()
    assert snapshot.query('SELECT count(*) FROM platform_events WHERE CAST("timestamp" AS DATE) = event_date') \
        == [(100,)]
    midnight = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    assert snapshot.query('SELECT DISTINCT date_trunc(\'day\', "timestamp") FROM platform_events') == [(midnight,)]
    aggregations = AggregationLake(lake.location)
    assert aggregations.query("SELECT current_setting('TimeZone')") == [("UTC",)]
