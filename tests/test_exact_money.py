"""Exact money: amounts keep every digit from the client to PostgreSQL (``track``, ``emit_many``, the SQL emit
function), the lake's event_data, and the aggregations -- exact in PostgreSQL's event_aggregations, and in the lake
and the engines (BigQuery emulator, Redshift stand-in) when the sum fits DECIMAL(38, 9), else NULL there with
``amount_overflow`` and the ``amount_sums_fit`` check failing. Real PostgreSQL, real Dagster runs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal, Inexact, localcontext

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.bq_emulator import bigquery_emulator  # noqa: F401 (a fixture)
from tests.lake_helpers import money_events, old_lake
from tests.redshift_standin import redshift_standin  # noqa: F401 (a fixture)
from tests.test_engines import EngineSetup, _bigquery, _redshift, engine_defs
from workdev_pipeline.aggregations.amounts import amount_of, event_amounts, exact_sum, fits
from workdev_pipeline.aggregations.periods import DAILY
from workdev_pipeline.assets.aggregations import lake_key, postgres_key
from workdev_pipeline.assets.engine_aggregations import engine_aggregation_key
from workdev_pipeline.catalog import amount_fields
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.resources.lake import LakeResource

#: Amounts a float would round or refuse: 17 significant digits, past 64 bits, past DECIMAL(38, 9), a nano.
AMOUNTS = (Decimal("12345678901234567.89"), 2**70, 10**30, Decimal("0.000000001"))
#: The issue's day of budgets: exact sum 1000000001180591620717411303425, 31 digits (does not fit DECIMAL(38, 9)).
BUDGETS = (1, 2**70, 10**30)
#: A day of milestones whose exact sum fits DECIMAL(38, 9) (22 integer digits, 9 decimals), read only exactly.
MILESTONES = (Decimal("12345678901234567.89"), 2**70, Decimal("0.000000001"), Decimal("99.5"))
EMIT = "SELECT emit_platform_event(%s, %s, %s, %s, %s::jsonb, '{}'::jsonb, 'web', NULL, NULL, %s)"


def project(budget: object) -> dict:
    return {"title": "Exact", "budget": budget, "project_type": "fixed"}


def budgets(conn: psycopg.Connection) -> list[Decimal]:
    """The budgets stored, as PostgreSQL's numeric reads them from jsonb (exact), in emission order."""
    return [r[0] for r in conn.execute("SELECT (event_data ->> 'budget')::numeric FROM platform_event_store "
                                       "WHERE event_type = 'project.created' ORDER BY \"timestamp\", event_id")]


def test_track_emit_many_and_the_sql_function_store_every_digit(client: AnalyticsClient,
                                                                conn: psycopg.Connection) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    for i, amount in enumerate(AMOUNTS):
        client.track("project.created", project(amount), entity_type="project", entity_id=uuid.uuid4(),
                     timestamp=start + timedelta(seconds=i))
    assert budgets(conn) == [Decimal(a) for a in AMOUNTS]
    conn.execute("TRUNCATE platform_event_store")

    client.emit_many([{"event_type": "project.created", "user_id": client.user_id, "event_data": project(a),
                       "timestamp": start + timedelta(seconds=i)} for i, a in enumerate(AMOUNTS)], batch_size=2)
    assert budgets(conn) == [Decimal(a) for a in AMOUNTS]
    # the text the client sent is the number itself, never a float's rendering
    texts = [r[0] for r in conn.execute("SELECT event_data::text FROM platform_event_store ORDER BY \"timestamp\"")]
    assert [json.loads(t, parse_float=Decimal)["budget"] for t in texts] == [Decimal(a) for a in AMOUNTS]
    conn.execute("TRUNCATE platform_event_store")

    for i, amount in enumerate(AMOUNTS):  # the SQL function, given JSON text
        conn.execute(EMIT, ("project.created", uuid.uuid4(), "project", str(uuid.uuid4()),
                            f'{{"title": "x", "budget": {amount}, "project_type": "fixed"}}',
                            start + timedelta(seconds=i)))
    assert budgets(conn) == [Decimal(a) for a in AMOUNTS]


def sweep(db: str, lake: LakeResource) -> None:
    outcome = Ingestor(db, lake.events(), consumer="lake", backoff_seconds=0.01).sweep()
    assert outcome.status == "loaded" and outcome.events_loaded


