"""The BigQuery engine's ``platform_events`` (a :class:`~workdev_pipeline.warehouses.remote.RemoteEventTable`),
through the real ``google-cloud-bigquery`` client. :class:`BigQueryTable` is what every table of the pipeline
there shares (client, statements, creation, staging tables, load jobs); ``bigquery_aggregations.py`` builds
``event_aggregations`` on it.

**The table** is created by ``client.create_table`` from a schema derived from ``WAREHOUSE_SCHEMA`` (JSON
columns for event_data/metadata, RECORDs for geo_location/device_info, DAY partitioning on ``timestamp``
-- the same as ``PARTITION BY DATE(timestamp)`` -- and ``CLUSTER BY event_type, user_id``). Not a DDL
statement: the emulator records neither the clustering, nor function-form partitioning, nor JSON column
types of a ``CREATE TABLE`` in its table metadata, while the API form means the same on both. A field the Arrow
schema gained is added by ``add_column.sql`` (ALTER TABLE ... ADD COLUMN, NULLABLE); when the table's metadata
still lacks it afterwards (the emulator changes its storage but not its catalog), by ``client.update_table``.

**Loads** are Parquet load jobs (never streaming inserts) of the lake's data files into a staging table per load
id, with a deterministic job id (:meth:`BigQueryTable.load_job_id`): an existing job with that id is looked up
first and its result used (the emulator re-runs a job whose id exists instead of answering 409), a Conflict on
creation means the same, so a retried load is applied once. A day's files go in ONE job (a list of URIs: the
lake's ``gs://`` objects as they are when the lake lives in Cloud Storage, ``file://`` links for a server on this
machine); only uploads of local files to the real service are one job per file. The staged rows then reach the
table by one statement (``sql/warehouse/bigquery/``), and the staging table is dropped:

* ``merge_files``: ``merge_day.sql``, a MERGE on event_id restricted to the day's timestamp range (UPDATE every
  column / INSERT with the columns listed: the emulator has no ``INSERT ROW``);
* ``replace_day``: ``replace_day.sql``, a MERGE on event_id whose source is the staged rows plus the day's rows
  that are not staged (marked to be deleted) -- the day's deletion, update and insertion in ONE statement (not
  ``WHEN NOT MATCHED BY SOURCE ... THEN DELETE``, which means the same but takes the emulator time proportional
  to the day's rows times the table's),
  atomic on BigQuery and on the emulator. Not ``BEGIN TRANSACTION; DELETE; INSERT; COMMIT TRANSACTION;``:
  the emulator runs such a script (and rolls it back on error) but does not pass query parameters into
  scripts, so the day bounds would have to be spliced into the text. No files: ``delete_day.sql``;
* ``refresh_events`` (erasure in place): ``refresh_events.sql``, the same shape restricted to a list of event ids
  (array parameter) within their days; no lake rows: ``delete_events.sql``.

**Governance in place**: retention is ``expired_by_day.sql`` (the plan) and ``delete_expired.sql`` (one DELETE
bounded by the days and by a CASE of the policy's cut-offs per event type, all bound parameters); the erasure
checks read ``user_rows``, ``payloads`` and ``ip_user_agents``.
The emulator reports no DML row counts (``delete_expired`` then returns -1).

**JSON**: a batch load cannot fill a JSON column from Parquet on BigQuery, so event_data/metadata are STRING in
staging (the Parquet JSON strings as they are) and ``PARSE_JSON`` turns them into JSON in the MERGE (works on
the emulator too). Structs load as RECORDs, timestamps as TIMESTAMP (microseconds, UTC).

**Emulator** (``bqemulator``, :func:`emulator_client`), besides the above: its upload endpoint ignores the
job id a load job asks for, so a table whose client talks to a server on this machine (a loopback endpoint)
loads each file by a ``file://`` URI with ``load_table_from_uri`` instead of uploading it, and the job id is
honoured (``local_file_uris``; the URI is a symbolic link in a plain directory, as DuckDB would read the lake's
``event_date=...`` directories as Hive partitions); it reads ``gs://`` from nowhere, so the ``gs://`` path is not
proven here. It reads Parquet columns by position (the lake's files are in the table's column order,
``WAREHOUSE_SCHEMA`` without the partition column), reports a load job's ``output_rows`` as the destination's row
count (rows loaded are counted from the files' metadata instead), and accepts an upload only
with a media type it knows (see :func:`emulator_client`). Partition decorators (``table$YYYYMMDD``) are never
used; rows are read with ``result()``, never ``to_dataframe``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import logging
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import requests
import urllib3
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY

from workdev_pipeline.ingest.schema import WAREHOUSE_SCHEMA
from workdev_pipeline.settings import SQL_DIR
from workdev_pipeline.warehouses.remote import Source

log = logging.getLogger(__name__)

SQL_ROOT = SQL_DIR / "warehouse" / "bigquery"
TABLE = "platform_events"
#: Clustering of the table (partitioning: DAY on ``timestamp``).
CLUSTERING_FIELDS = ("event_type", "user_id")
PARTITION_FIELD = "timestamp"
#: How long an abandoned staging table lives (a crashed load's; a finished load drops its own).
STAGING_EXPIRATION = timedelta(days=1)
#: Load-job attempts under one deterministic id family (a failed job's id cannot be reused).
MAX_JOB_ATTEMPTS = 10

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    api_exceptions.ServiceUnavailable,
    api_exceptions.InternalServerError,
    api_exceptions.TooManyRequests,
    api_exceptions.BadGateway,
    api_exceptions.GatewayTimeout,
    # the client's own retries ran out: its predicate (DEFAULT_RETRY) only retries transient failures
    api_exceptions.RetryError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    urllib3.exceptions.ProtocolError,  # urllib3's ConnectionError
    urllib3.exceptions.NewConnectionError,
    auth_exceptions.TransportError,
    ConnectionError,
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JOB_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TABLE_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


# -- statements and schema -------------------------------------------------------------------------------


@cache
def statement_text(name: str) -> str:
    """The text of ``sql/warehouse/bigquery/<name>.sql`` (``${...}`` placeholders for identifiers only)."""
    path = SQL_ROOT / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {path}")
    return path.read_text()


def quote_identifier(name: str) -> str:
    """A column name as a quoted identifier (only plain names: they come from the Arrow schema)."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain BigQuery column name: {name!r}")
    return f"`{name}`"


