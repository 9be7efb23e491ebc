"""The Redshift engine's ``platform_events`` (a :class:`~workdev_pipeline.warehouses.remote.RemoteEventTable`),
through ``redshift_connector``. :class:`RedshiftTable` is what every table of the pipeline there shares (statements
per dialect, connection, transactions); ``redshift_aggregations.py`` builds ``event_aggregations`` on it.

**Statements** live in ``sql/warehouse/redshift/``: the production DDL is Redshift's (SUPER for event_data,
metadata and the geo_location/device_info structs, ``DISTKEY(event_id)``, ``COMPOUND SORTKEY("timestamp",
event_type)``, column encodings; ``create_table.sql`` says why), and every load is one transaction:

* ``merge_files``: a temporary staging table ``(LIKE platform_events)``, the files' rows into it, then the
  delete+insert merge -- ``DELETE ... USING staging`` on event_id within the day's timestamp range, and
  ``INSERT ... SELECT`` one row per event_id from staging. Redone, it leaves one copy of each event.
* ``replace_day``: staging filled the same way, the day's rows deleted (timestamp range), staging inserted;
  no files: the day emptied.
* ``refresh_events`` (erasure in place): staging filled with the lake's current rows of the erased user's events,
  those events' rows deleted (their ids as bound parameters, within their days), staging inserted.

Retention in place is ``expired_by_day.sql`` (the plan) and ``delete_expired.sql`` (one DELETE bounded by the days
and by a CASE of the policy's cut-offs per event type, bound parameters); the erasure checks read ``user_rows``,
``payloads`` and ``ip_user_agents``.

The files are the lake's (:mod:`workdev_pipeline.lake.delivery`): local paths only. A lake in S3 is copied through
this machine by the delivery (``uri_schemes`` is empty); a COPY straight from the lake's objects would take a
manifest listing them with their sizes (``"meta": {"content_length": ...}``, required for Parquet; the Delta log
has the sizes) -- not done.

**Loading rows.** With ``s3_bucket`` and ``iam_role``, the files go up through ``uploader`` to
``s3://<bucket>/<prefix>/<load_id>/`` and staging is filled by ``COPY ... FORMAT AS PARQUET SERIALIZETOJSON``.
Otherwise, by batched multi-row ``INSERT ... VALUES (...), (...)`` with bound parameters (``batch_rows`` rows,
fewer when a batch's Arrow size passes ``batch_bytes``, never more than 32,767 parameters): each Parquet batch
is converted column by column with Arrow and sent as one ``cursor.execute``; JSON columns and the structs go
as JSON text through the dialect's conversion, timestamps as ISO 8601 text in UTC with ``CAST(%s AS
TIMESTAMPTZ)``. (``COPY FROM STDIN`` does not exist in redshift_connector.) The driver's cache of server-side
prepared statements is capped at :data:`MAX_PREPARED_STATEMENTS` per connection (see ``_connection``).

**The dialect switch** is :data:`DIALECTS`, the one place where ``"redshift"`` and ``"postgres"`` differ: the
PostgreSQL stand-in takes its DDL from ``sql/warehouse/redshift/postgres_standin/`` (SUPER -> JSONB, no DISTKEY /
SORTKEY / ENCODE), and the two statements that read inside JSON (``payloads``,
``ip_user_agents``: SUPER navigation and ``JSON_SERIALIZE`` -> ``->>`` and ``::text``), and converts JSON
parameters with ``CAST(%s AS JSONB)`` instead of ``JSON_PARSE(%s)``; every other statement is the same file for
both.

**Proven against PostgreSQL** (stock PostgreSQL 15 reached by the real redshift_connector through a small
wire-protocol proxy, ``tests/redshift_standin.py``, dialect "postgres"): the driver's connection, parameter
binding and transactions, and the error classes it raises; every non-DDL statement file as written but the three
JSON-reading ones (staging ``LIKE``, delete+insert merge, day delete, counts, duplicates, event ids, user rows,
days, the retention plan and delete, the erasure refresh -- the same files are sent to Redshift); merges redone
leave one copy of each event, a changed row is replaced, a day's replace touches no other day, a failed load
rolls back whole; JSON, structs (as JSON objects), NULLs and UTC timestamps
(microseconds) round-trip through the batched INSERT path; a dead server raises ``transient_errors``.

**Not proven** (no Redshift, no S3 here): the Redshift DDL (SUPER, DISTKEY, SORTKEY, ENCODE, VARCHAR widths
counted in bytes) -- only its rendered text is checked; ``JSON_PARSE(%s)`` into SUPER; Redshift's acceptance of
the shared statements (``DELETE ... USING`` with schema-qualified column references, ``ROW_NUMBER()`` in
``INSERT ... SELECT``, ``LIMIT %s`` bound, ``CAST(%s AS TIMESTAMPTZ)`` of ``+00:00`` text) and of 16,000 bound
parameters in one statement; the SUPER forms of the three JSON-reading statements; the driver's Redshift
protocol extensions (the stand-in makes it fall back to the
plain PostgreSQL protocol); the S3 path beyond the statements it sends (a test double records them and uploads
to a local directory), in particular how COPY maps Parquet's JSON-typed strings into SUPER
(``fix_copied_json.sql`` parses any that land as SUPER strings); ``information_schema.columns`` on Redshift for
``ensure_table``; performance on a cluster.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from itertools import chain
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redshift_connector

from workdev_pipeline.ingest.schema import WAREHOUSE_SCHEMA
from workdev_pipeline.settings import SQL_DIR
from workdev_pipeline.warehouses.remote import Source

log = logging.getLogger(__name__)

SQL_ROOT = SQL_DIR / "warehouse" / "redshift"
TABLE = "platform_events"
COLUMNS: tuple[str, ...] = tuple(WAREHOUSE_SCHEMA.names)
#: Columns sent as JSON text and converted by the dialect (SUPER on Redshift).
JSON_COLUMNS = frozenset({"event_data", "metadata", "geo_location", "device_info"})
#: Columns sent as ISO 8601 text and cast (one statement for both dialects).
TIMESTAMP_COLUMNS = frozenset(f.name for f in WAREHOUSE_SCHEMA if pa.types.is_timestamp(f.type))
#: Bound parameters one statement may carry (the wire protocol's Int16 count).
MAX_PARAMETERS = 32_767
#: Server-side prepared statements the driver may keep per connection (see ``_connection``).
MAX_PREPARED_STATEMENTS = 8

Dialect = Literal["redshift", "postgres"]
#: Uploads the load's files so that ``s3://<bucket>/<key_prefix>`` holds exactly them (stale objects removed):
#: called as ``uploader(bucket, key_prefix, paths)``.
Uploader = Callable[[str, str, Sequence[Path]], None]


@dataclass(frozen=True)
class DialectRules:
    """How one dialect differs: where its DDL overrides come from, how a JSON text parameter becomes a value."""

    #: Statements found here replace those of ``SQL_ROOT`` (the DDL); None: Redshift's own files.
    override_dir: Path | None
    #: The placeholder of a JSON column in the INSERT batches.
    json_parameter: str


#: The one dialect switch: production is Redshift; "postgres" is the test stand-in.
DIALECTS: dict[str, DialectRules] = {
    "redshift": DialectRules(None, "JSON_PARSE(%s)"),
    "postgres": DialectRules(SQL_ROOT / "postgres_standin", "CAST(%s AS JSONB)"),
}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,126}")
_COLUMN_LINE = re.compile(r'^\s+("?)([a-z_][a-z0-9_]*)\1\s+\S.*?,?$')


def quote_identifier(name: str) -> str:
    """``name`` as a quoted identifier (only plain names are accepted)."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def quote_literal(value: str) -> str:
    """``value`` as a SQL string literal (COPY's S3 location and IAM role cannot be bound parameters)."""
    if "\\" in value or "\0" in value:
        raise ValueError("backslashes and NUL are not accepted in a COPY literal")
    return "'" + value.replace("'", "''") + "'"


