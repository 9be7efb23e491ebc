"""GDPR erasure: a user's personal data removed wherever it lives, driven by the catalog's marks, every request in
a ledger, and the proof that nothing of the user remains.

A request is filed first (:func:`file_erasure_requests`: a ledger row with the user only as a keyed hash; the raw
id waits in ``gdpr_erasure_subjects`` while the request is open), then run by request id
(:func:`erase_requests`; :func:`erase_users` does both). The seed's GDPR statement run against the
``platform_events`` view records its users in ``gdpr_erasure_inbox``: every run files requests for them first.

For each request, in one PostgreSQL transaction (:mod:`workdev_pipeline.governance.personal` does the payloads):

1. the user's own events: every field the catalog marks personal removed at any depth (and every key named like
   personal data), the user id and the session nulled, the device fingerprint, IP address and user agent removed;
2. events without a user in the user's sessions or from their device: anonymised the same way;
3. other users' events naming the user: each reference (``x-user-ref``) replaced by the request's pseudonym, the
   fields that belong to the referenced user (``x-owner``) removed, the user's identifying values (emails,
   phones, addresses, names found in 1 and 2) scrubbed from every string;
4. the dead letter's messages about those events, or quoting those values, scrubbed; the profile deleted; every
   touched event queued for each store's refresh (``warehouse_event_refresh``); the ledger row filled in: rows
   per store, the keyed hashes of the values removed (never the values), the days and hours touched.

Then each store rewrites the queued events' days from PostgreSQL (:meth:`GovernedWarehouse.refresh`) and the
requests are closed (their subjects forgotten). Idempotent: a second request finds nothing and says so
(``nothing_found``, naming the earlier request). Erasures and retention runs take turns (``governance_lock``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial

import psycopg
from psycopg.types.json import Jsonb, set_json_loads

from workdev_pipeline.events import encode_json
from workdev_pipeline.governance.common import (
    GovernanceInputError,
    erasure_key,
    governance_lock,
    keyed_hash,
)
from workdev_pipeline.governance.personal import Removed, erase_own, erase_references, scrub_json
from workdev_pipeline.governance.redaction import without_quoted_value
from workdev_pipeline.governance.traces import TraceSearch
from workdev_pipeline.governance.warehouse import GovernedWarehouse, WarehouseRefresh, ip_user_agent_pairs
from workdev_pipeline.sql_files import query

log = logging.getLogger(__name__)

#: Kinds of values whose keyed hashes the ledger keeps (besides the user id): what the catalog marks, the
#: session ids, and the (IP address, user agent) pairs of the user's events.
LEDGER_KINDS = ("email", "phone", "address", "name", "ip_address", "user_agent", "device_id", "session",
                "ip_user_agent")
#: Kinds the check looks for in every string of every store (the user id too): they identify the person.
#: ``ip_address`` and ``user_agent`` alone are shared by many people; their pair is looked for on user-less rows.
TRACE_KINDS = ("user_id", "email", "phone", "address", "name", "device_id", "session")
#: JSON read from the store with its numbers exact (the standard library keeps big integers; decimals as Decimal).
_EXACT_JSON = partial(json.loads, parse_float=Decimal)
#: Who files the requests for the users of the seed's statement run against the view.
SEED_STATEMENT = "UPDATE platform_events (seed GDPR statement)"


class InvalidUserId(GovernanceInputError):
    """A user id given for erasure is not a UUID."""


class UnknownRequest(GovernanceInputError):
    """A request id given for erasure is not in the ledger."""


def parse_user_ids(values: Iterable[str]) -> list[str]:
    """Canonical user ids (lowercase UUID text), duplicates dropped, order kept; a clear error for the first one
    that is not a UUID, or for none at all."""
    ids: list[str] = []
    for value in values:
        try:
            user_id = str(uuid.UUID(str(value).strip()))
        except ValueError:
            raise InvalidUserId(f"{str(value)!r} is not a valid user id: expected a UUID such as "
                                "6f1c2b0e-3d4a-4c5b-8e9f-0a1b2c3d4e5f") from None
        if user_id not in ids:
            ids.append(user_id)
    if not ids:
        raise InvalidUserId("no user id given")
    return ids


def scrub_message(message: str, secrets: Iterable[str]) -> str:
    """A dead-letter message without the values it quoted: the offending value a validation message ends with
    (``..., got "alice@example.com"``) and every occurrence of the user's id and personal values."""
    message = without_quoted_value(message, "[erased]")
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        message = message.replace(secret, "[erased]")
    return message


