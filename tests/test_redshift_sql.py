"""Every production Redshift statement, rendered as the code sends it (``sql/warehouse/redshift/*.sql`` with their
parts filled in by ``RedshiftEventTable`` / ``RedshiftAggregationTable`` in the "redshift" dialect: the DDL with
SUPER, DISTKEY, SORTKEY and ENCODE, ``JSON_PARSE``, the S3 ``COPY``, SUPER paths), parses with sqlglot's Redshift
dialect: no Redshift runs here, so a syntax error would otherwise ship unseen.

sqlglot falls back to an opaque ``Command`` for syntax it does not know: that counts as a failure. Its COPY
grammar takes any option word, so the COPY is also held to what sqlglot read back (the same statement) and to the
options Redshift documents, and the DDL's distribution styles and encodings to Redshift's words (sqlglot takes
any). Known leniency, not covered: a trailing comma in a column list parses."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import sqlglot
from sqlglot import exp

from workdev_pipeline.warehouses.redshift import SQL_ROOT, RedshiftEventTable, table_column_definitions
from workdev_pipeline.warehouses.redshift_aggregations import RedshiftAggregationTable


def _unused_connection() -> None:
    raise AssertionError("rendering a statement never connects")


EVENTS = RedshiftEventTable(_unused_connection, schema="analytics", dialect="redshift", s3_bucket="workdev-loads",
                            s3_prefix="events", iam_role="arn:aws:iam::123456789012:role/workdev-load",
                            uploader=lambda bucket, key, paths: None)
AGGREGATIONS = RedshiftAggregationTable(_unused_connection, schema="analytics", dialect="redshift")
CUTOFF, _ = RedshiftEventTable._cutoff({"user.login": datetime(2026, 1, 1, tzinfo=UTC),
                                        "payment.completed": datetime(2019, 1, 1, tzinfo=UTC)})
IDS = RedshiftEventTable._placeholders(["a", "b", "c"])

#: statement file -> the statements the code renders from it (a new file needs its line here)
RENDERED: dict[str, Callable[[], list[str]]] = {
    "add_column": lambda: [EVENTS.statement("add_column", column=d) for d in table_column_definitions().values()] + [
        AGGREGATIONS.statement("add_column", column=d)
        for d in table_column_definitions(create="create_aggregations_table").values()],
    "aggregation_rows": lambda: [AGGREGATIONS.statement("aggregation_rows")],
    "copy_staging": lambda: [EVENTS.copy_statement("sweep-7-2026-03-14")],
    "create_aggregations_table": lambda: [AGGREGATIONS.statement("create_aggregations_table")],
    "create_schema": lambda: [EVENTS.ddl()[0]],
    "create_staging": lambda: [EVENTS.statement("create_staging")],
    "create_table": lambda: [EVENTS.ddl()[1]],
    "day_counts": lambda: [EVENTS.statement("day_counts")],
    "day_amounts": lambda: [EVENTS.statement("day_amounts")],
    "days": lambda: [EVENTS.statement("days")],
    "delete_aggregations": lambda: [AGGREGATIONS.statement("delete_aggregations")],
    "delete_day": lambda: [EVENTS.statement("delete_day")],
    "delete_events": lambda: [EVENTS.statement("delete_events", event_ids=IDS)],
    "delete_expired": lambda: [EVENTS.statement("delete_expired", cutoff=CUTOFF)],
    "drop_staging": lambda: [EVENTS.statement("drop_staging")],
    "duplicate_event_ids": lambda: [EVENTS.statement("duplicate_event_ids")],
    "event_ids": lambda: [EVENTS.statement("event_ids")],
    "expired_by_day": lambda: [EVENTS.statement("expired_by_day", cutoff=CUTOFF)],
    "fix_copied_json": lambda: [EVENTS.statement("fix_copied_json")],
    "held_event_ids": lambda: [EVENTS.statement("held_event_ids", event_ids=IDS)],
    "insert_aggregations": lambda: [AGGREGATIONS.insert_statement(1), AGGREGATIONS.insert_statement(3)],
    "insert_from_staging": lambda: [EVENTS.statement("insert_from_staging", columns=EVENTS._column_list())],
    "insert_staging": lambda: [EVENTS.insert_statement(1), EVENTS.insert_statement(3)],
    "ip_user_agents": lambda: [EVENTS.statement("ip_user_agents")],
    "merge_delete": lambda: [EVENTS.statement("merge_delete")],
    "payloads": lambda: [EVENTS.statement("payloads")],
    "table_columns": lambda: [EVENTS.statement("table_columns")],
    "user_row_count": lambda: [EVENTS.statement("user_row_count")],
    "user_rows": lambda: [EVENTS.statement("user_rows")],
}
#: COPY options Redshift documents, as the statements use them: name -> the values it takes (None: a flag)
COPY_OPTIONS = {"FORMAT": {"PARQUET", "ORC", "CSV", "JSON", "AVRO"}, "SERIALIZETOJSON": None}
#: Redshift's words that sqlglot takes as any identifier: distribution styles and column encodings
DISTSTYLES = {"ALL", "AUTO", "EVEN", "KEY"}
ENCODINGS = {"RAW", "AZ64", "BYTEDICT", "DELTA", "DELTA32K", "LZO", "MOSTLY8", "MOSTLY16", "MOSTLY32", "RUNLENGTH",
             "TEXT255", "TEXT32K", "ZSTD"}


def parse_redshift(sql: str) -> exp.Expression:
    """One statement parsed by sqlglot's Redshift dialect, never the opaque ``Command`` fallback."""
    statements = sqlglot.parse(sql, read="redshift")
    assert len(statements) == 1, f"one statement expected:\n{sql}"
    parsed = statements[0]
    assert parsed is not None and not list(parsed.find_all(exp.Command)), f"not understood by sqlglot:\n{sql}"
    for style in parsed.find_all(exp.DistStyleProperty):
        assert style.this.name.upper() in DISTSTYLES, f"DISTSTYLE {style.this.name}:\n{sql}"
    for encoding in parsed.find_all(exp.EncodeColumnConstraint):
        assert encoding.this.name.upper() in ENCODINGS, f"ENCODE {encoding.this.name}:\n{sql}"
    return parsed


def test_every_statement_file_is_rendered_here() -> None:
    assert {p.stem for p in SQL_ROOT.glob("*.sql")} == set(RENDERED)


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_the_statement_parses_as_redshift(name: str) -> None:
    for sql in RENDERED[name]():
        parse_redshift(sql)


def test_the_copy_is_what_sqlglot_reads_with_the_options_redshift_documents() -> None:
    sql = EVENTS.copy_statement("sweep-7-2026-03-14")
    copy = parse_redshift(sql)
    assert isinstance(copy, exp.Copy)
    assert copy.this.name == "platform_events_staging"
    assert [f.this for f in copy.args["files"]] == ["s3://workdev-loads/events/sweep-7-2026-03-14/"]
    assert copy.args["credentials"].args["iam_role"].this == "arn:aws:iam::123456789012:role/workdev-load"
    for option in copy.args["params"]:
        name, value = option.this.name.upper(), option.expression
        assert name in COPY_OPTIONS, f"COPY option {name} is not Redshift's"
        allowed = COPY_OPTIONS[name]
        assert (value is None) if allowed is None else (value is not None and value.name.upper() in allowed), option
    # read back as written (sqlglot drops FORMAT's optional AS): no word of it skipped or reinterpreted
    written = re.sub(r"\s+", " ", sql).replace("FORMAT AS ", "FORMAT ")
    assert copy.sql(dialect="redshift") == written