def test_the_lake_keeps_the_payloads_text_and_types_the_amount(db: str, client: AnalyticsClient,
                                                               lake: LakeResource) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    huge = 10**400  # past a double's range: jsonb holds it, the validation must not call it invalid JSON
    for i, amount in enumerate((*AMOUNTS, huge)):
        client.track("project.created", project(amount), entity_type="project", entity_id=uuid.uuid4(),
                     timestamp=start + timedelta(seconds=i))
    sweep(db, lake)
    rows = lake.events().snapshot().query("SELECT event_data, amount, amount_overflow FROM platform_events "
                                          "ORDER BY \"timestamp\"")
    assert [json.loads(r[0], parse_float=Decimal)["budget"] for r in rows] == [Decimal(a) for a in (*AMOUNTS, huge)]
    # the typed column: every digit where DECIMAL(38, 9) holds it, else NULL and flagged -- never rounded
    assert [r[1:] for r in rows] == [(Decimal("12345678901234567.89"), False), (Decimal(2**70), False),
                                     (None, True), (Decimal("0.000000001"), False), (None, True)]
    # delta-rs reads the same Decimals
    typed = lake.events().snapshot().dataset().to_table(columns=["timestamp", "amount", "amount_overflow"])
    typed = typed.sort_by("timestamp")
    assert typed.column("amount").type == pa.decimal128(38, 9)
    assert typed.column("amount").to_pylist() == [r[1] for r in rows]


@pytest.fixture(params=["bigquery", "redshift"])
def engine(request: pytest.FixtureRequest, db: str) -> Iterator[EngineSetup]:
    yield _bigquery(request) if request.param == "bigquery" else _redshift(request, db)


def test_a_days_amounts_are_exact_or_flagged_in_every_store(db: str, conn: psycopg.Connection, lake: LakeResource,
                                                            engine: EngineSetup, instance: DagsterInstance) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    with AnalyticsClient(db, user_id=uuid.uuid4()) as client:
        client.emit_many([{"event_type": "project.created", "user_id": client.user_id, "event_data": project(b),
                           "timestamp": day + timedelta(hours=10, seconds=i)} for i, b in enumerate(BUDGETS)])
        client.emit_many([{"event_type": "milestone.approved", "user_id": client.user_id,
                           "event_data": {"project_id": str(uuid.uuid4()), "amount": m},
                           "timestamp": day + timedelta(hours=11, seconds=i)} for i, m in enumerate(MILESTONES)])
    defs = engine_defs(db, lake, engine)
    assert defs.resolve_job_def("ingest_events").execute_in_process(instance=instance).success
    partition = day.date().isoformat()
    job = defs.resolve_implicit_global_asset_job_def()
    run = job.execute_in_process(instance=instance, partition_key=partition, raise_on_error=False,
                                 asset_selection=[postgres_key(DAILY), lake_key(DAILY)])
    assert run.success
    with localcontext(Context(prec=100, traps=[Inexact])):  # (the default context keeps 28 digits)
        budget_sum, milestone_sum = sum(Decimal(b) for b in BUDGETS), sum(Decimal(m) for m in MILESTONES)
    assert budget_sum == Decimal("1000000001180591620717411303425")

    # PostgreSQL: both sums exact (numeric); the budgets flagged, as the lake and engines cannot hold them
    pg = {r[0]: r[1:] for r in conn.execute(
        "SELECT event_type, amount_sum, amount_overflow FROM event_aggregations WHERE aggregation_type = 'daily' "
        "AND period_start = %s", (day,))}
    assert pg == {"project.created": (budget_sum, True), "milestone.approved": (milestone_sum, False)}
    # the lake: the fitting sum exact, the other NULL and flagged -- never a wrong number
    held = {r["event_type"]: (r["amount_sum"], r["amount_overflow"])
            for r in lake.aggregations().read_range(DAILY, day, day + timedelta(days=1)).to_pylist()}
    assert held == {"project.created": (None, True), "milestone.approved": (milestone_sum, False)}
    # the check fails on the flagged row
    [evaluation] = [e for e in run.get_asset_check_evaluations() if e.check_name == "amount_sums_fit"]
    assert not evaluation.passed and evaluation.metadata["overflow_rows"].value == 1

    # the engine: what the lake holds (the exact fitting sum, NULL + flag), and its check against PostgreSQL passes
    run = job.execute_in_process(instance=instance, partition_key=partition, raise_on_error=False,
                                 asset_selection=[engine_aggregation_key(engine.name, DAILY)])
    assert run.success
    with engine.resource.aggregations() as table:
        rows = {r[1]: (None if r[6] is None else Decimal(r[6]), r[7])
                for r in table.aggregation_rows("daily", day, day + timedelta(days=1))}
    assert rows == {"project.created": (None, True), "milestone.approved": (milestone_sum, False)}
    [matches] = [e for e in run.get_asset_check_evaluations() if e.check_name == "matches_postgres"]
    assert matches.passed

    # the engine's events carry each amount typed: every digit where NUMERIC(38, 9) holds it, 10**30 flagged; its
    # per-type sums are the lake's, and the parity check compares them
    fitting = {"project.created": (Decimal(1 + 2**70), 1), "milestone.approved": (milestone_sum, 0)}
    assert defs.resolve_job_def(f"deliver_to_{engine.name}").execute_in_process(instance=instance).success
    assert engine.resource.amounts(day.date()) == fitting == lake.amounts(day.date())
    checks = defs.resolve_job_def(f"check_{engine.name}_days").execute_in_process(
        instance=instance, tags={"dagster/partition": partition}, raise_on_error=False)
    [parity] = [e for e in checks.get_asset_check_evaluations() if e.check_name == "parity_with_lake"]
    assert parity.passed and parity.metadata["compared"].value is True


