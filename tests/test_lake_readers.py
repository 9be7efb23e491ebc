"""The lake read from outside the pipeline, as the README shows: DuckDB (through deltalake's pyarrow dataset -- the
delta extension cannot be downloaded here) and Polars (``read_delta`` / ``scan_delta``), each seeing one consistent
version of the table."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable
from lake_helpers import events, make_lake, user_ids

DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)


@pytest.fixture
def lake(tmp_path):
    """A lake of three commits: 300 + 200 events of DAY1, 120 of DAY2 (version 3 is the latest)."""
    lake = make_lake(tmp_path / "lake")
    users = user_ids(10)
    lake.append([events(DAY1, 300, users=users)], app_id="lake", version=1)
    lake.append([events(DAY1, 200, start=300, users=users), events(DAY2, 100, users=users)], app_id="lake", version=2)
    lake.append([events(DAY2, 20, start=100, users=users)], app_id="lake", version=3)
    return lake


def test_duckdb_reads_the_lake_through_deltalake(lake) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    dataset = DeltaTable(lake.uri).to_pyarrow_dataset()  # what docs/lake.md shows
    con.register("platform_events", dataset)
    by_day = con.execute("SELECT event_date, count(*), count(DISTINCT event_id) FROM platform_events "
                         "GROUP BY 1 ORDER BY 1").fetchall()
    assert by_day == [(DAY1, 500, 500), (DAY2, 120, 120)]
    # the schema as the seed's warehouse has it: JSON text, enrichment structs, UTC instants
    row = con.execute("SELECT json_extract_string(event_data, '$.method'), (event_data::JSON ->> 'n')::INT, "
                      "geo_location.country, device_info.browser, timestamp::DATE = event_date "
                      "FROM platform_events WHERE event_id = ?",
                      [events(DAY1, 1, start=5).column("event_id")[0].as_py()]).fetchall()
    assert row == [("github", 5, "FR", "Firefox", True)]
    # partition pruning: only DAY2's files are read for a DAY2 predicate
    assert con.execute("SELECT count(*) FROM platform_events WHERE event_date = ?", [DAY2]).fetchall() == [(120,)]

    # an older version is a consistent snapshot too (time travel), and so is the pipeline's own reader
    con.register("v1", DeltaTable(lake.uri, version=1).to_pyarrow_dataset())
    assert con.execute("SELECT count(*) FROM v1").fetchall() == [(300,)]
    snapshot = lake.snapshot()
    lake.append([events(DAY2, 5, start=500)], app_id="lake", version=4)
    assert snapshot.query("SELECT count(*) FROM platform_events") == [(620,)]  # taken before the append
    assert lake.snapshot().query("SELECT count(*) FROM platform_events") == [(625,)]


def test_polars_reads_the_lake(lake) -> None:
    frame = pl.read_delta(lake.uri)
    assert frame.height == 620 and frame["event_id"].n_unique() == 620
    assert frame.schema["geo_location"] == pl.Struct({"country": pl.String, "region": pl.String, "city": pl.String})
    assert frame.schema["timestamp"] == pl.Datetime("us", "UTC") and frame.schema["event_date"] == pl.Date

    per_day = (pl.scan_delta(lake.uri).filter(pl.col("event_date") == DAY2)
               .group_by("event_type").agg(pl.len().alias("n")).sort("event_type").collect())
    assert per_day["n"].sum() == 120
    assert dict(zip(per_day["event_type"], per_day["n"], strict=True)) == {"project.viewed": 40, "user.login": 80}
    methods = (pl.scan_delta(lake.uri).filter(pl.col("event_date") == DAY1)
               .select(pl.col("event_data").str.json_path_match("$.method")).unique().collect())
    assert methods.to_series().to_list() == ["github"]

    assert pl.read_delta(lake.uri, version=1).height == 300  # a pinned version