def quote_table(project: str, dataset: str, table: str) -> str:
    """``project.dataset.table`` as one quoted identifier."""
    for part in (project, dataset, table):
        if not part or any(c in part for c in "`\\\n"):
            raise ValueError(f"not a usable BigQuery name: {part!r}")
    return f"`{project}.{dataset}.{table}`"


def is_json(arrow_type: pa.DataType) -> bool:
    return isinstance(arrow_type, pa.BaseExtensionType) and arrow_type.extension_name == "arrow.json"


def _scalar_type(arrow_type: pa.DataType) -> str:
    if is_json(arrow_type):
        return "JSON"
    if isinstance(arrow_type, pa.BaseExtensionType):
        return _scalar_type(arrow_type.storage_type)
    checks = (
        (pa.types.is_string, "STRING"), (pa.types.is_large_string, "STRING"), (pa.types.is_integer, "INT64"),
        (pa.types.is_floating, "FLOAT64"), (pa.types.is_boolean, "BOOL"), (pa.types.is_timestamp, "TIMESTAMP"),
        (pa.types.is_date, "DATE"), (pa.types.is_binary, "BYTES"), (pa.types.is_large_binary, "BYTES"),
    )
    for check, name in checks:
        if check(arrow_type):
            return name
    if pa.types.is_decimal(arrow_type):
        return _decimal_type(arrow_type)
    raise TypeError(f"no BigQuery type for Arrow type {arrow_type}")


def _decimal_type(arrow_type: pa.DataType) -> str:
    """The BigQuery type holding every value of an Arrow decimal exactly: NUMERIC (29 integer digits, 9 decimals:
    ``decimal128(38, 9)``, the lake's amounts), BIGNUMERIC (38 and 38) for wider ones; anything else is refused
    rather than rounded."""
    precision, scale = arrow_type.precision, arrow_type.scale
    for name, integer_digits, decimals in (("NUMERIC", 29, 9), ("BIGNUMERIC", 38, 38)):
        if 0 <= scale <= decimals and precision - scale <= integer_digits:
            return name
    raise TypeError(f"no BigQuery type holds Arrow type {arrow_type} exactly")


