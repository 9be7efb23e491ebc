"""Hourly, daily and weekly aggregations: against expectations computed here, in Python, from the events read
back from PostgreSQL; idempotent rebuilds; the lake's aggregation table (a Delta table any reader can read, one
commit per range replaced); the automation conditions evaluated for real; the client's view."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster import DagsterInstance, Definitions, evaluate_automation_conditions
from deltalake import DeltaTable

from workdev_pipeline.aggregations.engine import Aggregator
from workdev_pipeline.aggregations.periods import DAILY, HOURLY, WEEKLY, days_covering
from workdev_pipeline.assets.aggregations import lake_key, postgres_key
from workdev_pipeline.assets.partitions import closed_daily_partitions, hourly_partitions, weekly_partitions
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.demo_loader import load_demo
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake.aggregations import AGGREGATION_SCHEMA, AggregationLake
from workdev_pipeline.lake.events import EventLake
from workdev_pipeline.lake.location import LakeLocation
from workdev_pipeline.resources.lake import LakeResource

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
HOUR, DAY, WEEK = timedelta(hours=1), timedelta(days=1), timedelta(weeks=1)
PARTITIONS = {"hourly": hourly_partitions, "daily": closed_daily_partitions, "weekly": weekly_partitions}
GRANULARITIES = {"hourly": HOURLY, "daily": DAILY, "weekly": WEEKLY}


# -- fixtures ------------------------------------------------------------------------------------------------



@pytest.fixture
def monday() -> datetime:
    """Monday 00:00 UTC of last week: both weeks around it are closed (their partitions exist)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=today.weekday()) - WEEK


def load_traffic(db: str, monday: datetime) -> None:
    """3,000 demo events of 120 users in the 6 hours around ``monday`` 00:00: Sunday 21:00 to Monday 03:00, so
    users are active in several hours, on both days and in both weeks."""
    load_demo(db, users=120, events=3_000, days=0.25, seed=11, now=monday + 3 * HOUR - timedelta(seconds=1))


def run_ingest(defs: Definitions, instance: DagsterInstance) -> None:
    assert defs.resolve_job_def("ingest_events").execute_in_process(instance=instance).success


def materialize(defs: Definitions, instance: DagsterInstance, granularity: str, first: datetime,
                last: datetime) -> None:
    """Materialize the periods first..last (their starts) of one granularity in one run, as a backfill does."""
    g, partitions = GRANULARITIES[granularity], PARTITIONS[granularity]
    keys = [partitions.get_partition_key_for_timestamp(t.timestamp()) for t in (first, last)]
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[postgres_key(g), lake_key(g)],
        tags={RANGE_START: keys[0], RANGE_END: keys[1]})
    assert result.success
    periods = len(g.periods(first, last + g.step))
    for key in (postgres_key(g), lake_key(g)):  # one materialization per period and store
        events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
        assert len(events) == periods
        assert events[0].materialization.metadata["run"].value["periods"] == periods
        own = [e.materialization.metadata["rows_written"].value for e in events]  # each period its own rows
        assert sum(own) == events[0].materialization.metadata["run"].value["rows_written"]


# -- the expectation, computed independently ----------------------------------------------------------------


