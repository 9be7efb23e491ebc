"""The remote engines' ``event_aggregations`` tables: BigQuery (the real google-cloud-bigquery client against the
bqemulator) and Redshift (the real redshift_connector against the PostgreSQL stand-in). A range replace holds
exactly the given rows, touches no other type or period, is idempotent; bad rows are refused; a delivery sends what
the lake's aggregation table holds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from tests.bq_emulator import bigquery_emulator  # noqa: F401 (a fixture)
from tests.redshift_standin import redshift_database, redshift_standin  # noqa: F401 (fixtures)
from workdev_pipeline.aggregations.delivery import deliver_aggregations, load_ranges
from workdev_pipeline.aggregations.periods import DAILY, HOURLY, WEEKLY
from workdev_pipeline.lake.aggregations import AGGREGATION_SCHEMA, AggregationLake
from workdev_pipeline.lake.location import LakeLocation
from workdev_pipeline.warehouses.bigquery import emulator_client
from workdev_pipeline.warehouses.bigquery_aggregations import BigQueryAggregationTable
from workdev_pipeline.warehouses.redshift import statement_text
from workdev_pipeline.warehouses.redshift_aggregations import RedshiftAggregationTable, batch_sizes
from workdev_pipeline.warehouses.remote import RemoteAggregationTable

T0 = datetime(2026, 3, 14, tzinfo=UTC)
COMPUTED = datetime(2026, 3, 16, 1, 2, 3, 456789, tzinfo=UTC)


def rows(kind: str, spec: list[tuple[datetime, str, int, str | None]], step: timedelta) -> pa.Table:
    """Aggregate rows: (period_start, event_type, total_events, amount) each; users/sessions derived."""
    return pa.Table.from_pylist([{
        "aggregation_type": kind, "period_start": start, "period_end": start + step, "event_type": event_type,
        "event_category": event_type.split(".")[0], "total_events": total, "unique_users": max(1, total // 2),
        "unique_sessions": max(1, total // 3), "amount_sum": None if amount is None else Decimal(amount),
        "computed_at": COMPUTED} for start, event_type, total, amount in spec], schema=AGGREGATION_SCHEMA)


def expected(table: pa.Table) -> list[tuple]:
    return sorted((r["period_start"], r["event_type"], r["event_category"], r["total_events"], r["unique_users"],
                   r["unique_sessions"], r["amount_sum"], r["amount_overflow"]) for r in table.to_pylist())


def held(table: RemoteAggregationTable, kind: str, start: datetime, end: datetime) -> list[tuple]:
    return sorted((p.astimezone(UTC), t, c, int(n), int(u), int(s), None if a is None else Decimal(a), o)
                  for p, t, c, n, u, s, a, o in table.aggregation_rows(kind, start, end))


@pytest.fixture(params=["bigquery", "redshift"])
def table(request: pytest.FixtureRequest) -> Iterator[RemoteAggregationTable]:
    if request.param == "bigquery":
        emulator = request.getfixturevalue("bigquery_emulator")
        client = emulator_client(emulator.endpoint, emulator.project)
        dataset = f"agg_{uuid.uuid4().hex[:10]}"
        aggregations = BigQueryAggregationTable(client, dataset, retry_deadline=10)
        aggregations.ensure_table()
        yield aggregations
        client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
    else:
        aggregations = RedshiftAggregationTable(request.getfixturevalue("redshift_database"), dialect="postgres")
        aggregations.ensure_table()
        yield aggregations
    aggregations.close()


def test_a_range_replace_holds_exactly_its_rows_and_touches_nothing_else(table: RemoteAggregationTable) -> None:
    hour = timedelta(hours=1)
    day_rows = rows("daily", [(T0, "payment.completed", 40, "1234567.891234567")], timedelta(days=1))
    first = rows("hourly", [(T0 + i * hour, "job.posted", 5 + i, None) for i in range(24)]
                 + [(T0 + 3 * hour, "payment.completed", 7, "99.5")], hour)
    next_day = rows("hourly", [(T0 + 24 * hour, "job.posted", 3, None)], hour)
    assert table.replace_aggregations("daily", T0, T0 + timedelta(days=1), day_rows, "t-daily") == 1
    assert table.replace_aggregations("hourly", T0, T0 + 24 * hour, first, "t-first") == 25
    assert table.replace_aggregations("hourly", T0 + 24 * hour, T0 + 48 * hour, next_day, "t-next") == 1
    assert held(table, "hourly", T0, T0 + 24 * hour) == expected(first)

    # rebuilt: hours 0-11 only (one changed, one gone: the range holds exactly the new rows)
    again = rows("hourly", [(T0 + i * hour, "job.posted", 50 + i, None) for i in range(12)]
                 + [(T0 + 3 * hour, "proposal.submitted", 2, "10.000000001")], hour)
    for _ in range(2):  # idempotent
        assert table.replace_aggregations("hourly", T0, T0 + 24 * hour, again, "t-again") == 13
        assert held(table, "hourly", T0, T0 + 24 * hour) == expected(again)
    # other periods and types untouched, decimals exact
    assert held(table, "hourly", T0 + 24 * hour, T0 + 48 * hour) == expected(next_day)
    assert held(table, "daily", T0, T0 + timedelta(days=1)) == expected(day_rows)

    # a range without rows is emptied
    assert table.replace_aggregations("hourly", T0, T0 + 24 * hour, rows("hourly", [], hour), "t-empty") == 0
    assert held(table, "hourly", T0, T0 + 24 * hour) == []
    assert held(table, "hourly", T0 + 24 * hour, T0 + 48 * hour) == expected(next_day)


def test_rows_outside_the_range_or_of_another_type_are_refused(table: RemoteAggregationTable) -> None:
    hour = timedelta(hours=1)
    outside = rows("hourly", [(T0 + 30 * hour, "job.posted", 1, None)], hour)
    with pytest.raises(ValueError, match="outside"):
        table.replace_aggregations("hourly", T0, T0 + 24 * hour, outside, "bad-range")
    with pytest.raises(ValueError, match="aggregation types"):
        table.replace_aggregations("daily", T0, T0 + 24 * hour, rows("hourly", [(T0, "job.posted", 1, None)], hour),
                                   "bad-type")
    with pytest.raises(ValueError, match="empty aggregation range"):
        table.replace_aggregations("hourly", T0, T0, rows("hourly", [], hour), "bad-empty")


def test_a_delivery_sends_exactly_what_the_lake_holds(table: RemoteAggregationTable, tmp_path: Path) -> None:
    lake = AggregationLake(LakeLocation.from_env(str(tmp_path / "lake")))
    hour, end = timedelta(hours=1), T0 + timedelta(days=1)
    first = rows("hourly", [(T0 + i * hour, "job.posted", 5 + i, None) for i in range(24)]
                 + [(T0 + 3 * hour, "payment.completed", 7, "1234567.891234567")], hour)
    lake.replace_periods(HOURLY, T0, end, first)
    lake.replace_periods(DAILY, T0, end, rows("daily", [(T0, "job.posted", 500, None)], timedelta(days=1)))
    sent = deliver_aggregations(lake, table, HOURLY, T0, end, retries=0)
    assert (sent.rows, sent.loads, sent.periods, sent.periods_with_rows) == (25, 1, 24, 24)
    assert sent.per_period == {T0 + i * hour: 2 if i == 3 else 1 for i in range(24)}  # each period's own rows
    assert held(table, "hourly", T0, end) == expected(first) and held(table, "daily", T0, end) == []
    # the lake's range rebuilt with fewer rows: the next delivery leaves the engine exactly those
    fewer = first.slice(0, 12)
    lake.replace_periods(HOURLY, T0, end, fewer)
    assert deliver_aggregations(lake, table, HOURLY, T0, end, retries=0).rows == 12
    assert held(table, "hourly", T0, end) == expected(fewer)


def test_load_ranges_and_batches() -> None:
    assert load_ranges(HOURLY, T0, T0 + timedelta(days=40)) == [
        (T0, T0 + timedelta(days=31)), (T0 + timedelta(days=31), T0 + timedelta(days=40))]
    monday = datetime(2026, 3, 9, tzinfo=UTC)
    assert load_ranges(WEEKLY, monday, monday + timedelta(weeks=9)) == [
        (monday, monday + timedelta(weeks=4)), (monday + timedelta(weeks=4), monday + timedelta(weeks=8)),
        (monday + timedelta(weeks=8), monday + timedelta(weeks=9))]
    assert load_ranges(DAILY, T0, T0 + timedelta(days=1)) == [(T0, T0 + timedelta(days=1))]
    assert list(batch_sizes(1_300)) == [512, 512, 256, 16, 4]
    assert sum(batch_sizes(7)) == 7 and list(batch_sizes(0)) == []


def test_redshift_ddl_of_the_aggregations() -> None:
    production = statement_text("create_aggregations_table", "redshift")
    standin = statement_text("create_aggregations_table", "postgres")
    assert "DISTSTYLE ALL" in production and "SORTKEY (aggregation_type, period_start)" in production
    assert "ENCODE" not in standin and "NUMERIC(38, 9)" in standin
    names = [line.split()[0] for line in standin.splitlines()[1:-1]]
    assert names == AGGREGATION_SCHEMA.names


def test_a_table_older_than_amount_overflow_gains_it_and_holds_amounts_exactly_or_flagged(
        table: RemoteAggregationTable) -> None:
    older_schema = pa.schema([f for f in AGGREGATION_SCHEMA if f.name != "amount_overflow"])
    if isinstance(table, BigQueryAggregationTable):
        BigQueryAggregationTable(table.client, table.dataset, table="older", schema=older_schema,
                                 retry_deadline=10).ensure_table()
        table = BigQueryAggregationTable(table.client, table.dataset, table="older", retry_deadline=10)
    else:  # the stand-in's table as it was created before the column existed
        with table._transaction() as cursor:
            cursor.execute(f"ALTER TABLE {table._table} DROP COLUMN amount_overflow")
    table.ensure_table()
    day = timedelta(days=1)
    widest = "99999999999999999999999999999.999999999"  # DECIMAL(38, 9)'s largest
    spec = [(T0, "payment.completed", 4, widest), (T0, "milestone.approved", 2, "1180604264618626192558.890000001"),
            (T0, "project.created", 3, None)]
    sent = rows("daily", spec, day).set_column(
        AGGREGATION_SCHEMA.get_field_index("amount_overflow"), "amount_overflow", pa.array([False, False, True]))
    assert table.replace_aggregations("daily", T0, T0 + day, sent, "t-older") == 3
    assert held(table, "daily", T0, T0 + day) == expected(sent)
    assert {r[1]: (r[6], r[7]) for r in held(table, "daily", T0, T0 + day)}["project.created"] == (None, True)