def test_exact_sums_and_what_decimal_38_9_holds() -> None:
    assert exact_sum(Decimal(1), [json.dumps(project(2**70)), '{"budget": 1000000000000000000000000000000}',
                                  '{"budget": "0.0000000001"}', '{"budget": true}', '{"other": 5}'],
                     "budget") == Decimal("1000000001180591620717411303425.0000000001")
    assert fits(Decimal("99999999999999999999999999999.999999999")) and fits(Decimal("-1E-9")) and fits(Decimal(0))
    assert fits(Decimal("1.10000000000000"))  # trailing zeros only
    assert not fits(Decimal(10**29)) and not fits(Decimal("1E-10")) and not fits(Decimal("NaN"))


def test_an_aggregation_table_of_the_older_schema_gains_amount_overflow(tmp_path) -> None:
    """A lake whose aggregation table predates amount_overflow: the next write adds the column (schema evolution,
    one metadata commit); the rows held before read NULL for it; the rewritten range holds the flag."""
    from deltalake import DeltaTable, write_deltalake

    from workdev_pipeline.lake.aggregations import AGGREGATION_SCHEMA, AggregationLake
    from workdev_pipeline.lake.location import LakeLocation

    aggregates = AggregationLake(LakeLocation.from_env(str(tmp_path / "lake")))
    old_schema = pa.schema([f for f in AGGREGATION_SCHEMA if f.name != "amount_overflow"])
    day = datetime(2026, 3, 14, tzinfo=UTC)

    def row(start: datetime, amount: Decimal | None, **extra: object) -> dict:
        return {"aggregation_type": "daily", "period_start": start, "period_end": start + timedelta(days=1),
                "event_type": "project.created", "event_category": "transaction", "total_events": 3,
                "unique_users": 1, "unique_sessions": 1, "amount_sum": amount, "computed_at": day, **extra}

    DeltaTable.create(aggregates.uri, schema=old_schema, partition_by=["aggregation_type"])
    write_deltalake(aggregates.uri, pa.Table.from_pylist([row(day, Decimal("5")), row(day + timedelta(days=1),
                                                                                       Decimal("6"))],
                                                         schema=old_schema), mode="append")
    new = pa.Table.from_pylist([row(day, None, amount_overflow=True)], schema=AGGREGATION_SCHEMA)
    aggregates.replace_periods(DAILY, day, day + timedelta(days=1), new)
    assert pa.schema(DeltaTable(aggregates.uri).schema().to_arrow()).names == AGGREGATION_SCHEMA.names
    held = aggregates.read_range(DAILY, day, day + timedelta(days=2)).to_pylist()
    assert [(r["amount_sum"], r["amount_overflow"]) for r in held] == [(None, True), (Decimal("6"), None)]


