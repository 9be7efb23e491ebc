"""The hourly volume check (``volumes_within_history``): real events through the real sweep and a real Dagster backfill
run of six hours, against five weeks of history written into the lake's aggregation table (materializing five weeks
of hours would take minutes); and the statistics module on its own, by properties (hypothesis) and examples."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from dagster import AssetCheckSeverity, DagsterInstance, Definitions
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from hypothesis import given
from hypothesis import strategies as st

from workdev_pipeline.aggregations.anomalies import (
    MIN_HISTORY_WEEKS,
    Verdict,
    assess_hour,
    baseline,
    classify,
    history_hours,
    thresholds_of,
)
from workdev_pipeline.aggregations.periods import HOURLY
from workdev_pipeline.assets.aggregations import lake_key, postgres_key
from workdev_pipeline.assets.partitions import hourly_partitions
from workdev_pipeline.assets.volume_checks import CHECK_KEY, CHECK_NAME
from workdev_pipeline.catalog import DEFAULT_VOLUME_THRESHOLDS, EVENT_TYPES_BY_NAME, VolumeThresholds
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.lake.aggregations import AGGREGATION_SCHEMA
from workdev_pipeline.resources.lake import LakeResource

HOUR, WEEK = timedelta(hours=1), timedelta(weeks=1)
#: events per hour of each type, in the history (give or take a few) and in the checked hours
BASE = {"user.login": 40, "search.performed": 30, "project.viewed": 24, "user.logout": 16}
SILENT_HOUR, SPIKE_HOUR, SHORT_HOUR = 2, 4, 5  # of the six checked hours; the last has two weeks of history only
PAYLOADS = {"user.login": lambda: {"method": "password"}, "user.logout": dict,
            "search.performed": lambda: {"query": "python", "results_count": 3, "search_time_ms": 12.5},
            "project.viewed": lambda: {"project_id": str(uuid.uuid4())}}


def checked_hours() -> list[datetime]:
    """Six closed hours, 09:00-14:00 UTC two days ago."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    return [day + (9 + i) * HOUR for i in range(6)]


def observed_counts(index: int) -> dict[str, int]:
    """The traffic of checked hour ``index``: the base, with user.login silent in one hour and search.performed
    ten times its volume in another."""
    counts = dict(BASE)
    if index == SILENT_HOUR:
        counts["user.login"] = 0
    if index == SPIKE_HOUR:
        counts["search.performed"] *= 10
    return counts


def write_history(lake: LakeResource, hours: list[datetime]) -> None:
    """Five weeks of the same hours (two for the last one) in the lake's hourly aggregations, in one commit: each
    type's base give or take 4 events."""
    rng, computed, rows = random.Random(7), datetime.now(UTC), []
    for index, hour in enumerate(hours):
        for past in history_hours(hour, weeks=2 if index == SHORT_HOUR else 5):
            for event_type, base in BASE.items():
                events = base + rng.randint(-4, 4)
                rows.append({"aggregation_type": "hourly", "period_start": past, "period_end": past + HOUR,
                             "event_type": event_type, "event_category": EVENT_TYPES_BY_NAME[event_type].category.name,
                             "total_events": events, "unique_users": events, "unique_sessions": events,
                             "amount_sum": None, "computed_at": computed, "amount_overflow": False})
    lake.aggregations().replace_periods(HOURLY, hours[0] - 5 * WEEK, hours[-1] - WEEK + HOUR,
                                        pa.Table.from_pylist(rows, schema=AGGREGATION_SCHEMA))


def emit_traffic(db: str, hours: list[datetime]) -> None:
    events = [{"event_type": event_type, "user_id": uuid.uuid4(), "event_data": PAYLOADS[event_type](),
               "timestamp": hour + timedelta(seconds=7 * i + 1)}
              for index, hour in enumerate(hours) for event_type, n in observed_counts(index).items()
              for i in range(n)]
    with AnalyticsClient(db, user_id=uuid.uuid4()) as client:
        assert client.emit_many(events).inserted == len(events)