def period_start(granularity: str, ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    if granularity == "hourly":
        return ts.replace(minute=0, second=0, microsecond=0)
    day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if granularity == "daily" else day - timedelta(days=day.weekday())


def expected_rows(conn: psycopg.Connection, granularity: str, start: datetime, end: datetime) -> dict:
    """{(period_start, event_type): (category, events, unique users, unique sessions, amount)} from the
    processed events (every event not in the dead letter) of [start, end)."""
    amount_fields = dict(conn.execute(
        "SELECT event_type, amount_field FROM event_schemas WHERE amount_field IS NOT NULL").fetchall())
    acc: dict = defaultdict(lambda: {"category": None, "n": 0, "users": set(), "sessions": set(), "amount": None})
    for event_type, category, user_id, session_id, ts, data in conn.execute(
            "SELECT event_type, event_category, user_id::text, session_id::text, \"timestamp\", event_data::text "
            "FROM platform_event_store e WHERE \"timestamp\" >= %s AND \"timestamp\" < %s AND NOT EXISTS "
            "(SELECT 1 FROM event_failures f WHERE f.event_id = e.event_id AND f.resolved_at IS NULL)",
            (start, end)):
        row = acc[(period_start(granularity, ts), event_type)]
        row["category"] = category
        row["n"] += 1
        if user_id:
            row["users"].add(user_id)
        if session_id:
            row["sessions"].add(session_id)
        if event_type in amount_fields:
            amount = json.loads(data, parse_float=Decimal).get(amount_fields[event_type])
            row["amount"] = (row["amount"] or Decimal(0)) + (Decimal(amount) if amount is not None else 0)
    return {k: (v["category"], v["n"], len(v["users"]), len(v["sessions"]), v["amount"]) for k, v in acc.items()}


def postgres_rows(conn: psycopg.Connection, granularity: str, start: datetime, end: datetime) -> dict:
    rows = conn.execute(
        "SELECT period_start, period_end, event_type, event_category, total_events, unique_users, unique_sessions, "
        "amount_sum FROM event_aggregations WHERE aggregation_type = %s AND period_start >= %s AND period_start < %s",
        (granularity, start, end)).fetchall()
    step = {"hourly": HOUR, "daily": DAY, "weekly": WEEK}[granularity]
    assert all(r[1] - r[0] == step for r in rows)
    return {(r[0], r[2]): tuple(r[3:]) for r in rows}


def lake_rows(location: LakeLocation, granularity: str, start: datetime, end: datetime) -> dict:
    """The lake's aggregation rows, read with DuckDB (over the table's latest version)."""
    rows = AggregationLake(location).query(
        "SELECT period_start, event_type, event_category, total_events, unique_users, unique_sessions, amount_sum "
        "FROM event_aggregations WHERE aggregation_type = ? AND period_start >= ? AND period_start < ?",
        [granularity, start, end])
    return {(r[0].astimezone(UTC), r[1]): tuple(r[2:]) for r in rows}


def assert_all_match(conn: psycopg.Connection, location: LakeLocation, monday: datetime) -> None:
    """Every granularity, every period of the traffic: PostgreSQL's rows and the lake's equal the expectation."""
    for granularity, (start, end) in {"hourly": (monday - DAY, monday + DAY), "daily": (monday - DAY, monday + DAY),
                                      "weekly": (monday - WEEK, monday + WEEK)}.items():
        expected = expected_rows(conn, granularity, start, end)
        assert expected, granularity
        assert postgres_rows(conn, granularity, start, end) == expected, granularity
        assert lake_rows(location, granularity, start, end) == expected, granularity


def materialize_traffic_periods(defs: Definitions, instance: DagsterInstance, monday: datetime) -> None:
    materialize(defs, instance, "hourly", monday - DAY, monday + DAY - HOUR)  # 48 hours, one run
    materialize(defs, instance, "daily", monday - DAY, monday)
    materialize(defs, instance, "weekly", monday - WEEK, monday)


# -- tests ------------------------------------------------------------------------------------------------


def test_periods_are_utc_hours_days_and_monday_weeks() -> None:
    sunday_late = datetime(2026, 11, 22, 23, 59, 59, tzinfo=UTC)
    assert WEEKLY.floor(sunday_late) == datetime(2026, 11, 16, tzinfo=UTC)  # a Monday
    assert WEEKLY.floor(sunday_late + timedelta(seconds=1)) == datetime(2026, 11, 23, tzinfo=UTC)
    assert HOURLY.periods(datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 23, 3, tzinfo=UTC))[-1].hour == 2
    assert days_covering(datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))[-1] == \
        date(2026, 11, 22)
    assert [c for c in DAILY.chunks(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC))] == [
        (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC)),
        (datetime(2026, 11, 8, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC))]
    with pytest.raises(ValueError, match="does not start"):
        WEEKLY.periods(datetime(2026, 11, 17, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))
    key = weekly_partitions.get_partition_key_for_timestamp(sunday_late.timestamp())
    assert key == "2026-11-16"
    assert weekly_partitions.time_window_for_partition_key(key).end == datetime(2026, 11, 23, tzinfo=UTC)


# -- the lake's aggregation table (the engine without Dagster) ----------------------------------------------


def sweep_into_lake(db: str, location: LakeLocation) -> EventLake:
    events = EventLake(location)
    outcome = Ingestor(db, events, consumer="lake", backoff_seconds=0.01).sweep()
    assert outcome.status == "loaded" and outcome.events_loaded
    return events