def like_patterns(values: Iterable[str]) -> list[str]:
    """LIKE patterns finding each value inside a JSON document's text (JSON-escaped, wildcards escaped)."""
    out = []
    for value in sorted(set(values)):
        text = json.dumps(value, ensure_ascii=False)[1:-1]
        out.append("%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    return out


@dataclass
class ErasureResult:
    """One request."""

    request_id: int
    user_id: str  # in memory only, never stored, logged or shown
    status: str  # erased | nothing_found | failed | running
    store_rows: int = 0
    session_rows: int = 0
    reference_rows: int = 0
    dead_letter_rows: int = 0
    profile_rows: int = 0
    warehouse_rows: dict[str, int] = field(default_factory=dict)
    affected_days: list[date] = field(default_factory=list)
    affected_hours: list[datetime] = field(default_factory=list)
    affected_event_types: list[str] = field(default_factory=list)
    aggregation_rows: dict[str, int] = field(default_factory=dict)
    previous_requests: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """One line naming the request (never the user)."""
        if self.status == "nothing_found":
            earlier = (f"; already erased by request #{', #'.join(map(str, self.previous_requests))}"
                       if self.previous_requests else "")
            return (f"request #{self.request_id}: nothing to erase (no events, dead-letter rows, profile or "
                    f"warehouse rows){earlier}")
        warehouses = ", ".join(f"{c}: {n:,}" for c, n in sorted(self.warehouse_rows.items())) or "lake: 0"
        return (f"request #{self.request_id}: {self.status}: {self.store_rows:,} own event(s), "
                f"{self.session_rows:,} logged-out event(s) of their sessions, {self.reference_rows:,} other "
                f"user(s)' event(s) naming them, {self.dead_letter_rows:,} dead-letter row(s), {self.profile_rows} "
                f"profile row(s) in PostgreSQL; {warehouses} row(s) rewritten; {len(self.affected_days)} day(s), "
                f"{len(self.affected_hours)} hour(s) to re-aggregate")


@dataclass
class ErasureBatch:
    results: list[ErasureResult] = field(default_factory=list)
    refreshes: list[WarehouseRefresh] = field(default_factory=list)
    completed_earlier: list[int] = field(default_factory=list)  # older requests whose queued work this run finished
    seconds: dict[str, float] = field(default_factory=dict)


def _file(conn: psycopg.Connection, key: bytes, user_ids: Sequence[str], requested_by: str) -> list[int]:
    """Request ids for the users: an open request of the user is reused, else one is filed."""
    open_by_user = {u: r for r, u, _, _ in conn.execute(query("governance/open_erasures"), {"request_ids": None})}
    ids = []
    for user_id in user_ids:
        if user_id not in open_by_user:
            open_by_user[user_id] = conn.execute(query("governance/file_erasure"), {
                "user_hash": keyed_hash(key, user_id), "requested_by": requested_by,
                "user_id": user_id}).fetchone()[0]
        ids.append(open_by_user[user_id])
    return ids


def file_erasure_requests(database_url: str, user_ids: Sequence[str], *, requested_by: str = "cli") -> list[int]:
    """File a request per user (validated first; a user with an open request gets that one) and return the
    request ids: what runs, their config and tags refer to."""
    ids = parse_user_ids(user_ids)
    with psycopg.connect(database_url, autocommit=True) as conn:
        return _file(conn, erasure_key(conn), ids, requested_by)


def file_statement_requests(conn: psycopg.Connection, key: bytes) -> list[int]:
    """File requests for the users the seed's statement anonymised through the view (``gdpr_erasure_inbox``)."""
    users = [r[0] for r in conn.execute(query("governance/inbox_users"))]
    return _file(conn, key, users, SEED_STATEMENT) if users else []


def open_request_ids(database_url: str) -> list[int]:
    """Requests waiting to run (including those the seed's statement implies, filed now)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        file_statement_requests(conn, erasure_key(conn))
        return [r[0] for r in conn.execute(query("governance/open_erasures"), {"request_ids": None})]


def planned_requests(database_url: str, request_ids: Sequence[int] | None) -> list[int]:
    """The open requests a run of ``request_ids`` (``None``: every open one) would erase, changing nothing (the
    erasure job's dry run): an unknown id is an :class:`UnknownRequest`, as in :func:`erase_requests`."""
    wanted = None if request_ids is None else [int(r) for r in request_ids]
    with psycopg.connect(database_url, autocommit=True) as conn:
        if wanted is not None:
            _check_known(conn, wanted)
        return [r[0] for r in conn.execute(query("governance/open_erasures"), {"request_ids": wanted})]


def _check_known(conn: psycopg.Connection, request_ids: list[int]) -> None:
    known = {r[0] for r in conn.execute(query("governance/known_requests"), {"request_ids": request_ids})}
    missing = sorted(set(request_ids) - known)
    if missing:
        raise UnknownRequest(f"no erasure request #{', #'.join(map(str, missing))} in the ledger: file one "
                             "with `workdev-pipeline erase USER_ID`")


def erase_users(database_url: str, user_ids: Sequence[str], warehouses: Sequence[GovernedWarehouse] = (), *,
                requested_by: str = "cli", run_id: str | None = None) -> ErasureBatch:
    """File a request per user and run them (see the module's documentation)."""
    request_ids = file_erasure_requests(database_url, user_ids, requested_by=requested_by)
    return erase_requests(database_url, request_ids, warehouses, run_id=run_id)


def erase_requests(database_url: str, request_ids: Sequence[int] | None, warehouses: Sequence[GovernedWarehouse] = (),
                   *, run_id: str | None = None) -> ErasureBatch:
    """Run the given open requests (``None``: every open one, after filing those the seed's statement implies)."""
    batch = ErasureBatch()
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn, governance_lock(conn):
        set_json_loads(_EXACT_JSON, conn)  # payloads are written back: amounts keep every digit
        key = erasure_key(conn)
        if request_ids is None:
            file_statement_requests(conn, key)
        wanted = None if request_ids is None else [int(r) for r in request_ids]
        todo = conn.execute(query("governance/open_erasures"), {"request_ids": wanted}).fetchall()
        if wanted is not None:
            _check_known(conn, wanted)
        for request_id, user_id, pseudonym, postgres_done in todo:
            if postgres_done:  # a run that failed in a store: PostgreSQL's part stands, the stores' work is queued
                batch.results.append(ErasureResult(request_id, user_id, "running"))
                continue
            batch.results.append(_erase_in_postgres(conn, key, request_id, user_id, pseudonym, warehouses, run_id))
        batch.seconds["postgres"] = time.perf_counter() - started
        running = [r.request_id for r in batch.results if r.status == "running"]
        refreshed: dict[int, dict[str, int]] = {}
        try:
            for warehouse in warehouses:
                refresh = warehouse.refresh(conn, run_id=run_id)
                batch.refreshes.append(refresh)
                batch.seconds[f"warehouse:{warehouse.consumer}"] = refresh.seconds
                for request_id, rows in refresh.rows_by_request.items():
                    if request_id is not None:
                        refreshed.setdefault(request_id, {})[warehouse.consumer] = rows
                        conn.execute(query("governance/add_warehouse_rows"),
                                     {"request_id": request_id, "consumer": warehouse.consumer, "rows": rows})
        except BaseException as exc:
            conn.execute(query("governance/fail_erasures"), {
                "request_ids": running,
                "error": f"warehouse refresh failed ({type(exc).__name__}: {exc}"[:1900] + "); the work stays "
                         "queued: run any erasure again to finish it"})
            raise
        done = {r[0] for r in conn.execute(query("governance/finish_erasures"),
                                           {"request_ids": sorted(set(running) | set(refreshed))}).fetchall()}
        closed = sorted(done | {r.request_id for r in batch.results if r.status == "nothing_found"})
        conn.execute(query("governance/close_erasure"), {"request_ids": closed})
    mine = {r.request_id for r in batch.results}
    batch.completed_earlier = sorted(done - mine)
    for result in batch.results:
        result.warehouse_rows = {w.consumer: refreshed.get(result.request_id, {}).get(w.consumer, 0)
                                 for w in warehouses}
        if result.request_id in done:
            result.status = "erased"
    batch.seconds["total"] = time.perf_counter() - started
    return batch


def _erase_in_postgres(conn: psycopg.Connection, key: bytes, request_id: int, user_id: str, pseudonym: str,
                       warehouses: Sequence[GovernedWarehouse], run_id: str | None) -> ErasureResult:
    user_hash = keyed_hash(key, user_id)
    previous = [r[0] for r in conn.execute(query("governance/previous_erasures"), {"user_hash": user_hash})]
    conn.execute(query("governance/begin_erasure"), {"request_id": request_id, "run_id": run_id})
    result = ErasureResult(request_id, user_id, "running", previous_requests=previous)
    try:
        prepared = {w.consumer: w.prepare(user_id) for w in warehouses}  # the lake's runs beside PostgreSQL's part
        with conn.transaction():
            removed = Removed()
            own = conn.execute(query("governance/user_events"), {"user_id": user_id}).fetchall()
            pairs = {p for row in own for p in ip_user_agent_pairs(row[5])}
            erased = [(row, *erase_own(row[2], row[4], row[5], removed)) for row in own]
            sessions = {str(row[3]) for row in own if row[3] is not None}
            own_secrets = removed.identifying()
            related = conn.execute(query("governance/related_events"), {
                "session_ids": sorted(sessions), "devices": sorted(removed.values.get("device_id", ())),
                "patterns": like_patterns({user_id, *own_secrets}), "exclude": [row[0] for row in own]}).fetchall()
            anon = [row[:6] for row in related if row[6]]
            others = [row[:6] for row in related if not row[6]]
            pairs |= {p for row in anon for p in ip_user_agent_pairs(row[5])}
            erased += [(row, *erase_own(row[2], row[4], row[5], removed)) for row in anon]
            secrets = removed.identifying()
            if secrets - own_secrets:  # values first seen on logged-out events: a second look for them
                seen = {row[0] for row in related} | {row[0] for row in own}
                others += conn.execute(query("governance/referencing_events"), {
                    "patterns": like_patterns(secrets - own_secrets), "exclude": sorted(seen)}).fetchall()
            rewrites = [(row, *(scrub_json(part, secrets, {user_id: pseudonym}) for part in parts), True)
                        for row, *parts in erased]
            for row in others:
                data, metadata = erase_references(row[2], row[4], row[5], user_id, pseudonym, secrets)
                if data != row[4] or metadata != row[5]:
                    rewrites.append((row, data, metadata, False))
            if rewrites:
                conn.execute(query("governance/rewrite_events"), {
                    "event_ids": [r[0][0] for r in rewrites], "timestamps": [r[0][1] for r in rewrites],
                    "event_data": [encode_json(r[1]) for r in rewrites],
                    "metadata": [encode_json(r[2]) for r in rewrites],
                    "anonymise": [r[3] for r in rewrites]})
            result.store_rows, result.session_rows = len(own), len(anon)
            result.reference_rows = len(rewrites) - len(erased)
            events = {(r[0][0], r[0][1]): r[0][2] for r in rewrites}  # (event_id, timestamp) -> type
            held = {consumer: part.user_rows() for consumer, part in prepared.items()}
            for consumer, found in held.items():
                queued = dict(events)
                queued.update({(uuid.UUID(e), ts): t for e, ts, t in found})
                conn.execute(query("governance/queue_refresh"), {
                    "consumer": consumer, "request_id": request_id,
                    "event_ids": [e for e, _ in queued], "timestamps": [ts for _, ts in queued],
                    "event_types": list(queued.values())})
            failures = conn.execute(query("governance/failures_quoting"), {
                "event_ids": [e for e, _ in events], "patterns": like_patterns({user_id, *secrets})}).fetchall()
            for event_id, message in failures:
                scrubbed = scrub_message(message, {user_id, *secrets})
                if scrubbed != message:
                    conn.execute(query("governance/scrub_failure"), {"event_id": event_id, "error_message": scrubbed})
            result.dead_letter_rows = len(failures)
            result.profile_rows = conn.execute(query("governance/delete_profile"), {"user_id": user_id}).rowcount
            stamps = sorted({ts for _, ts in events} | {ts for found in held.values() for _, ts, _ in found})
            result.affected_days = sorted({ts.astimezone(UTC).date() for ts in stamps})
            result.affected_hours = sorted({ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
                                            for ts in stamps})
            result.affected_event_types = sorted({t for t in events.values()} |
                                                 {t for found in held.values() for _, _, t in found if t})
            result.aggregation_rows = _aggregation_rows(conn, result.affected_event_types, stamps)
            nothing = not (rewrites or failures or result.profile_rows or any(held.values()))
            result.status = "nothing_found" if nothing else "running"
            if nothing and previous:
                result.notes.append(f"already erased by request #{', #'.join(map(str, previous))}")
            elif nothing:
                result.notes.append("unknown user: no events, dead-letter rows, profile or warehouse rows")
            values = {kind: set(removed.values.get(kind, ())) for kind in LEDGER_KINDS}
            values["session"] = sessions
            values["ip_user_agent"] = pairs
            conn.execute(query("governance/record_erasure"), {
                "request_id": request_id, "status": result.status, "store_rows": result.store_rows,
                "session_rows": result.session_rows, "reference_rows": result.reference_rows,
                "dead_letter_rows": result.dead_letter_rows, "profile_rows": result.profile_rows,
                "value_hashes": Jsonb({k: sorted(keyed_hash(key, v) for v in vs) for k, vs in values.items() if vs}),
                "affected_days": result.affected_days, "affected_hours": result.affected_hours,
                "affected_event_types": result.affected_event_types,
                "aggregation_rows": Jsonb(result.aggregation_rows), "notes": result.notes})
    except BaseException as exc:
        conn.execute(query("governance/fail_erasures"), {
            "request_ids": [request_id], "error": scrub_message(f"{type(exc).__name__}: {exc}", [user_id])[:2000]})
        result.status = "failed"
        raise
    return result


def _aggregation_rows(conn: psycopg.Connection, event_types: list[str], stamps: list[datetime]) -> dict[str, int]:
    """event_aggregations rows covering the events, per aggregation type (the table belongs to the aggregation
    pipeline: if its shape has changed, that is noted, not fatal)."""
    if not stamps:
        return {}
    try:
        with conn.transaction():
            return dict(conn.execute(query("governance/aggregation_rows"), {
                "event_types": event_types, "timestamps": stamps, "first": stamps[0], "last": stamps[-1]}).fetchall())
    except psycopg.Error as exc:
        log.warning("could not count the aggregation rows to recompute: %s", exc)
        return {"unknown": -1}


# -- the check ---------------------------------------------------------------------------------------------------


@dataclass
class ErasureTrace:
    request_id: int | None  # None: not one request's (an anonymised event that kept personal data)
    store: str  # postgres | user_profiles | dead_letter | warehouse:<consumer> | lake_log | refresh_queue:<consumer>
    kind: str  # user_id | email | phone | ... | ip_user_agent | queued | anonymised_with_personal_data
    rows: int


@dataclass
class ErasureVerification:
    requests: int = 0
    users: int = 0
    traces: list[ErasureTrace] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.traces

    def places(self) -> dict[str, list[str]]:
        """{request: ["<store>: <kind> (<rows> rows)", ...]}: where each request's traces were found."""
        out: dict[str, list[str]] = {}
        for t in self.traces:
            label = f"#{t.request_id}" if t.request_id is not None else "any erasure"
            out.setdefault(label, []).append(f"{t.store}: {t.kind} ({t.rows:,} rows)")
        return out


def verify_erasures(database_url: str, warehouses: Sequence[GovernedWarehouse] = (),
                    run_storage: Callable[[TraceSearch], None] | None = None) -> ErasureVerification:
    """For every request of the ledger, look everywhere for the user's id and every value the ledger hashed
    (:data:`TRACE_KINDS`): every string of PostgreSQL's store and profiles, the dead letter's messages, the
    ledger's own leftovers, every row of every store (a local lake's files on disk and its log included), and --
    when ``run_storage`` is given -- Dagster's run storage; and the (IP address, user agent) pairs on rows without
    a user. Also: no erasure work still queued, no user-less row of a type that requires a user (only an erasure
    makes those) still carrying personal data by the catalog."""
    found = ErasureVerification()
    with psycopg.connect(database_url, autocommit=True) as conn:
        key = erasure_key(conn)
        ledger = conn.execute(query("governance/erasure_ledger")).fetchall()
        if not ledger:
            return found
        owners: dict[str, list[int]] = {}  # hash -> requests
        hashes: dict[str, set[str]] = {}
        for request_id, user_hash, _, value_hashes in ledger:
            for kind, values in [("user_id", [user_hash] if user_hash else []), *(value_hashes or {}).items()]:
                for h in values:
                    owners.setdefault(h, []).append(request_id)
                    hashes.setdefault(kind, set()).add(h)
        found.requests = len(ledger)
        found.users = len({h for _, h, _, _ in ledger if h})
        search = TraceSearch(key, {k: v for k, v in hashes.items() if k in TRACE_KINDS})
        pairs = TraceSearch(key, {"ip_user_agent": hashes.get("ip_user_agent", set())})
        for place, h, rows in conn.execute(query("governance/store_traces"), {"hashes": list(search.kinds)}):
            search.found[(place, h)] += rows
        if pairs:
            for h, rows in conn.execute(query("governance/pair_traces"), {"hashes": list(pairs.kinds)}):
                pairs.found[("postgres", h)] += rows
        for (message,) in conn.execute(query("governance/failure_messages")):
            search.text("dead_letter", message)
        for place, user_id in conn.execute(query("governance/erasure_leftovers")):
            search.values(place, [user_id])
        for event_type, rows in conn.execute(query("governance/anonymised_with_personal_data")):
            found.traces.append(ErasureTrace(None, "postgres", f"anonymised_with_personal_data:{event_type}", rows))
        for request_id, consumer, rows in conn.execute(query("governance/pending_refresh")):
            if request_id is not None:
                found.traces.append(ErasureTrace(request_id, f"refresh_queue:{consumer}", "queued", rows))
        user_types = {r[0] for r in conn.execute(query("governance/user_required_types"))}
    for warehouse in warehouses:
        left = warehouse.traces(search, pairs, user_types)
        if left:
            found.traces.append(ErasureTrace(None, f"warehouse:{warehouse.consumer}",
                                             "anonymised_with_personal_data", left))
    if run_storage is not None:
        run_storage(search)
    for trace in [*search.traces(), *pairs.traces()]:
        for request_id in owners.get(trace.hash, []):
            found.traces.append(ErasureTrace(request_id, trace.place, trace.kind, trace.rows))
    return found