def test_a_silent_type_errors_and_a_spike_warns_on_exactly_their_hours(
        db: str, defs: Definitions, lake: LakeResource, instance: DagsterInstance) -> None:
    hours = checked_hours()
    keys = [hourly_partitions.get_partition_key_for_timestamp(h.timestamp()) for h in hours]
    write_history(lake, hours)
    emit_traffic(db, hours)
    assert defs.resolve_job_def("ingest_events").execute_in_process(instance=instance).success

    # the six hours materialized in one run, as a backfill or the automation does: the check rides along
    run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[postgres_key(HOURLY), lake_key(HOURLY)],
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]})
    assert run.success  # non-blocking: a failed hour does not fail the run
    evaluations = {e.partition: e for e in run.get_asset_check_evaluations() if e.check_name == CHECK_NAME}
    assert set(evaluations) == set(keys)  # one evaluation per hour, recorded against its hour
    assert {k: (e.passed, e.severity) for k, e in evaluations.items() if not e.passed} == {
        keys[SILENT_HOUR]: (False, AssetCheckSeverity.ERROR), keys[SPIKE_HOUR]: (False, AssetCheckSeverity.WARN)}
    assert [e.passed for e in run.get_asset_check_evaluations() if e.check_name == "amount_sums_fit"]  # still there

    def meta(index: int, key: str) -> object:
        return evaluations[keys[index]].metadata[key].value

    for index in range(len(hours)):  # every type's count as observed, beside its expected range
        assert {t: meta(index, f"{t}/observed") for t in BASE} == observed_counts(index)
    for index in (0, 1, 3):
        assert all(meta(index, f"{t}/expected_low") <= n <= meta(index, f"{t}/expected_high")
                   for t, n in BASE.items())
        assert meta(index, "history_weeks") == 5
    assert (meta(SILENT_HOUR, "silent"), meta(SILENT_HOUR, "spike")) == (["user.login"], [])
    assert meta(SILENT_HOUR, "user.login/expected_low") > 0
    assert (meta(SPIKE_HOUR, "spike"), meta(SPIKE_HOUR, "silent")) == (["search.performed"], [])
    assert meta(SPIKE_HOUR, "search.performed/expected_high") < 300
    assert "search.performed spike: 300 events" in evaluations[keys[SPIKE_HOUR]].description
    # too short a history: passes unjudged, with the weeks it had
    assert meta(SHORT_HOUR, "history_weeks") == 2 and evaluations[keys[SHORT_HOUR]].passed
    assert evaluations[keys[SHORT_HOUR]].description.startswith("not judged: 2 week(s) of history")

    # the instance holds each hour's status, about the hour's latest materialization
    infos = {i.partition_key: i for i in instance.event_log_storage.get_asset_check_partition_info(
        [CHECK_KEY], partition_keys=keys)}
    assert {k: i.latest_execution_status for k, i in infos.items()} == {
        k: AssetCheckExecutionRecordStatus.FAILED if k in (keys[SILENT_HOUR], keys[SPIKE_HOUR])
        else AssetCheckExecutionRecordStatus.SUCCEEDED for k in keys}
    assert all(i.is_current for i in infos.values())

    # one hour rebuilt alone (a single-partition run, as the hourly automation launches): the same verdict
    alone = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[postgres_key(HOURLY), lake_key(HOURLY)], partition_key=keys[SPIKE_HOUR])
    [again] = [e for e in alone.get_asset_check_evaluations() if e.check_name == CHECK_NAME]
    assert (again.partition, again.passed, again.severity) == (keys[SPIKE_HOUR], False, AssetCheckSeverity.WARN)


# -- the statistics, without Dagster ---------------------------------------------------------------------------

counts = st.integers(min_value=0, max_value=100_000)
histories = st.lists(counts, min_size=MIN_HISTORY_WEEKS, max_size=12)


@given(histories)
def test_the_range_holds_the_median_and_never_goes_below_zero(history: list[int]) -> None:
    base = baseline(history)
    assert 0 <= base.low <= base.median <= base.high
    assert base.sigma >= 1  # never below the Poisson noise of one event
    assert baseline(sorted(history)) == base == baseline(history[::-1])  # the order of the weeks does not matter


@given(histories, counts)
def test_one_odd_week_does_not_move_the_median_out_of_the_others(history: list[int], outlier: int) -> None:
    odd = [*history[:-1], outlier]
    others = history[:-1]
    assert min(others) <= baseline(odd).median <= max(others)


@given(histories.filter(lambda h: baseline(h).median >= 1))
def test_ten_times_the_usual_volume_is_a_spike(history: list[int]) -> None:
    base = baseline(history)
    assert classify(round(10 * base.median), base) == Verdict.SPIKE
    assert classify(round(base.median), base) == Verdict.NORMAL


@given(histories.filter(lambda h: baseline(h).median >= DEFAULT_VOLUME_THRESHOLDS.silent_min_median))
def test_nothing_where_history_has_many_is_silent(history: list[int]) -> None:
    assert classify(0, baseline(history)) == Verdict.SILENT