def rebuild_traffic_periods(conn: psycopg.Connection, aggregator: Aggregator, monday: datetime) -> None:
    for granularity, (start, end) in ((HOURLY, (monday - DAY, monday + DAY)), (DAILY, (monday - DAY, monday + DAY)),
                                      (WEEKLY, (monday - WEEK, monday + WEEK))):
        outcome = aggregator.rebuild(conn, granularity, start, end)
        assert outcome.events_version == aggregator.events.version()  # one snapshot of the events
        assert outcome.lake_commits == len(list(granularity.chunks(start, end))) and outcome.events > 0


def log_actions(table_dir: Path, version: int) -> list[dict]:
    """The actions of one commit, from its JSON log entry."""
    text = (table_dir / "_delta_log" / f"{version:020d}.json").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def live_files(table_dir: Path) -> dict[str, list[str]]:
    """{aggregation_type: data files} of the table's latest version, replayed from its JSON log here (no delta-rs):
    every file added and not removed since."""
    log = table_dir / "_delta_log"
    assert not list(log.glob("*.checkpoint.parquet"))  # the whole history is in the JSON entries
    live: dict[str, str] = {}
    for entry in sorted(log.glob("*.json")):
        for action in log_actions(table_dir, int(entry.stem)):
            if "add" in action:
                live[action["add"]["path"]] = action["add"]["partitionValues"]["aggregation_type"]
            elif "remove" in action:
                live.pop(action["remove"]["path"], None)
    out: dict[str, list[str]] = defaultdict(list)
    for path, kind in sorted(live.items()):
        out[kind].append(str(table_dir / path))
    return out


PERIOD_COLUMNS = ("period_start, period_end, event_type, event_category, total_events, unique_users, "
                  "unique_sessions, amount_sum, computed_at")
AGGREGATE_COLUMNS = "aggregation_type, " + PERIOD_COLUMNS


def test_the_aggregation_table_is_a_delta_table_that_duckdb_reads(db: str, conn: psycopg.Connection,
                                                                   tmp_path: Path, monday: datetime) -> None:
    load_traffic(db, monday)
    aggregator = Aggregator(sweep_into_lake(db, LakeLocation.from_env(str(tmp_path / "lake"))))
    rebuild_traffic_periods(conn, aggregator, monday)
    assert_all_match(conn, aggregator.aggregates.location, monday)  # the counts by hand, in both stores
    pg = conn.execute(f"SELECT {AGGREGATE_COLUMNS} FROM event_aggregations").fetchall()

    # a Delta table as delta-rs opens it afresh: the declared schema, partitioned by aggregation_type
    table = DeltaTable(aggregator.aggregates.uri)
    assert pa.schema(table.schema().to_arrow()) == AGGREGATION_SCHEMA
    assert table.metadata().partition_columns == ["aggregation_type"]
    # DuckDB's own Parquet reader over the files the log names (partition values from the log): PostgreSQL's rows
    files = live_files(Path(aggregator.aggregates.uri))
    assert set(files) == {"hourly", "daily", "weekly"}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    read = [row for kind, paths in files.items() for row in con.execute(
        f"SELECT ? AS aggregation_type, {PERIOD_COLUMNS} FROM read_parquet(?)", [kind, paths]).fetchall()]
    assert sorted(read) == sorted(pg)
    # and DuckDB over the registered snapshot (what AggregationLake.query gives notebooks and checks)
    assert sorted(aggregator.aggregates.query(f"SELECT {AGGREGATE_COLUMNS} FROM event_aggregations")) == sorted(pg)