@cache
def statement_text(name: str, dialect: Dialect = "redshift") -> str:
    """The statement ``<name>.sql`` for ``dialect``, without its comment lines."""
    rules = DIALECTS[dialect]
    path = SQL_ROOT / f"{name}.sql"
    if rules.override_dir is not None and (rules.override_dir / f"{name}.sql").is_file():
        path = rules.override_dir / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {path}")
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip()


def table_column_definitions(dialect: Dialect = "redshift", create: str = "create_table") -> dict[str, str]:
    """Column name -> its definition line in ``<create>.sql`` (for the columns the schema gains)."""
    lines = statement_text(create, dialect).splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith("(")) + 1
    definitions: dict[str, str] = {}
    for line in lines[start:]:
        if line.startswith(")"):  # the column list's end (table attributes follow on Redshift)
            break
        match = _COLUMN_LINE.match(line)
        if match:
            definitions[match.group(2)] = line.strip().rstrip(",")
    return definitions


def day_range(day: date) -> tuple[datetime, datetime]:
    """[start, end) of the UTC day."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def _struct_json(column: pa.Array | pa.ChunkedArray) -> list[str | None]:
    """A struct column as JSON objects (null: None); structs repeat a lot (countries, browsers): each distinct
    one is encoded once."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    names = [column.type.field(i).name for i in range(column.type.num_fields)]
    children = [column.field(i).to_pylist() for i in range(len(names))]
    valid = column.is_valid().to_pylist()
    encoded: dict[tuple[Any, ...], str] = {}
    values: list[str | None] = []
    for is_valid, key in zip(valid, zip(*children, strict=True), strict=True):
        if not is_valid:
            values.append(None)
            continue
        text = encoded.get(key)
        if text is None:
            text = encoded[key] = orjson.dumps(dict(zip(names, key, strict=True))).decode()
        values.append(text)
    return values