def test_ranges_and_verdicts_by_example() -> None:
    steady = baseline([100, 96, 104, 100, 98])  # MAD 2: σ is the Poisson floor √100 = 10, range 100 ± 40
    assert (steady.median, steady.mad, steady.sigma, steady.low, steady.high) == (100, 2, 10, 60, 140)
    assert [classify(n, steady) for n in (0, 59, 60, 140, 141)] == [
        Verdict.SILENT, Verdict.DROP, Verdict.NORMAL, Verdict.NORMAL, Verdict.SPIKE]
    busy = baseline([10_000, 10_100, 9_900])  # the tolerance (25 %) is wider than 4σ here
    assert (busy.low, busy.high) == (7_500, 12_500)
    noisy = baseline([100, 50, 150, 100, 100])  # MAD 0 … a wide σ only when half the weeks disagree
    assert noisy.sigma == 10
    wild = baseline([100, 50, 150, 60, 140])  # MAD 40: σ = 59.3, range 0 … 337.2
    assert (wild.low, round(wild.high, 1)) == (0, 337.2)
    rare = baseline([1, 0, 2, 1])  # a rare type: 0 is normal, a handful too, never silent
    assert [classify(n, rare) for n in (0, 5, 6)] == [Verdict.NORMAL, Verdict.NORMAL, Verdict.SPIKE]
    # per-type thresholds: wider deviations accept what the defaults flag; a higher silent floor forgives a 0
    assert classify(141, baseline([100, 96, 104, 100, 98], VolumeThresholds(deviations=5))) == Verdict.NORMAL
    assert classify(0, baseline([12, 12, 12]), VolumeThresholds(silent_min_median=20)) == Verdict.NORMAL
    with pytest.raises(ValueError, match="invalid volume thresholds"):
        VolumeThresholds(deviations=0)


def test_an_hour_against_its_weeks() -> None:
    hour = datetime(2026, 11, 23, 14, tzinfo=UTC)
    assert history_hours(hour, weeks=2) == [hour - 2 * WEEK, hour - WEEK]
    with pytest.raises(ValueError, match="does not start an hour"):
        history_hours(hour + timedelta(minutes=5))
    weeks = {hour - i * WEEK: {"a": 50, "b": 20 + i} for i in range(1, 5)}
    # a week without any row is missing, not zero: 4 weeks of 8; a type absent from a week that has rows had 0
    weeks[hour - 6 * WEEK] = {}
    weeks[hour - 7 * WEEK] = {"a": 50}
    volumes = assess_hour(hour, {**weeks, hour: {"a": 0, "c": 3}})
    assert volumes.history_weeks == 5 and volumes.judged
    by_type = {t.event_type: t for t in volumes.types}
    assert by_type["b"].history == (0, 24, 23, 22, 21) and by_type["b"].observed == 0
    assert by_type["c"].history == (0, 0, 0, 0, 0) and by_type["c"].verdict == Verdict.NORMAL
    assert [t.event_type for t in volumes.flagged(Verdict.SILENT)] == ["a", "b"]
    # the hour itself without rows: every type of its history silent (a total outage)
    assert [t.event_type for t in assess_hour(hour, weeks).flagged(Verdict.SILENT)] == ["a", "b"]
    # too short a history: nothing judged
    short = assess_hour(hour, {hour - WEEK: {"a": 50}, hour - 2 * WEEK: {"a": 50}, hour: {}})
    assert not short.judged and short.flagged(Verdict.SILENT) == []
    # per-type thresholds: a higher silent floor for "a" forgives its 0
    forgiving = VolumeThresholds(silent_min_median=100)
    lenient = assess_hour(hour, {**weeks, hour: {"a": 0}}, thresholds=lambda t: forgiving if t == "a" else
                          DEFAULT_VOLUME_THRESHOLDS)
    assert [t.event_type for t in lenient.flagged(Verdict.SILENT)] == ["b"]


def test_thresholds_come_from_the_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EVENT_TYPES_BY_NAME["user.login"].volume is None  # none set: the documented defaults
    assert thresholds_of("user.login") == DEFAULT_VOLUME_THRESHOLDS == VolumeThresholds(4.0, 0.25, 10.0)
    assert thresholds_of("not.a.type") == DEFAULT_VOLUME_THRESHOLDS
    # a type the catalog deactivated (refused at emission) is expected to fall silent: reported, not judged
    hour = datetime(2026, 11, 23, 14, tzinfo=UTC)
    weeks = {hour - i * WEEK: {"user.logout": 50} for i in range(1, 5)}
    assert [t.event_type for t in assess_hour(hour, weeks).flagged(Verdict.SILENT)] == ["user.logout"]
    monkeypatch.setitem(EVENT_TYPES_BY_NAME, "user.logout", replace(EVENT_TYPES_BY_NAME["user.logout"], active=False))
    assert thresholds_of("user.logout") is None
    [retired] = assess_hour(hour, weeks).types
    assert (retired.observed, retired.base.median, retired.verdict) == (0, 50, Verdict.NORMAL)
    login, wide = EVENT_TYPES_BY_NAME["user.login"], VolumeThresholds(deviations=8, tolerance=1.0)
    monkeypatch.setitem(EVENT_TYPES_BY_NAME, "user.login", replace(login, volume=wide))
    assert thresholds_of("user.login") == wide
    # thresholds are the check's, not the event's: changing them does not re-version the type in event_schemas
    assert replace(login, volume=wide).version == login.version