def test_a_range_replace_is_one_commit_touching_no_other_period_or_type(db: str, conn: psycopg.Connection,
                                                                        tmp_path: Path, monday: datetime) -> None:
    load_traffic(db, monday)
    aggregator = Aggregator(sweep_into_lake(db, LakeLocation.from_env(str(tmp_path / "lake"))))
    rebuild_traffic_periods(conn, aggregator, monday)
    aggregates, table_dir = aggregator.aggregates, Path(aggregator.aggregates.uri)
    everything = {g: aggregates.read_range(g, monday - WEEK, monday + WEEK) for g in (HOURLY, DAILY, WEEKLY)}
    version = aggregates.version()

    # Monday 01:00-03:00 rebuilt: one commit, an overwrite of exactly those hours, files of 'hourly' only
    outcome = aggregator.rebuild(conn, HOURLY, monday + HOUR, monday + 3 * HOUR)
    assert aggregates.version() == outcome.lake_version == version + 1
    actions = log_actions(table_dir, version + 1)
    info = next(a["commitInfo"] for a in actions if "commitInfo" in a)
    assert (info["operation"], info["operationParameters"]["mode"]) == ("WRITE", "Overwrite")
    assert info["operationParameters"]["predicate"].startswith("aggregation_type = 'hourly' AND period_start >= ")
    assert {a[k]["partitionValues"]["aggregation_type"] for a in actions for k in ("add", "remove") if k in a} == \
        {"hourly"}
    after = {g: aggregates.read_range(g, monday - WEEK, monday + WEEK) for g in (HOURLY, DAILY, WEEKLY)}
    assert after[DAILY].equals(everything[DAILY]) and after[WEEKLY].equals(everything[WEEKLY])
    inside = (pc.field("period_start") >= monday + HOUR) & (pc.field("period_start") < monday + 3 * HOUR)
    # the other hours as they were (computed_at included), the two hours recomputed (same counts, new computed_at)
    assert after[HOURLY].filter(~inside).equals(everything[HOURLY].filter(~inside))
    rebuilt, old = after[HOURLY].filter(inside), everything[HOURLY].filter(inside)
    assert rebuilt.num_rows and rebuilt.drop_columns(["computed_at"]).equals(old.drop_columns(["computed_at"]))
    assert set(rebuilt.column("computed_at").to_pylist()).isdisjoint(old.column("computed_at").to_pylist())

    # rows outside the range, of another type, or not starting a period: refused, nothing committed
    with pytest.raises(ValueError, match="outside"):
        aggregates.replace_periods(DAILY, monday, monday + DAY, everything[DAILY])  # Sunday's rows too
    with pytest.raises(ValueError, match="aggregation types"):
        aggregates.replace_periods(DAILY, monday - WEEK, monday + WEEK, everything[HOURLY])
    shifted = everything[DAILY].slice(0, 1).set_column(1, "period_start", pa.array([monday + HOUR],
                                                                                    pa.timestamp("us", tz="UTC")))
    with pytest.raises(ValueError, match="does not start a daily period"):
        aggregates.replace_periods(DAILY, monday, monday + DAY, shifted)
    assert aggregates.version() == version + 1

    # a range without rows is emptied, in one commit; the week before is untouched
    commit = aggregates.replace_periods(WEEKLY, monday, monday + WEEK, pa.Table.from_batches([], AGGREGATION_SCHEMA))
    assert (commit.version, commit.rows, commit.partitions) == (version + 2, 0, {"weekly"})
    assert aggregates.read_range(WEEKLY, monday, monday + WEEK).num_rows == 0
    assert aggregates.read_range(WEEKLY, monday - WEEK, monday + WEEK).equals(
        everything[WEEKLY].filter(pc.field("period_start") < monday))