def _column_values(column: pa.Array | pa.ChunkedArray, name: str) -> list[Any]:
    """One column of a batch as Python values for binding: JSON columns and structs as JSON text, timestamps
    as ISO 8601 text in UTC (formatted by Arrow: much cheaper than datetime objects through the driver)."""
    if isinstance(column.type, pa.ExtensionType):
        column = column.storage if isinstance(column, pa.Array) else pa.chunked_array(
            [chunk.storage for chunk in column.chunks], column.type.storage_type)
    if pa.types.is_struct(column.type):
        return _struct_json(column)
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            raise ValueError(f"{name}: timestamps must carry a time zone (UTC)")
        wall_clock = column.cast(pa.timestamp(column.type.unit))  # the UTC wall clock (tz dropped, values kept)
        return pc.binary_join_element_wise(wall_clock.cast(pa.string()), "+00:00", "").to_pylist()
    return column.to_pylist()


class RedshiftTable:
    """One of the pipeline's tables in a Redshift schema (or the PostgreSQL stand-in's): its statements, its
    connection and transactions. Subclasses name the table and load it."""

    engine = "redshift"
    transient_errors: tuple[type[BaseException], ...] = (redshift_connector.InterfaceError,
                                                         redshift_connector.OperationalError, OSError)
    #: The table's name (``{table}`` in the statements, schema-qualified).
    table_name: str

    def __init__(self, connect: Callable[[], redshift_connector.Connection], *, schema: str = "public",
                 dialect: Dialect = "redshift") -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}")
        self._connect = connect
        self.schema = schema
        self.dialect: Dialect = dialect
        self._table = f"{quote_identifier(schema)}.{quote_identifier(self.table_name)}"
        self._conn: redshift_connector.Connection | None = None

    def statement(self, name: str, **parts: str) -> str:
        """The statement ``name`` for this table and dialect, ``{table}``/``{schema}`` and ``parts`` filled in."""
        return statement_text(name, self.dialect).format(table=self._table, schema=quote_identifier(self.schema),
                                                         **parts)

    # -- connection and transactions -------------------------------------------------------------------

    def _connection(self) -> redshift_connector.Connection:
        if self._conn is None:
            conn = self._connect()
            # The driver keeps each distinct statement + parameter types as a server-side prepared statement,
            # 1,000 by default; a batch's types change with where its NULLs fall, so a big load would hold one
            # per batch (~2.5 MB each on PostgreSQL at 1,000 rows) until the transaction's next DDL. Few are
            # reused: keep the most recent ones only.
            if conn.max_prepared_statements > MAX_PREPARED_STATEMENTS:  # 0 (unnamed statements) is fine too
                conn.max_prepared_statements = MAX_PREPARED_STATEMENTS
            self._conn = conn
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[redshift_connector.Cursor]:
        """One transaction: committed when the block ends, rolled back when it raises (a connection that
        failed transiently is dropped, so that the engine's retry connects anew)."""
        conn = self._connection()
        cursor = conn.cursor()
        try:
            yield cursor
            conn.commit()
        except BaseException as error:
            try:
                conn.rollback()
            except Exception:  # the connection itself is gone: nothing to roll back
                self._discard()
            else:
                if isinstance(error, self.transient_errors):
                    self._discard()
            raise
        finally:
            with suppress(Exception):  # a cursor of a dead connection
                cursor.close()

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):  # the socket may already be gone
                conn.close()

    def _add_missing_columns(self, create: str) -> None:
        """Add the columns of ``<create>.sql`` the table lacks (created by an older version), last; never drops."""
        present = {row[0] for row in self._query(self.statement("table_columns"), [self.schema, self.table_name])}
        for name, definition in table_column_definitions(self.dialect, create).items():
            if name not in present:  # Redshift adds one column per ALTER TABLE, each in its own transaction
                log.info("adding column %s to %s", name, self._table)
                with self._transaction() as cursor:
                    cursor.execute(self.statement("add_column", column=definition))

    def _query(self, sql: str, parameters: Sequence[Any]) -> list[tuple]:
        with self._transaction() as cursor:
            cursor.execute(sql, tuple(parameters))
            return [tuple(row) for row in cursor.fetchall() or ()]

    def close(self) -> None:
        """Close the connection (a later call connects again)."""
        self._discard()



