"""AnalyticsClient: the Python port of the seed's AnalyticsService.

Application code emits events through it (one at a time via the ``emit_platform_event`` SQL function, or
in bulk via COPY with :meth:`AnalyticsClient.emit_many`) and reads its dashboards and aggregations
through the bounded query functions. It needs nothing beyond the ``workdev_app`` role, which reads only the
events of the signed-in user the client names (``acting_user_id``; see docs/architecture.md, "Roles").

    with AnalyticsClient(url, user_id=user_id, acting_user_id=user_id) as analytics:
        analytics.init_session(user_agent=request_ua, ip_address=request_ip)
        analytics.track_project_created(project_id, {"title": "E-commerce Platform", "budget": 5000,
                                                     "project_type": "fixed"})
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from workdev_pipeline.errors import InvalidField, InvalidPayload, from_database_error
from workdev_pipeline.events import (
    PreparedBatch,
    StagingCopy,
    function_params,
    new_event_id,
    prepare_batch,
    staging_row,
    to_uuid,
    uuid_of_int,
)
from workdev_pipeline.limits import check_page
from workdev_pipeline.payloads import UnreadablePayload, lenient_loads

DEFAULT_BATCH_SIZE = 10_000


@dataclass(frozen=True)
class SessionInfo:
    """What :meth:`AnalyticsClient.init_session` established."""

    session_id: uuid.UUID
    device_fingerprint: str
    started_at: datetime


@dataclass(frozen=True)
class EmitResult:
    """The outcome of :meth:`AnalyticsClient.emit_many`."""

    _ids: list[uuid.UUID | int] = field(repr=False)  # supplied ids as given, generated ones as integers
    inserted: int

    @cached_property
    def event_ids(self) -> list[uuid.UUID]:
        """Every event's id, in the events' order; the generated ones made into UUID objects when first read (a
        call that never reads them leaves the process no objects to track for its garbage collector)."""
        return [i if type(i) is not int else uuid_of_int(i) for i in self._ids]

    @property
    def duplicates(self) -> int:
        """Events skipped: their producer-supplied event_id was already stored (within ±7 days) or came
        earlier in the same batch."""
        return len(self._ids) - self.inserted


@dataclass(frozen=True)
class EventPage:
    """One page of :meth:`AnalyticsClient.query_events`; ``total`` counts every match, not just the page.

    Every event carries ``payload_error``: None, or why its ``event_data``/``metadata`` is None (a stored
    payload nested past the depth limit, or one that could not be decoded) -- that event only.
    """

    events: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class AggregationResult:
    """Rows of ``event_aggregations`` for a range, with exact totals over the whole range."""

    rows: list[dict[str, Any]]
    total_events: int
    unique_users: int
    unique_sessions: int


class DashboardMetrics(dict[str, Decimal]):
    """Dashboard figures by key; also readable as attributes (``metrics.active_users_last_hour``)."""

    calculated_at: datetime | None = None
    expires_at: datetime | None = None

    def __getattr__(self, name: str) -> Decimal:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no dashboard metric {name!r}; known: {sorted(self)}") from None


class AnalyticsClient:
    """Emit and query WorkDev platform events.

    ``conninfo`` is a PostgreSQL URL; alternatively pass an existing ``pool``. ``user_id`` and ``source``
    are the defaults stamped on every event this client emits. ``acting_user_id`` is the signed-in user its
    reads are made for (``workdev.user_id``): the application role must name one and then reads only that
    user's events; other roles read everything they may when it is None.
    """

    def __init__(
        self,
        conninfo: str | None = None,
        *,
        pool: ConnectionPool | None = None,
        user_id: uuid.UUID | str | None = None,
        source: str = "web",
        max_connections: int = 4,
        acting_user_id: uuid.UUID | str | None = None,
    ) -> None:
        if pool is None and conninfo is None:
            raise ValueError("AnalyticsClient needs a conninfo URL or a pool")
        self._owns_pool = pool is None
        self._pool = pool or ConnectionPool(conninfo, min_size=1, max_size=max_connections, open=True,
                                            kwargs={"autocommit": True})
        self.user_id = to_uuid(user_id, "user_id")
        self.acting_user_id = to_uuid(acting_user_id, "acting_user_id")
        self.source = source
        self.session: SessionInfo | None = None
        self._session_metadata: dict[str, Any] = {}

    def acting_as(self, user_id: uuid.UUID | str | None) -> AnalyticsClient:
        """A client on the same pool whose reads are made for the signed-in ``user_id`` (one per request, say);
        closing it leaves the pool open."""
        other = AnalyticsClient(pool=self._pool, user_id=self.user_id, source=self.source, acting_user_id=user_id)
        other.session, other._session_metadata = self.session, dict(self._session_metadata)
        return other

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        if self._owns_pool:
            self._pool.close()

    def __enter__(self) -> AnalyticsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sessions ----------------------------------------------------------------------------------
    def init_session(
        self,
        *,
        user_agent: str | None = None,
        ip_address: str | None = None,
        platform: str | None = None,
        screen: str | None = None,
        language: str | None = None,
        tz_name: str | None = None,
    ) -> SessionInfo:
        """Start a session: a new session id, and a device fingerprint from what the device tells us.

        The fingerprint is a SHA-256 of the device's traits (not of the IP), so the same browser on the
        same machine gets the same fingerprint across sessions.
        """
        traits = "|".join(x or "" for x in (user_agent, platform, screen, language, tz_name))
        fingerprint = hashlib.sha256(traits.encode()).hexdigest()[:32]
        self.session = SessionInfo(new_event_id(), fingerprint, datetime.now(UTC))
        self._session_metadata = {
            k: v
            for k, v in {"user_agent": user_agent, "ip_address": ip_address, "platform": platform,
                         "screen": screen, "language": language, "timezone": tz_name,
                         "device_fingerprint": fingerprint}.items()
            if v is not None
        }
        return self.session

    def set_user(self, user_id: uuid.UUID | str | None) -> None:
        """Change the user stamped on later events (after a login, say)."""
        self.user_id = to_uuid(user_id, "user_id")

    # -- emitting ----------------------------------------------------------------------------------
    def track(
        self,
        event_type: str,
        event_data: Mapping[str, Any] | None = None,
        *,
        entity_type: str | None = None,
        entity_id: str | uuid.UUID | None = None,
        user_id: uuid.UUID | str | None = None,
        event_id: uuid.UUID | str | None = None,
        timestamp: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> uuid.UUID:
        """Emit one event through ``emit_platform_event``; returns its event_id.

        Re-sending with the same ``event_id`` (a retry after a timeout) returns that id and writes nothing.
        """
        event = {"event_type": event_type, "event_data": event_data,
                 "user_id": self.user_id if user_id is None else user_id, "entity_type": entity_type,
                 "entity_id": entity_id, "metadata": {**self._session_metadata, **(metadata or {})},
                 "session_id": self.session.session_id if self.session else None, "timestamp": timestamp,
                 "event_id": event_id}
        params = function_params(staging_row(event, None, self.source, None)[0])
        with self._pool.connection() as conn:
            result = self._run(conn, "SELECT emit_platform_event(%s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s)",
                               params)
        return result.fetchone()[0]

    def emit_many(self, events: Iterable[Mapping[str, Any]], *, batch_size: int = DEFAULT_BATCH_SIZE) -> EmitResult:
        """Emit many events in one all-or-nothing transaction, COPYing them in batches of ``batch_size``.

        Each event is a mapping with ``event_type`` and any of ``event_data``, ``user_id``, ``entity_type``,
        ``entity_id``, ``metadata``, ``source``, ``session_id``, ``timestamp``, ``event_id``, taken as given
        (the client's user and session are not applied: a bulk producer says whose each event is). Validation
        is the SQL function's, so a batch is exactly as strict as :meth:`track`; the first bad event
        raises (with its ``batch_position``) and nothing of the call is written. Supplied ids are idempotent
        without any lock (docs/architecture.md, "Idempotent re-sends").
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        event_ids: list[uuid.UUID | int] = []
        inserted = 0
        with self._pool.connection() as conn, _Lookahead(self._prepare, chunked(events, batch_size)) as batches:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    staging = StagingCopy(cur)
                    for batch in batches:
                        if batch.rows:  # validated by the database even when a later event cannot be sent, so
                            staging.write(batch.rows)  # the error reported is always the first bad event's
                        batches.start_next(batch.error is None)
                        if batch.rows:
                            cur.execute("SELECT emit_staged_events(%s)", (batch.ids_supplied,))
                            inserted += cur.fetchone()[0]
                        if batch.error is not None:
                            raise batch.error
                        event_ids.extend(batch.ids)
            except psycopg.Error as exc:
                raise _translate(exc) from exc
        return EmitResult(event_ids, inserted)

    # The seed's typed helpers ----------------------------------------------------------------------
    def track_project_created(self, project_id: uuid.UUID | str, details: Mapping[str, Any]) -> uuid.UUID:
        """``project.created``: details carry title, budget, project_type, is_featured, skills."""
        return self.track("project.created", details, entity_type="project", entity_id=project_id)

    def track_proposal_submitted(self, proposal_id: uuid.UUID | str, project_id: uuid.UUID | str,
                                 bid_amount: float | Decimal) -> uuid.UUID:
        return self.track("proposal.submitted", {"project_id": str(project_id), "bid_amount": bid_amount},
                          entity_type="proposal", entity_id=proposal_id)

    def track_milestone_approved(self, milestone_id: uuid.UUID | str, project_id: uuid.UUID | str,
                                 amount: float | Decimal) -> uuid.UUID:
        """``milestone.approved``, a financial event."""
        return self.track("milestone.approved", {"project_id": str(project_id), "amount": amount},
                          entity_type="milestone", entity_id=milestone_id)

    def track_review_posted(self, review_id: uuid.UUID | str, review: Mapping[str, Any]) -> uuid.UUID:
        """``review.posted``: review carries reviewee_user_id, reviewee_type, rating_overall."""
        return self.track("review.posted", review, entity_type="review", entity_id=review_id)

    def track_profile_viewed(self, profile_user_id: uuid.UUID | str) -> uuid.UUID:
        return self.track("profile.viewed", {"profile_user_id": str(profile_user_id)}, entity_type="profile",
                          entity_id=profile_user_id)

    def track_search_performed(self, query: str, filters: Mapping[str, Any] | None, results_count: int,
                               search_time_ms: float) -> uuid.UUID:
        return self.track("search.performed", {"query": query, "filters": dict(filters or {}),
                                               "results_count": results_count, "search_time_ms": search_time_ms})

    def track_user_login(self, method: str, mfa_used: bool = False) -> uuid.UUID:
        return self.track("user.login", {"method": method, "mfa_used": mfa_used})

    # -- reading -----------------------------------------------------------------------------------
    def query_events(
        self,
        *,
        start_date: datetime | date | str,
        end_date: datetime | date | str,
        event_types: Sequence[str] | None = None,
        user_id: uuid.UUID | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> EventPage:
        """Events in [start_date, end_date) (a plain date as the end includes that whole day), newest
        first, with the total number of matches. At most 93 days, 1,000 a page, offsets up to 100,000
        (``workdev_pipeline.limits``). Read for the client's ``acting_user_id`` when it has one."""
        check_page(limit, offset)
        start, end = _instant(start_date, "start_date"), _instant(end_date, "end_date", end_of_day=True)
        types = list(event_types) if event_types is not None else None
        uid = to_uuid(user_id, "user_id")
        with self._pool.connection() as conn, conn.transaction():
            self._run(conn, "SELECT set_config('workdev.user_id', %s, true)",
                      (str(self.acting_user_id) if self.acting_user_id else "",))
            cur = self._run(conn, "SELECT * FROM query_platform_events(%s, %s, %s, %s, %s, %s)",
                            (start, end, types, uid, limit, offset), dict_rows=True, lenient_json=True)
            events = [_checked_payloads(e) for e in cur.fetchall()]
            total = self._run(conn, "SELECT count_platform_events(%s, %s, %s, %s)",
                              (start, end, types, uid)).fetchone()[0]
        return EventPage(events, total, limit, offset)

    def get_dashboard_metrics(self) -> DashboardMetrics:
        """The real-time dashboard figures, recomputed by the database when the cached ones expired."""
        with self._pool.connection() as conn:
            rows = self._run(conn, "SELECT metric_key, metric_value, calculated_at, expires_at "
                                   "FROM get_dashboard_metrics()").fetchall()
        metrics = DashboardMetrics({key: value for key, value, _, _ in rows})
        if rows:
            metrics.calculated_at = min(r[2] for r in rows)
            metrics.expires_at = min(r[3] for r in rows)
        return metrics

    def query_aggregations(
        self,
        *,
        aggregation_type: str,
        start_date: date | str,
        end_date: date | str,
        event_category: str | None = None,
        event_types: Sequence[str] | None = None,
    ) -> AggregationResult:
        """Pre-computed hourly/daily/weekly rows of the periods starting in the days [start_date, end_date]
        (at most 1,100 days and 50,000 rows), with totals over exactly those rows: ``total_events`` is the sum
        of theirs, unique users and sessions exact over the events they count."""
        start, end = _day(start_date, "start_date"), _day(end_date, "end_date")
        types = list(event_types) if event_types is not None else None
        params = (aggregation_type, start, end, event_category, types)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # rows and totals of one snapshot
            rows = self._run(conn, "SELECT * FROM query_event_aggregations(%s, %s, %s, %s, %s)", params,
                             dict_rows=True).fetchall()
            totals = self._run(conn, "SELECT * FROM event_aggregation_totals(%s, %s, %s, %s, %s)", params).fetchone()
        return AggregationResult(rows, *totals)

    # -- internals ---------------------------------------------------------------------------------
    @staticmethod
    def _run(conn: psycopg.Connection, query: str, params: Sequence[Any] = (), *,
             dict_rows: bool = False, lenient_json: bool = False) -> psycopg.Cursor:
        from psycopg.rows import dict_row
        from psycopg.types.json import set_json_loads

        cur = conn.cursor(row_factory=dict_row) if dict_rows else conn.cursor()
        if lenient_json:  # one undecodable stored payload must not fail everyone's read
            set_json_loads(lenient_loads, context=cur)
        try:
            return cur.execute(query, params)
        except psycopg.Error as exc:
            raise _translate(exc) from exc

    def _prepare(self, chunk: list[Any], position: int) -> PreparedBatch:
        """Staging rows for a chunk whose first event is at ``position`` of the call."""
        return prepare_batch(chunk, position, self.source)


class _Lookahead:
    """Chunks prepared one ahead in a worker thread. The next chunk's preparation starts when the caller says
    so (after its COPY), to overlap the database's validation and insert rather than the COPY: a COPY's
    sending thread waits for the interpreter lock at every buffer when a preparing thread holds it."""

    def __init__(self, prepare: Callable[[list[Any], int], PreparedBatch],
                 chunks: Iterator[list[Any]]) -> None:
        self._prepare = prepare
        self._chunks = chunks
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emit-prepare")
        self._next_position = 0
        self._ahead: Future[PreparedBatch] | None = None

    def __enter__(self) -> _Lookahead:
        self.start_next(True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __iter__(self) -> Iterator[PreparedBatch]:
        while self._ahead is not None:
            future, self._ahead = self._ahead, None
            yield future.result()

    def start_next(self, wanted: bool) -> None:
        """Start preparing the following chunk (nothing when ``wanted`` is false or no chunk is left)."""
        chunk = next(self._chunks, None) if wanted else None
        if chunk is not None:
            self._ahead = self._executor.submit(self._prepare, chunk, self._next_position)
            self._next_position += len(chunk)


def _checked_payloads(event: dict[str, Any]) -> dict[str, Any]:
    """An event row with any payload that could not be decoded set to None and named in ``payload_error``."""
    problems = [event["payload_error"]] if event.get("payload_error") else []
    for key in ("event_data", "metadata"):
        value = event.get(key)
        if isinstance(value, UnreadablePayload):
            problems.append(f"{key} could not be decoded: {value.reason}")
            event[key] = None
    event["payload_error"] = "; ".join(problems) or None
    return event


def _translate(exc: psycopg.Error) -> Exception:
    mapped = from_database_error(exc)
    if mapped is not None:
        return mapped
    if isinstance(exc, psycopg.errors.InvalidTextRepresentation | psycopg.errors.UntranslatableCharacter):
        return InvalidPayload(str(exc).strip())
    return exc


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of up to ``size`` consecutive items, without materialising the whole iterable."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _instant(value: datetime | date | str, name: str, *, end_of_day: bool = False) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00")) if "T" in value else date.fromisoformat(value)
        except ValueError:
            raise InvalidField(f"{name} {value!r} is not an ISO-8601 date or timestamp") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidField(f"{name} must be timezone-aware, got {value.isoformat()}")
        return value
    if isinstance(value, date):
        day = datetime.combine(value, time(0), tzinfo=UTC)
        return day + timedelta(days=1) if end_of_day else day
    raise InvalidField(f"{name} must be a datetime, a date or an ISO-8601 string, got {type(value).__name__}")


def _day(value: date | str, name: str) -> date:
    if isinstance(value, datetime):
        raise InvalidField(f"{name} is a day: pass a date, not a datetime")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidField(f"{name} {value!r} is not an ISO-8601 date (YYYY-MM-DD)") from None