def test_aggregates_equal_the_events_counted_by_hand(db: str, conn: psycopg.Connection, defs: Definitions,
                                                      lake: LakeResource, instance: DagsterInstance,
                                                      monday: datetime) -> None:
    load_traffic(db, monday)
    run_ingest(defs, instance)
    materialize_traffic_periods(defs, instance, monday)
    assert_all_match(conn, lake.location(), monday)

    # distinct users are exact per period, never sums: a user active in several hours of a day counts once in
    # the day, one active on Sunday and Monday once in each day, and in two different weeks
    hours = expected_rows(conn, "hourly", monday - DAY, monday + DAY)
    days = expected_rows(conn, "daily", monday - DAY, monday + DAY)
    assert any(v[2] < sum(h[2] for (p, t), h in hours.items() if t == event_type and p.date() == d.date())
               for (d, event_type), v in days.items())
    users_by_day = {d: {r[0] for r in conn.execute(
        "SELECT DISTINCT user_id FROM platform_event_store WHERE user_id IS NOT NULL AND \"timestamp\" >= %s "
        "AND \"timestamp\" < %s", (d, d + DAY))} for d in (monday - DAY, monday)}
    assert users_by_day[monday - DAY] & users_by_day[monday]  # the same users on both sides of the week boundary
    weeks = postgres_rows(conn, "weekly", monday - WEEK, monday + WEEK)
    assert {p for p, _ in weeks} == {monday - WEEK, monday} and all(p.weekday() == 0 for p, _ in weeks)
    sunday_events = sum(v[1] for (p, _), v in days.items() if p == monday - DAY)
    assert sum(v[1] for (p, _), v in weeks.items() if p == monday - WEEK) == sunday_events
    # financial types carry amounts, the others none
    assert weeks[(monday, "proposal.submitted")][4] > 0 and weeks[(monday, "user.login")][4] is None

    # what AnalyticsClient.query_aggregations (and the dashboards) read: the rows written, exact range totals
    with AnalyticsClient(db, user_id=uuid.uuid4()) as client:
        for granularity in ("hourly", "daily"):
            result = client.query_aggregations(aggregation_type=granularity, start_date=(monday - DAY).date(),
                                               end_date=monday.date())
            assert {(r["period_start"], r["event_type"]): (r["event_category"], r["total_events"],
                                                            r["unique_users"], r["unique_sessions"],
                                                            r["amount_sum"]) for r in result.rows} == \
                expected_rows(conn, granularity, monday - DAY, monday + DAY)
        transactions = client.query_aggregations(aggregation_type="daily", event_category="transaction",
                                                 start_date=monday.date(), end_date=monday.date())
        assert {r["event_category"] for r in transactions.rows} == {"transaction"}
        assert transactions.total_events == sum(r["total_events"] for r in transactions.rows)
        everyone = conn.execute("SELECT count(DISTINCT user_id) FROM platform_event_store WHERE event_category = "
                                "'transaction' AND \"timestamp\" >= %s AND \"timestamp\" < %s",
                                (monday, monday + DAY)).fetchone()[0]
        assert transactions.unique_users == everyone < sum(r["unique_users"] for r in transactions.rows)


def test_rebuilding_a_period_replaces_exactly_its_rows(db: str, conn: psycopg.Connection, defs: Definitions,
                                                        lake: LakeResource, instance: DagsterInstance,
                                                        monday: datetime) -> None:
    load_traffic(db, monday)
    run_ingest(defs, instance)
    materialize(defs, instance, "daily", monday - DAY, monday)
    aggregates = AggregationLake(lake.location())
    sunday = aggregates.read_range(DAILY, monday - DAY, monday)
    version = aggregates.version()
    before = postgres_rows(conn, "daily", monday - DAY, monday + DAY)
    # a stale row in Monday's period (a type that has no events there any more) and a corrupted count
    conn.execute("INSERT INTO event_aggregations (aggregation_type, period_start, period_end, event_type, "
                 "event_category, total_events, unique_users, unique_sessions) VALUES ('daily', %s, %s, "
                 "'mfa.gone', 'user_activity', 5, 5, 5)", (monday, monday + DAY))
    conn.execute("UPDATE event_aggregations SET total_events = 0 WHERE aggregation_type = 'daily' AND "
                 "period_start = %s AND event_type = 'user.login'", (monday,))

    for i in range(1, 3):
        materialize(defs, instance, "daily", monday, monday)
        assert postgres_rows(conn, "daily", monday - DAY, monday + DAY) == before
        assert lake_rows(lake.location(), "daily", monday - DAY, monday + DAY) == before
        assert aggregates.version() == version + i  # one commit per rebuild
    assert aggregates.read_range(DAILY, monday - DAY, monday).equals(sunday)  # the other period: untouched
    computed = conn.execute("SELECT DISTINCT period_start, computed_at FROM event_aggregations WHERE "
                            "aggregation_type = 'daily'").fetchall()
    assert len(computed) == 2 and computed[0][1] != computed[1][1]  # Monday's rows were rewritten, Sunday's not