def test_each_events_amount_by_the_catalogs_field() -> None:
    """``event_amounts``: the catalog's amount field of each type (catalog.amount_fields), read exactly (numbers
    and decimal strings), NULL and flagged when DECIMAL(38, 9) cannot hold it (a 5,000-digit integer too: no
    int-conversion limit), NULL and unflagged when there is none."""
    assert amount_fields()["project.created"] == "budget" and amount_fields()["payment.completed"] == "amount"
    assert "user.login" not in amount_fields()
    rows = [("project.created", '{"budget": 12345678901234567.89}', Decimal("12345678901234567.89"), False),
            ("payment.completed", '{"amount": "99.5", "currency": "EUR"}', Decimal("99.5"), False),
            ("payment.completed", '{"amount": 1e2}', Decimal(100), False),
            ("payment.completed", '{"amount": "1E+40"}', None, True),
            ("payment.completed", '{"amount": "\\u0031e40"}', None, True),
            ("payment.completed", '{"id": "2487e639-8ab9", "amount": 99.9e29}', None, True),  # Arrow: a wrong number
            ("payment.completed", '{"amount": " 99.9E+29"}', None, True),
            ("payment.completed", '{"amount": "\\u0039\\u0039.9e29"}', None, True),
            ("payment.completed", '{"id": "2487e639-8ab9", "amount": [1], "amount": 1.5E1}', Decimal(15), False),
            ("payment.completed", '{"id": "2487e639-8ab9", "amount": 12.5}', Decimal("12.5"), False),
            ("project.created", '{"budget": 1000000000000000000000000000000}', None, True),
            ("project.created", '{"budget": 0.0000000001}', None, True),
            ("project.created", '{"budget": ' + "9" * 5000 + "}", None, True),
            ("project.created", '{"budget": true}', None, False),
            ("project.created", '{"title": "no budget"}', None, False),
            ("user.login", '{"amount": 5}', None, False),
            ("project.created", None, None, False)]
    amount, overflow = event_amounts(pa.array([r[0] for r in rows]), pa.array([r[1] for r in rows]))
    assert amount.type == pa.decimal128(38, 9)
    assert amount.to_pylist() == [r[2] for r in rows] and overflow.to_pylist() == [r[3] for r in rows]
    for event_type, payload, expected, flagged in rows:  # each alone: no other payload sends it to the exact reader
        amount, overflow = event_amounts(pa.array([event_type]), pa.array([payload], pa.string()))
        assert (amount[0].as_py(), overflow[0].as_py()) == (expected, flagged), payload


def test_an_engine_gets_typed_amounts_from_old_lake_files(db: str, lake: LakeResource, engine: EngineSetup) -> None:
    """A lake whose files predate the typed amounts: a delivery fills each event's amount (NUMERIC in BigQuery,
    NUMERIC(38, 9) in Redshift) from event_data -- every digit, the one that does not fit flagged; so does a
    replace of the day after delta-rs rewrote the old rows (compaction keeps their NULLs). The engine's per-type
    sums are the lake's, exactly."""
    day = date(2026, 3, 14)
    events = lake.events()
    old_lake(events, money_events(day, ["12345678901234567.89", 2**70, 10**30], start=0))
    expected = {"project.created": (Decimal("12345678901234567.89") + Decimal(2**70), 1)}
    assert engine.resource.deliver(db, events).status == "delivered"
    assert engine.resource.amounts(day) == expected == lake.amounts(day)

    # new rows evolve the table; delta-rs's compaction rewrites the old rows with NULL amounts into one file
    events.append([money_events(day, [Decimal("0.000000001")], start=10)], app_id="lake", version=1)
    events.table().optimize.compact()
    [file] = events.snapshot().day_files(day)
    assert pq.read_table(events.snapshot().file_uri(file), columns=["amount_overflow"]).column(0).null_count == 3
    engine.resource.replace_days(db, events, [day])
    expected = {"project.created": (Decimal("1180603966396312537991.890000001"), 1)}  # 31 digits
    assert engine.resource.amounts(day) == expected == lake.amounts(day)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.decimals(allow_nan=False, allow_infinity=False), st.integers(), st.booleans(),
                          st.none(), st.text(max_size=6), st.decimals().map(str)), min_size=1, max_size=12),
       st.lists(st.sampled_from(["", '"id": "2487e639-8ab9", ', '"n": 1e400, ', '"s": "\\u0031e40", ',
                                 '"amount": 99.9e29, ']), min_size=12, max_size=12))
def test_arrows_reading_agrees_with_the_exact_one(values: list[object], others: list[str]) -> None:
    """Whatever a group of payloads holds -- decimals of any size and scale, integers, booleans, strings (decimal or
    not), beside other keys (ids with hex digits, numbers with exponents) -- ``event_amounts`` (Arrow's JSON reader,
    or its fallback) types each amount as ``amount_of`` reads it."""
    def text(value: object, other: str) -> str:
        if value is None:
            return "{" + other + '"currency": "EUR"}'
        amount = json.dumps(value) if isinstance(value, bool | str | int) else str(value)
        return "{" + other + '"amount": ' + amount + "}"

    payloads = [text(v, o) for v, o in zip(values, others, strict=False)]
    expected = [amount_of(p, "amount") for p in payloads]
    amount, overflow = event_amounts(pa.array(["payment.completed"] * len(payloads)), pa.array(payloads))
    assert amount.to_pylist() == [a if a is not None and fits(a) else None for a in expected]
    assert overflow.to_pylist() == [a is not None and not fits(a) for a in expected]