class RedshiftEventTable(RedshiftTable):
    """``<schema>.platform_events`` on Redshift (or on the PostgreSQL stand-in, ``dialect="postgres"``)."""

    table_name = TABLE
    #: No object-store URI is loaded directly (yet): a lake on S3 is copied through this machine, then uploaded to
    #: the COPY prefix when a bucket is configured. A COPY straight from the lake's objects needs a manifest
    #: (``"meta": {"content_length": ...}`` per Parquet file: the sizes are in the Delta log); see the docstring.
    uri_schemes: tuple[str, ...] = ()
    #: One connection, one load at a time (its transactions are the loads' atomicity).
    parallel_loads = 1

    def __init__(self, connect: Callable[[], redshift_connector.Connection], *, schema: str = "public",
                 dialect: Dialect = "redshift", s3_bucket: str | None = None, s3_prefix: str = "",
                 iam_role: str | None = None, uploader: Uploader | None = None, batch_rows: int = 1_000,
                 batch_bytes: int = 8 << 20) -> None:
        super().__init__(connect, schema=schema, dialect=dialect)
        if (s3_bucket is None) != (iam_role is None):
            raise ValueError("the S3 path needs both s3_bucket and iam_role")
        if s3_bucket is not None and uploader is None:
            raise ValueError("the S3 path needs an uploader")
        self.s3_bucket = s3_bucket
        self.s3_prefix = s3_prefix.strip("/")
        self.iam_role = iam_role
        self.uploader = uploader
        self.batch_rows = max(1, min(batch_rows, MAX_PARAMETERS // len(COLUMNS)))
        self.batch_bytes = batch_bytes

    # -- statements ---------------------------------------------------------------------------------------

    def ddl(self) -> list[str]:
        """The statements :meth:`ensure_table` runs on an empty database (in this table's dialect)."""
        return [self.statement("create_schema"), self.statement("create_table")]

    def insert_statement(self, rows: int) -> str:
        """The multi-row INSERT into staging for ``rows`` rows (bound parameters)."""
        json_parameter = DIALECTS[self.dialect].json_parameter
        placeholders = {name: json_parameter if name in JSON_COLUMNS else
                        "CAST(%s AS TIMESTAMPTZ)" if name in TIMESTAMP_COLUMNS else "%s" for name in COLUMNS}
        row = "(" + ", ".join(placeholders[name] for name in COLUMNS) + ")"
        return self.statement("insert_staging", columns=self._column_list(), rows=", ".join([row] * rows))

    def copy_statement(self, load_id: str) -> str:
        """The COPY that fills staging from the load's files on S3."""
        if self.s3_bucket is None or self.iam_role is None:
            raise ValueError("no S3 bucket / IAM role configured")
        return self.statement("copy_staging", source=quote_literal(f"s3://{self.s3_bucket}/{self._s3_key(load_id)}"),
                              iam_role=quote_literal(self.iam_role))

    def _s3_key(self, load_id: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._=-]+", load_id):
            raise ValueError(f"load_id not usable in an S3 key: {load_id!r}")
        return f"{self.s3_prefix}/{load_id}/" if self.s3_prefix else f"{load_id}/"

    @staticmethod
    def _column_list() -> str:
        return ", ".join(quote_identifier(name) for name in COLUMNS)

    # -- RemoteEventTable --------------------------------------------------------------------------------

    def ensure_table(self) -> None:
        """Create the schema and table when missing; add the columns ``create_table.sql`` gained (never drops).

        Added columns go last, so a column the schema gains goes last in ``WAREHOUSE_SCHEMA`` and in
        ``create_table.sql`` too (COPY maps Parquet columns by position), nullable (the table holds rows)."""
        with self._transaction() as cursor:
            for sql in self.ddl():
                cursor.execute(sql)
        self._add_missing_columns("create_table")

    def merge_files(self, day: date, paths: Sequence[Source], load_id: str) -> int:
        """Upsert the files' rows (all of ``day``) by event_id: delete+insert through staging, one transaction."""
        paths = _local(paths)
        if not paths:
            return 0
        start, end = day_range(day)
        self._upload(paths, load_id)
        with self._transaction() as cursor:
            self._stage(cursor, paths, load_id)
            cursor.execute(self.statement("merge_delete"), (start, end))
            loaded = self._insert_from_staging(cursor)
            cursor.execute(self.statement("drop_staging"))
        log.info("redshift merge %s: %d rows into %s (%s)", load_id, loaded, day, self._table)
        return loaded

    def replace_day(self, day: date, paths: Sequence[Source], load_id: str) -> int:
        """Make ``day`` hold exactly the files' rows (none: emptied), in one transaction."""
        paths = _local(paths)
        start, end = day_range(day)
        self._upload(paths, load_id)
        with self._transaction() as cursor:
            if paths:
                self._stage(cursor, paths, load_id)
            cursor.execute(self.statement("delete_day"), (start, end))
            loaded = 0
            if paths:
                loaded = self._insert_from_staging(cursor)
                cursor.execute(self.statement("drop_staging"))
        log.info("redshift replace %s: day %s now %d rows (%s)", load_id, day, loaded, self._table)
        return loaded

    def fill_days(self, days: Mapping[date, Sequence[Source]], load_id: str) -> dict[date, int]:
        """Load days the table holds no row of: :meth:`replace_day` for each (the delete of an empty day costs
        nothing; one transaction per day)."""
        return {day: self.replace_day(day, paths, f"{load_id}-{day:%Y%m%d}") for day, paths in sorted(days.items())}

    def days(self) -> set[date]:
        """The UTC days holding at least one row."""
        return {_as_date(row[0]) for row in self._query(self.statement("days"), ())}

    def day_counts(self, day: date) -> dict[str, int]:
        """Rows held for ``day``, by event_type."""
        return {event_type: int(n) for event_type, n in self._query(self.statement("day_counts"), day_range(day))}

    def duplicate_event_ids(self, day: date, limit: int = 20) -> list[tuple[str, int]]:
        """Event ids held more than once on ``day``, with how often."""
        rows = self._query(self.statement("duplicate_event_ids"), [*day_range(day), int(limit)])
        return [(event_id, int(n)) for event_id, n in rows]

    def event_ids(self, day: date) -> set[str]:
        """Every event id held for ``day``."""
        return {row[0] for row in self._query(self.statement("event_ids"), day_range(day))}

    def user_row_count(self, user_id: str) -> int:
        """Rows held for ``user_id`` over every day."""
        return int(self._query(self.statement("user_row_count"), [user_id])[0][0])

    def amounts(self, day: date) -> dict[str, tuple[Decimal, int]]:
        return {event_type: (Decimal(total or 0), int(overflowed))
                for event_type, total, overflowed in self._query(self.statement("day_amounts"), day_range(day))}

    # -- governance in place -------------------------------------------------------------------------------

    @staticmethod
    def _cutoff(cutoffs: Mapping[str, datetime]) -> tuple[str, list[Any]]:
        """The cut-off of a row's event type as a CASE over bound parameters (NULL for a type without one: never
        expired), and those parameters in order."""
        if not cutoffs:
            raise ValueError("no cut-offs: the retention policy is empty")
        branches, parameters = [], []
        for event_type, cutoff in sorted(cutoffs.items()):
            branches.append("WHEN %s THEN CAST(%s AS TIMESTAMPTZ)")
            parameters += [event_type, cutoff]
        return f"CASE event_type {' '.join(branches)} END", parameters

    @staticmethod
    def _placeholders(values: Sequence[Any]) -> str:
        return ", ".join(["%s"] * len(values))

    def expired_by_day(self, cutoffs: Mapping[str, datetime], before: datetime) -> list[tuple[date, str, int, int]]:
        cutoff, parameters = self._cutoff(cutoffs)
        rows = self._query(self.statement("expired_by_day", cutoff=cutoff), [*parameters, before])
        return [(_as_date(day), category, int(expired), int(total)) for day, category, expired, total in rows]

    def delete_expired(self, cutoffs: Mapping[str, datetime], start: datetime, end: datetime) -> int:
        cutoff, parameters = self._cutoff(cutoffs)
        with self._transaction() as cursor:
            cursor.execute(self.statement("delete_expired", cutoff=cutoff), (start, end, *parameters))
            return int(cursor.rowcount)

    def user_rows(self, user_id: str) -> list[tuple[str, datetime, str | None]]:
        return [(event_id, _as_utc(stamp), event_type)
                for event_id, stamp, event_type in self._query(self.statement("user_rows"), [user_id])]

    def held_event_ids(self, event_ids: Sequence[str], start: datetime, end: datetime) -> list[str]:
        held: list[str] = []
        for chunk in _chunks(event_ids):
            sql = self.statement("held_event_ids", event_ids=self._placeholders(chunk))
            held += [row[0] for row in self._query(sql, [start, end, *chunk])]
        return held

    def refresh_events(self, event_ids: Sequence[str], start: datetime, end: datetime, paths: Sequence[Source],
                       load_id: str) -> int:
        """The events' rows within [start, end) deleted and the files' rows inserted, in one transaction."""
        paths = _local(paths)
        self._upload(paths, load_id)
        with self._transaction() as cursor:
            if paths:
                self._stage(cursor, paths, load_id)
            for chunk in _chunks(event_ids):
                cursor.execute(self.statement("delete_events", event_ids=self._placeholders(chunk)),
                               (start, end, *chunk))
            loaded = 0
            if paths:
                loaded = self._insert_from_staging(cursor)
                cursor.execute(self.statement("drop_staging"))
        log.info("redshift refresh %s: %d event(s), %d rows written back (%s)", load_id, len(event_ids), loaded,
                 self._table)
        return loaded

    def payloads(self) -> list[tuple[str, str | None, str | None, str | None, str | None]]:
        return [tuple(row) for row in self._query(self.statement("payloads"), ())]

    def ip_user_agents(self) -> list[tuple[str | None, str | None, int]]:
        return [(ip, agent, int(n)) for ip, agent, n in self._query(self.statement("ip_user_agents"), ())]

    # -- loading -------------------------------------------------------------------------------------------

    def _upload(self, paths: Sequence[Path], load_id: str) -> None:
        if self.s3_bucket is not None and paths:
            assert self.uploader is not None
            self.uploader(self.s3_bucket, self._s3_key(load_id), list(paths))

    def _stage(self, cursor: redshift_connector.Cursor, paths: Sequence[Path], load_id: str) -> None:
        """A fresh staging table holding the files' rows."""
        cursor.execute(self.statement("drop_staging"))
        cursor.execute(self.statement("create_staging"))
        if self.s3_bucket is not None:
            cursor.execute(self.copy_statement(load_id))
            cursor.execute(self.statement("fix_copied_json"))
        else:
            self.insert_rows(cursor, paths)

    def _insert_from_staging(self, cursor: redshift_connector.Cursor) -> int:
        cursor.execute(self.statement("insert_from_staging", columns=self._column_list()))
        return max(cursor.rowcount, 0)

    def insert_rows(self, cursor: redshift_connector.Cursor, paths: Sequence[Path]) -> int:
        """The files' rows into staging by batched multi-row INSERTs; returns the rows sent."""
        sent = 0
        statements: dict[int, str] = {}
        for path in paths:
            parquet = pq.ParquetFile(path)
            missing = [name for name in COLUMNS if name not in parquet.schema_arrow.names]
            if missing:
                raise ValueError(f"{path}: columns missing from the file: {missing}")
            for batch in parquet.iter_batches(batch_size=self.batch_rows, columns=list(COLUMNS)):
                for part in self._split(batch):
                    n = part.num_rows
                    columns = [_column_values(part.column(i), name) for i, name in enumerate(COLUMNS)]
                    if n not in statements:
                        statements[n] = self.insert_statement(n)
                    cursor.execute(statements[n], tuple(chain.from_iterable(zip(*columns, strict=True))))
                    sent += n
        return sent

    def _split(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        """``batch`` in slices of ``batch_rows`` rows or of a power of two below it (fewer when the batch's
        Arrow size would pass ``batch_bytes``). The driver scans each distinct statement text char by char
        once per connection (~0.5 s for 1,000 rows): with these sizes there are at most ~11 of them."""
        n = batch.num_rows
        if n == 0:
            return
        step = max(1, min(self.batch_rows, int(self.batch_bytes * n // max(batch.nbytes, 1))))
        if step < self.batch_rows:
            step = 1 << (step.bit_length() - 1)
        offset = 0
        while offset < n:
            size = min(step, n - offset)
            if size < self.batch_rows:
                size = 1 << (size.bit_length() - 1)
            yield batch.slice(offset, size)
            offset += size


#: Event ids bound in one statement (each chunk of an IN list; far below the protocol's 32,767 parameters).
ID_CHUNK = 10_000


def _chunks(values: Sequence[str]) -> Iterator[list[str]]:
    values = list(values)
    for offset in range(0, len(values), ID_CHUNK):
        yield values[offset:offset + ID_CHUNK]


def _local(sources: Sequence[Source]) -> list[Path]:
    """The sources as local paths: this engine reads no object-store URI itself (the delivery copies such files to
    this machine first; see ``uri_schemes``)."""
    remote = [s for s in sources if isinstance(s, str)]
    if remote:
        raise ValueError(f"redshift loads local files here, not {remote[0]!r}: the delivery copies lake objects "
                         "to local files first")
    return [Path(s) for s in sources]


def _as_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def _as_utc(value: datetime) -> datetime:
    """A TIMESTAMPTZ as an aware UTC datetime (naive values are UTC: the session's zone is UTC on Redshift)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