def schema_field(field: pa.Field, *, staging: bool = False) -> bigquery.SchemaField:
    """The BigQuery column of an Arrow field. Staging columns are all NULLABLE and hold JSON as STRING."""
    mode = "NULLABLE" if staging or field.nullable else "REQUIRED"
    if pa.types.is_struct(field.type):
        if any(is_json(child.type) for child in field.type):
            raise TypeError(f"{field.name}: JSON inside a STRUCT is not supported (staging holds JSON as STRING)")
        children = [schema_field(child, staging=staging) for child in field.type]
        return bigquery.SchemaField(field.name, "RECORD", mode=mode, fields=children)
    kind = _scalar_type(field.type)
    if staging and kind == "JSON":
        kind = "STRING"
    return bigquery.SchemaField(field.name, kind, mode=mode)


def sql_type(field: pa.Field) -> str:
    """The GoogleSQL type of an Arrow field (``STRUCT<country STRING, ...>`` for structs)."""
    if pa.types.is_struct(field.type):
        inner = ", ".join(f"{quote_identifier(f.name)} {sql_type(f)}" for f in field.type)
        return f"STRUCT<{inner}>"
    return _scalar_type(field.type)


def table_schema(schema: pa.Schema, *, staging: bool = False) -> list[bigquery.SchemaField]:
    return [schema_field(f, staging=staging) for f in schema]