def test_a_late_event_makes_its_hours_day_and_week_stale_and_the_rebuild_counts_it(
        db: str, conn: psycopg.Connection, defs: Definitions, lake: LakeResource,
        instance: DagsterInstance, monday: datetime) -> None:
    def newly_closed(since: datetime, until: datetime) -> dict[str, set[str]]:
        """Periods that closed in (since, until]: their partitions appear, and they are due at the next :05."""
        return {name: set(p.get_partition_keys(current_time=until)) - set(p.get_partition_keys(current_time=since))
                for name, p in PARTITIONS.items()}

    def keys(granularity: str, first: datetime, last: datetime) -> set[str]:
        g, p = GRANULARITIES[granularity], PARTITIONS[granularity]
        return {p.get_partition_key_for_timestamp(t.timestamp()) for t in g.periods(first, last + g.step)}

    def requested_are(result, want: dict[str, set[str]]) -> None:
        got = {g.name: result.get_requested_partitions(postgres_key(g)) for g in (HOURLY, DAILY, WEEKLY)}
        assert got == want
        # the lake twin of each asset is always requested with it (one multi-asset)
        assert all(result.get_requested_partitions(lake_key(GRANULARITIES[n])) == got[n] for n in got)

    t0 = datetime.now(UTC)
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t0)
    assert result.total_requested == 0  # the first evaluation never backfills history

    load_traffic(db, monday)
    run_ingest(defs, instance)  # the sweep records Sunday's and Monday's day partitions
    next_hour = t0.replace(minute=0, second=0, microsecond=0) + HOUR
    # a fresh install: the periods of those days were never built, so they are due on the next tick, before any
    # :05 (halfway to the first :05 after t0, which is in t0's hour when the test starts in its first five
    # minutes) -- all but the latest closed week (Monday's), which waits for its :05 like any latest period
    first_tick = t0.replace(minute=5, second=0, microsecond=0)
    first_tick += HOUR if first_tick <= t0 else timedelta(0)
    t1 = t0 + (first_tick - t0) / 2
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t1, cursor=result.cursor)
    requested_are(result, {"hourly": keys("hourly", monday - DAY, monday + DAY - HOUR),
                           "daily": keys("daily", monday - DAY, monday),
                           "weekly": keys("weekly", monday - WEEK, monday - WEEK)})
    # at :05 the latest week is due, and so is any period that has just closed (here: the last hour); the periods
    # requested at t1 are not requested again
    t2 = next_hour + timedelta(minutes=5, seconds=30)
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t2, cursor=result.cursor)
    closed = newly_closed(t0, t2)
    assert closed["hourly"]  # the hour that ended at next_hour
    requested_are(result, {"hourly": closed["hourly"], "daily": closed["daily"],
                           "weekly": keys("weekly", monday, monday) | closed["weekly"]})
    materialize_traffic_periods(defs, instance, monday)
    t3 = t2 + timedelta(minutes=1)
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t3, cursor=result.cursor)
    assert result.total_requested == 0  # handled: requested last tick, then materialized

    # a late event, on Monday 01:30, of a user never seen before, with an amount
    late_user, late_at = uuid.uuid4(), monday + timedelta(hours=1, minutes=30)
    key = (monday + HOUR, "milestone.approved")
    before = expected_rows(conn, "hourly", monday + HOUR, monday + 2 * HOUR).get(
        key, ("transaction", 0, 0, 0, Decimal(0)))
    with AnalyticsClient(db, user_id=late_user) as client:
        client.init_session(user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", platform="web")
        client.track("milestone.approved", {"project_id": str(uuid.uuid4()), "amount": 1234.56},
                     entity_type="milestone", entity_id=uuid.uuid4(), timestamp=late_at)
    run_ingest(defs, instance)
    t4 = t3 + timedelta(minutes=1)
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t4, cursor=result.cursor)
    assert result.total_requested == 0  # stale, but not due before the next :05
    t5 = next_hour + HOUR + timedelta(minutes=5, seconds=30)
    result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=t5, cursor=result.cursor)
    closed = newly_closed(t4, t5)
    # Monday's hours (the lake's partitions are days: all 24 of them), Monday, and Monday's week; not Sunday
    requested_are(result, {"hourly": keys("hourly", monday, monday + DAY - HOUR) | closed["hourly"],
                             "daily": keys("daily", monday, monday) | closed["daily"],
                             "weekly": keys("weekly", monday, monday) | closed["weekly"]})

    materialize(defs, instance, "hourly", monday, monday + DAY - HOUR)
    materialize(defs, instance, "daily", monday, monday)
    materialize(defs, instance, "weekly", monday, monday)
    assert_all_match(conn, lake.location(), monday)
    after = postgres_rows(conn, "hourly", monday + HOUR, monday + 2 * HOUR)[key]
    assert after[1:] == (before[1] + 1, before[2] + 1, before[3] + 1, before[4] + Decimal("1234.56"))
    week = postgres_rows(conn, "weekly", monday, monday + WEEK)[(monday, "milestone.approved")]
    assert week[4] == expected_rows(conn, "weekly", monday, monday + WEEK)[(monday, "milestone.approved")][4]