def day_range(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _digest(sources: Sequence[Source]) -> str:
    """What identifies a load's content: the file's sha256 (one file), the sha256 of the files' digests (several),
    the sha256 of the URIs (object-store files: the lake never rewrites a file under its name)."""
    if not sources:
        raise ValueError("no files to load")
    if isinstance(sources[0], str):
        return hashlib.sha256("\n".join(map(str, sources)).encode()).hexdigest()
    digests = [file_digest(Path(path)) for path in sources]
    return digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()


# -- clients ---------------------------------------------------------------------------------------------


def service_client(project: str | None, *, location: str | None = None, key: str | None = None) -> bigquery.Client:
    """A client of BigQuery itself: with ``key`` (a base64 service-account key, decoded in memory) its credentials
    and, when ``project`` is unset, its project; without, the environment's default credentials and project."""
    if not key:
        return bigquery.Client(project=project, location=location)
    from google.oauth2 import service_account

    try:
        info = json.loads(base64.b64decode(key, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise auth_exceptions.MalformedError(f"BIGQUERY_CREDENTIALS is not a base64 service-account key "
                                             f"({type(exc).__name__})") from None
    credentials = service_account.Credentials.from_service_account_info(info)
    return bigquery.Client(project=project or credentials.project_id, location=location, credentials=credentials)


def emulator_client(endpoint: str, project: str, *, location: str | None = None) -> bigquery.Client:
    """A client for a BigQuery emulator at ``endpoint`` (``http://127.0.0.1:9050``): anonymous credentials."""
    # The client uploads a load job's file with the media type "*/*" (a module constant, used by the
    # multipart and resumable uploads alike). Real BigQuery takes it; the emulator's upload endpoint only
    # accepts the types it knows and answers 400 to "*/*". application/octet-stream is accepted by both, so it
    # is set -- process-wide, as the constant is -- only when a client for another endpoint is built here.
    import google.cloud.bigquery.client as client_module

    client_module._GENERIC_CONTENT_TYPE = "application/octet-stream"
    return bigquery.Client(project=project, credentials=AnonymousCredentials(), location=location,
                           client_options=ClientOptions(api_endpoint=endpoint))


def _api_host(client: bigquery.Client) -> str | None:
    try:
        return urlparse(client._connection.API_BASE_URL).hostname
    except AttributeError:  # pragma: no cover - a client without a connection
        return None


def serves_this_machine(client: bigquery.Client) -> bool:
    """True when the client's API endpoint is a loopback address (an emulator on this machine)."""
    host = _api_host(client)
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- the table -------------------------------------------------------------------------------------------


class BigQueryTable:
    """One of the pipeline's tables in a BigQuery dataset: its client, statements, creation (schema from Arrow,
    partitioning, clustering), staging tables and load jobs with deterministic ids (see the module's docstring
    for how loads stay exactly-once). Subclasses name the table and what is done with the staged rows."""

    engine = "bigquery"
    transient_errors: tuple[type[BaseException], ...] = TRANSIENT_ERRORS
    #: The table's name and columns unless given, its time partitioning (type, column) and clustering.
    default_table: str
    default_schema: pa.Schema
    partitioning: tuple[str, str]
    clustering_fields: tuple[str, ...]

    def __init__(self, client: bigquery.Client, dataset: str, *, table: str | None = None,
                 location: str | None = None, schema: pa.Schema | None = None, local_file_uris: bool | None = None,
                 retry_deadline: float = 60.0, job_timeout: float | None = 600.0) -> None:
        """``local_file_uris``: load files by ``file://`` URI instead of uploading them (only for a server on
        this machine; None: when the client's endpoint is a loopback address). ``retry_deadline``: seconds
        the client retries a failing API call before raising (the engine retries on top, with backoff)."""
        table = table or self.default_table
        schema = schema if schema is not None else self.default_schema
        self.client = client
        self.project = client.project
        self.dataset = dataset
        self.table = table
        self.location = location if location is not None else client.location
        self.schema = schema
        self.local_file_uris = serves_this_machine(client) if local_file_uris is None else local_file_uris
        self.parallel_loads = 1 if serves_this_machine(client) else getattr(self, "concurrent_loads", 1)
        self.retry: Retry = DEFAULT_RETRY.with_timeout(retry_deadline)
        self.job_timeout = job_timeout
        self.table_id = f"{self.project}.{dataset}.{table}"
        self._table_sql = quote_table(self.project, dataset, table)
        self._ensured = False
        for name in schema.names:
            quote_identifier(name)

    # -- plumbing ------------------------------------------------------------------------------------
    def statement(self, name: str, **identifiers: str) -> str:
        """A statement of ``sql/warehouse/bigquery/`` with the table (and other identifiers) substituted."""
        return Template(statement_text(name)).substitute(table=self._table_sql, **identifiers)

    def _query(self, sql: str, parameters: Iterable[Any] = ()) -> bigquery.table.RowIterator:
        config = bigquery.QueryJobConfig(query_parameters=list(parameters), use_legacy_sql=False)
        job = self.client.query(sql, job_config=config, location=self.location, retry=self.retry, job_retry=None)
        return job.result(retry=self.retry, timeout=self.job_timeout)

    # -- DDL -----------------------------------------------------------------------------------------
    def ensure_table(self) -> None:
        self.client.create_dataset(bigquery.Dataset(f"{self.project}.{self.dataset}"), exists_ok=True,
                                   retry=self.retry)
        wanted = bigquery.Table(self.table_id, schema=table_schema(self.schema))
        kind, column = self.partitioning
        wanted.time_partitioning = bigquery.TimePartitioning(type_=kind, field=column)
        wanted.clustering_fields = list(self.clustering_fields)
        table = self.client.create_table(wanted, exists_ok=True, retry=self.retry)
        held = {f.name for f in table.schema}
        missing = [f for f in self.schema if f.name not in held]
        if missing:
            self._add_columns(missing)
        self._ensured = True

    def _add_columns(self, fields: Sequence[pa.Field]) -> None:
        for field in fields:
            column = f"{quote_identifier(field.name)} {sql_type(field)}"
            self._query(self.statement("add_column", column=column))
            log.info("bigquery: added column %s to %s", field.name, self.table_id)
        table = self.client.get_table(self.table_id, retry=self.retry)
        held = {f.name for f in table.schema}
        unrecorded = [schema_field(f.with_nullable(True)) for f in fields if f.name not in held]
        if unrecorded:  # the emulator: ALTER TABLE changed the storage, not the table's metadata
            table.schema = [*table.schema, *unrecorded]
            self.client.update_table(table, ["schema"], retry=self.retry)

    def _ensure_once(self) -> None:
        if not self._ensured:
            self.ensure_table()

    # -- loads ---------------------------------------------------------------------------------------
    def staging_table_name(self, load_id: str) -> str:
        """``<table>__stage_<load id, sanitised>_<sha256 of the load id>[:8]``."""
        safe = _TABLE_UNSAFE.sub("_", load_id)[:200]
        tag = hashlib.sha256(load_id.encode()).hexdigest()[:8]
        return f"{self.table}__stage_{safe}_{tag}"

    def staging_table_id(self, load_id: str) -> str:
        return f"{self.project}.{self.dataset}.{self.staging_table_name(load_id)}"

    def load_job_id(self, load_id: str, staging: bigquery.Table, digest: str, attempt: int = 0) -> str:
        """``workdev_<dataset>_<table>_<load_id>_<staging created, ms>_<sha256 of the file>[:16]``.

        The staging table's creation time is part of it: a load redone after its staging table was dropped
        (a later rebuild of the same day with the same bytes, a second merge of the same files) loads again,
        into the new staging table, instead of finding the job that filled the dropped one. ``attempt`` > 0
        is a new job after a failed one (a failed load applied nothing; its id cannot be reused)."""
        created = int(staging.created.timestamp() * 1000) if staging.created else 0
        job_id = f"workdev_{self.dataset}_{self.table}_{load_id}_{created}_{digest[:16]}"
        if attempt:
            job_id += f"_r{attempt}"
        job_id = _JOB_ID_UNSAFE.sub("_", job_id)
        if len(job_id) > 1024:
            job_id = f"workdev_{hashlib.sha256(job_id.encode()).hexdigest()}"
        return job_id

    def _staging(self, load_id: str) -> bigquery.Table:
        """The load's staging table (kept when it already exists with the right columns: a redone load)."""
        table_id = self.staging_table_id(load_id)
        columns = table_schema(self.schema, staging=True)
        wanted = bigquery.Table(table_id, schema=columns)
        wanted.expires = datetime.now(UTC) + STAGING_EXPIRATION
        table = self.client.create_table(wanted, exists_ok=True, retry=self.retry)
        if [f.name for f in table.schema] != [f.name for f in columns]:  # left by a load of an older schema
            self.client.delete_table(table_id, not_found_ok=True, retry=self.retry)
            table = self.client.create_table(wanted, retry=self.retry)
        return table

    def _drop_staging(self, load_id: str) -> None:
        self.client.delete_table(self.staging_table_id(load_id), not_found_ok=True, retry=self.retry)

    def load_file(self, staging: bigquery.Table, path: Source, load_id: str) -> tuple[bigquery.LoadJob, bool]:
        """Append one Parquet file to the staging table (see :meth:`load_files`)."""
        return self.load_files(staging, [path], load_id)

    def load_files(self, staging: bigquery.Table, sources: Sequence[Source],
                   load_id: str) -> tuple[bigquery.LoadJob, bool]:
        """Append Parquet files to the staging table by ONE load job with a deterministic id (its digest: the
        file's sha256, or of the files' digests, or of the ``gs://`` URIs -- lake files never change under a
        name); returns the (finished) job and whether it already existed (a retried load: not applied a second
        time). Local files reach a server on this machine as ``file://`` URIs, ``gs://`` objects as they are;
        uploads (local files to BigQuery) are one job per file, so only one file may be given then."""
        uris = [s for s in sources if isinstance(s, str)]
        if uris and len(uris) != len(sources):
            raise ValueError("one load takes local files or object URIs, not both")
        if not uris and not self.local_file_uris and len(sources) != 1:
            raise ValueError("an upload takes one file per load job")
        digest = _digest(sources)
        for attempt in range(MAX_JOB_ATTEMPTS):
            job_id = self.load_job_id(load_id, staging, digest, attempt)
            job, existed = self._get_or_create_load_job(job_id, staging, sources)
            if existed and job.done(retry=self.retry) and job.error_result:
                log.warning("bigquery: load job %s had failed (%s); loading again", job_id, job.error_result)
                continue
            job.result(retry=self.retry, timeout=self.job_timeout)
            return job, existed
        raise RuntimeError(f"{MAX_JOB_ATTEMPTS} load jobs of {len(sources)} file(s) failed for load {load_id}")

    def _get_or_create_load_job(self, job_id: str, staging: bigquery.Table,
                                sources: Sequence[Source]) -> tuple[bigquery.LoadJob, bool]:
        try:
            return self.client.get_job(job_id, location=self.location, retry=self.retry), True
        except api_exceptions.NotFound:
            pass
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET, schema=staging.schema,
                                        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
                                        create_disposition=bigquery.CreateDisposition.CREATE_NEVER)
        try:
            if isinstance(sources[0], str):  # gs:// objects: BigQuery reads them itself
                job = self.client.load_table_from_uri(list(sources), staging.reference, job_id=job_id,
                                                      job_config=config, location=self.location, retry=self.retry)
            elif self.local_file_uris:
                # The emulator reads a local file with DuckDB's read_parquet, which takes a directory named
                # key=value (the lake's event_date=YYYY-MM-DD) for a Hive partition and adds a column; and it
                # does not decode percent escapes in file:// URIs. So it is given symbolic links to the files
                # in a directory of plain name, kept until the job has finished.
                with tempfile.TemporaryDirectory(prefix="workdev_bq_load_") as folder:
                    links = []
                    for i, path in enumerate(sources):
                        link = Path(folder) / f"part-{i:05d}.parquet"
                        link.symlink_to(Path(path).resolve())
                        links.append(f"file://{link}")
                    job = self.client.load_table_from_uri(links, staging.reference, job_id=job_id,
                                                          job_config=config, location=self.location,
                                                          retry=self.retry)
                    job.result(retry=self.retry, timeout=self.job_timeout)
            else:
                with open(sources[0], "rb") as f:
                    job = self.client.load_table_from_file(f, staging.reference, job_id=job_id,
                                                           job_config=config, location=self.location)
        except api_exceptions.Conflict:  # created by an earlier attempt whose answer was lost
            return self.client.get_job(job_id, location=self.location, retry=self.retry), True
        if job.job_id != job_id:
            log.warning("bigquery: the server ran load job %s instead of %s: it ignores requested job ids, so a "
                        "retried upload could be applied twice", job.job_id, job_id)
        return job, False

    def close(self) -> None:
        self.client.close()


class BigQueryEventTable(BigQueryTable):
    """``<project>.<dataset>.platform_events``: day partitions on ``timestamp``, clustered by event type and user,
    loaded by merges on event_id and day replaces, governed by statements bounded by day."""

    default_table = TABLE
    default_schema = WAREHOUSE_SCHEMA
    partitioning = (bigquery.TimePartitioningType.DAY, PARTITION_FIELD)
    clustering_fields = CLUSTERING_FIELDS
    #: A lake on Google Cloud Storage is loaded straight from its objects (no copy through this machine).
    uri_schemes: tuple[str, ...] = ("gs://",)
    #: Days a delivery loads at once on BigQuery (each its own staging table, load job and statement; the client is
    #: thread-safe and BigQuery runs jobs concurrently). One at a time on a server on this machine: the emulator
    #: serializes its writes, and 4 at once took it 2-3x longer for the same 1 M rows.
    concurrent_loads = 4

    @staticmethod
    def _range_parameters(start: datetime, end: datetime) -> list[bigquery.ScalarQueryParameter]:
        return [bigquery.ScalarQueryParameter("start", "TIMESTAMP", start),
                bigquery.ScalarQueryParameter("end", "TIMESTAMP", end)]

    @classmethod
    def _day_parameters(cls, day: date) -> list[bigquery.ScalarQueryParameter]:
        return cls._range_parameters(*day_range(day))

    def _stage(self, sources: Sequence[Source], start: datetime, end: datetime, load_id: str) -> int:
        """Load the files into the load's staging table; returns their rows. Local files are checked to hold only
        rows in [start, end) (a row outside would be left out) and empty ones skipped; ``gs://`` objects are
        counted by their load job."""
        if not sources:
            return 0
        if isinstance(sources[0], str):
            job, _ = self.load_files(self._staging(load_id), list(sources), load_id)
            return int(job.output_rows or 0)
        counted = [(Path(path), _check_range(Path(path), start, end)) for path in sources]
        counted = [(path, rows) for path, rows in counted if rows]
        if not counted:
            return 0
        staging = self._staging(load_id)
        if self.local_file_uris:  # one job for every file
            self.load_files(staging, [path for path, _ in counted], load_id)
        else:  # an upload is one file per job
            for path, _ in counted:
                self.load_file(staging, path, load_id)
        return sum(rows for _, rows in counted)

    def _apply(self, name: str, parameters: Sequence[Any], load_id: str) -> int:
        """Run ``merge_day`` / ``replace_day`` / ``refresh_events`` from the load's staging table; returns the rows
        it changed (as the server reports them)."""
        columns = self.schema.names
        staging = self.staging_table_name(load_id)
        # 'round': a number that a JSON value cannot hold exactly (beyond INT64/FLOAT64) is rounded instead of
        # failing the whole load ('exact', the default); the files keep the original text.
        source = ", ".join(f"PARSE_JSON({quote_identifier(c)}, wide_number_mode => 'round') AS {quote_identifier(c)}"
                           if is_json(self.schema.field(c).type) else quote_identifier(c) for c in columns)
        sql = self.statement(
            name,
            staging=quote_table(self.project, self.dataset, staging),
            source_columns=source,
            columns=", ".join(quote_identifier(c) for c in columns),
            insert_values=", ".join(f"source.{quote_identifier(c)}" for c in columns),
            update_set=", ".join(f"{quote_identifier(c)} = source.{quote_identifier(c)}" for c in columns
                                 if c != "event_id"),
        )
        return int(self._query(sql, parameters).num_dml_affected_rows or 0)

    def merge_files(self, day: date, paths: Sequence[Source], load_id: str) -> int:
        self._ensure_once()
        rows = self._stage(paths, *day_range(day), load_id)
        if rows:
            self._apply("merge_day", self._day_parameters(day), load_id)
        self._drop_staging(load_id)
        return rows

    def replace_day(self, day: date, paths: Sequence[Source], load_id: str) -> int:
        self._ensure_once()
        rows = self._stage(paths, *day_range(day), load_id)
        if rows:
            self._apply("replace_day", self._day_parameters(day), load_id)
        else:
            self._query(self.statement("delete_day"), self._day_parameters(day))
        self._drop_staging(load_id)
        return rows

    def fill_days(self, days: Mapping[date, Sequence[Source]], load_id: str) -> dict[date, int]:
        """Load days the table holds no row of (the caller knows it, holding the engine's lock): every file in ONE
        load job and ONE INSERT (``fill_days.sql`` over the days' span: it inserts only what was staged, so the
        rows of days in between are untouched) -- replace_day's result there, without its per-day MERGE, which on
        the emulator reads the whole table. Returns the rows loaded per day."""
        self._ensure_once()
        if not days:
            return {}
        counted: dict[date, int] = {}
        sources: list[Source] = []
        for day, paths in sorted(days.items()):
            counted[day] = 0
            for path in paths:
                if isinstance(path, str):
                    sources.append(path)
                    continue
                rows = _check_range(Path(path), *day_range(day))
                if rows:
                    counted[day] += rows
                    sources.append(path)
        if sources:
            start, end = day_range(min(days))[0], day_range(max(days))[1]
            staging = self._staging(load_id)
            if self.local_file_uris or isinstance(sources[0], str):
                job, _ = self.load_files(staging, sources, load_id)
                if isinstance(sources[0], str):  # gs:// objects: counted by the job, not per day
                    counted = {day: 0 for day in counted}
                    counted[min(counted)] = int(job.output_rows or 0)
            else:
                for path in sources:
                    self.load_file(staging, path, load_id)
            self._apply("fill_days", self._range_parameters(start, end), load_id)
            self._drop_staging(load_id)
        return counted

    # -- checks --------------------------------------------------------------------------------------
    def days(self) -> set[date]:
        self._ensure_once()
        return {row[0] for row in self._query(self.statement("days"))}

    def day_counts(self, day: date) -> dict[str, int]:
        return {row[0]: int(row[1]) for row in self._query(self.statement("day_counts"), self._day_parameters(day))}

    def duplicate_event_ids(self, day: date, limit: int = 20) -> list[tuple[str, int]]:
        parameters = [*self._day_parameters(day), bigquery.ScalarQueryParameter("limit", "INT64", limit)]
        return [(row[0], int(row[1])) for row in self._query(self.statement("duplicate_event_ids"), parameters)]

    def event_ids(self, day: date) -> set[str]:
        return {row[0] for row in self._query(self.statement("event_ids"), self._day_parameters(day))}

    def user_row_count(self, user_id: str) -> int:
        parameters = [bigquery.ScalarQueryParameter("user_id", "STRING", user_id)]
        rows = list(self._query(self.statement("user_row_count"), parameters))
        return int(rows[0][0]) if rows else 0

    def amounts(self, day: date) -> dict[str, tuple[Decimal, int]]:
        return {row[0]: (Decimal(row[1] or 0), int(row[2]))
                for row in self._query(self.statement("day_amounts"), self._day_parameters(day))}

    # -- governance in place -------------------------------------------------------------------------
    @staticmethod
    def _cutoff(cutoffs: Mapping[str, datetime]) -> tuple[str, list[bigquery.ScalarQueryParameter]]:
        """The cut-off of a row's event type as a CASE over bound parameters (NULL for a type without one: never
        expired), and those parameters."""
        if not cutoffs:
            raise ValueError("no cut-offs: the retention policy is empty")
        parameters: list[bigquery.ScalarQueryParameter] = []
        branches = []
        for i, (event_type, cutoff) in enumerate(sorted(cutoffs.items())):
            branches.append(f"WHEN @type_{i} THEN @cutoff_{i}")
            parameters += [bigquery.ScalarQueryParameter(f"type_{i}", "STRING", event_type),
                           bigquery.ScalarQueryParameter(f"cutoff_{i}", "TIMESTAMP", cutoff)]
        return f"CASE event_type {' '.join(branches)} END", parameters

    def expired_by_day(self, cutoffs: Mapping[str, datetime], before: datetime) -> list[tuple[date, str, int, int]]:
        self._ensure_once()
        cutoff, parameters = self._cutoff(cutoffs)
        rows = self._query(self.statement("expired_by_day", cutoff=cutoff),
                           [*parameters, bigquery.ScalarQueryParameter("before", "TIMESTAMP", before)])
        return [(row[0], row[1], int(row[2]), int(row[3])) for row in rows]

    def delete_expired(self, cutoffs: Mapping[str, datetime], start: datetime, end: datetime) -> int:
        self._ensure_once()
        cutoff, parameters = self._cutoff(cutoffs)
        result = self._query(self.statement("delete_expired", cutoff=cutoff),
                             [*parameters, *self._range_parameters(start, end)])
        return -1 if result.num_dml_affected_rows is None else int(result.num_dml_affected_rows)

    def user_rows(self, user_id: str) -> list[tuple[str, datetime, str | None]]:
        self._ensure_once()
        parameters = [bigquery.ScalarQueryParameter("user_id", "STRING", user_id)]
        return [(row[0], row[1], row[2]) for row in self._query(self.statement("user_rows"), parameters)]

    def held_event_ids(self, event_ids: Sequence[str], start: datetime, end: datetime) -> list[str]:
        self._ensure_once()
        parameters = [*self._range_parameters(start, end),
                      bigquery.ArrayQueryParameter("event_ids", "STRING", list(event_ids))]
        return [row[0] for row in self._query(self.statement("held_event_ids"), parameters)]

    def refresh_events(self, event_ids: Sequence[str], start: datetime, end: datetime, paths: Sequence[Source],
                       load_id: str) -> int:
        self._ensure_once()
        parameters = [*self._range_parameters(start, end),
                      bigquery.ArrayQueryParameter("event_ids", "STRING", list(event_ids))]
        rows = self._stage(paths, start, end, load_id)
        if rows:
            self._apply("refresh_events", parameters, load_id)
        else:
            self._query(self.statement("delete_events"), parameters)
        self._drop_staging(load_id)
        return rows

    def payloads(self) -> list[tuple[str, str | None, str | None, str | None, str | None]]:
        self._ensure_once()
        return [tuple(row.values()) for row in self._query(self.statement("payloads"))]

    def ip_user_agents(self) -> list[tuple[str | None, str | None, int]]:
        self._ensure_once()
        return [(row[0], row[1], int(row[2])) for row in self._query(self.statement("ip_user_agents"))]


def _check_range(path: Path, start: datetime, end: datetime) -> int:
    """Rows of the file; raises ValueError when one of them is not in [start, end) (it would be left out)."""
    metadata = pq.ParquetFile(path).metadata
    if metadata.num_rows == 0:
        return 0
    stamps = pq.read_table(path, columns=["timestamp"]).column("timestamp")
    bounds = pc.min_max(stamps).as_py()
    if bounds["min"] < start or bounds["max"] >= end:
        raise ValueError(f"{path} holds rows outside [{start.isoformat()}, {end.isoformat()}) "
                         f"({bounds['min']} .. {bounds['max']})")
    return metadata.num_rows
