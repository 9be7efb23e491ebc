"""GDPR erasure: a user's events anonymised wherever they live, every request in a ledger, and the proof that
nothing of the user remains.

For each user (a batch is one request per user, in order; all ids are validated before anything is done):

1. a ledger row is opened (``gdpr_erasure_requests``: the user id only as a keyed hash);
2. each warehouse is searched for rows of the user (what it holds, whatever PostgreSQL says);
3. in one PostgreSQL transaction: the seed's anonymise statement on the store (``user_id = NULL, event_data -
   'email' - 'phone' - 'address', metadata - 'ip_address' - 'user_agent'``) returning the values the events carried;
   the events queued for every warehouse's refresh (``warehouse_event_refresh``: a crash later leaves the work
   queued, never lost); the dead letter's messages about them scrubbed; the user's profile deleted; the
   aggregation rows covering them counted; the ledger row filled in: rows per store, the keyed hashes of the
   values (never the values), the UTC days and hours touched (what the aggregations must recompute);
4. then each warehouse rewrites the queued events' days (:meth:`GovernedWarehouse.refresh`: their rows dropped
   and written back as PostgreSQL now holds them, enriched as a rebuild would), and the requests are closed.

Idempotent: a second request finds nothing and says so (``nothing_found``, naming the earlier request), as does
an unknown user id. Erasures and retention runs take turns (``governance_lock``). The ledger never keeps which
events were the user's: that link is what anonymisation removes.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from workdev_pipeline.governance.common import (
    PAIR_SEPARATOR,
    GovernanceInputError,
    erasure_key,
    governance_lock,
    keyed_hash,
)
from workdev_pipeline.governance.warehouse import PERSONAL_DATA_KEYS, GovernedWarehouse, WarehouseRefresh
from workdev_pipeline.sql_files import query

log = logging.getLogger(__name__)

#: Values whose keyed hashes the ledger keeps, per request: the payload keys and metadata the statement removes,
#: and the (IP address, user agent) pair the check looks for on events without a user.
VALUE_KINDS = (*PERSONAL_DATA_KEYS, "ip_address", "user_agent", "ip_user_agent")
#: Kinds the check looks for in every store (``ip_address`` and ``user_agent`` alone are shared by many people).
TRACE_KINDS = (*PERSONAL_DATA_KEYS, "ip_user_agent")
#: Kinds looked for in every string of an anonymised event's payload and metadata, whatever the key.
LEAF_KINDS = ("user_id", *PERSONAL_DATA_KEYS)


class InvalidUserId(GovernanceInputError):
    """A user id given for erasure is not a UUID."""


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


def is_routable(ip: str) -> bool:
    """Whether an address identifies a network on the internet: private, loopback, link-local, documentation
    and malformed ones are shared by countless devices, so they identify nobody (and are not looked for)."""
    try:
        return ipaddress.ip_address(ip.strip()).is_global
    except ValueError:
        return False


_GOT = ", got "
_HARMLESS_TAIL = re.compile(r"[a-z]+|\d+")  # "got string", "got 12": a type or a length, no value


def scrub_message(message: str, secrets: Iterable[str]) -> str:
    """A dead-letter message without the values it quoted: the offending value a validation message ends with
    (``..., got "alice@example.com"``) and every occurrence of the user's id and personal values."""
    head, sep, tail = message.rpartition(_GOT)
    if sep and not _HARMLESS_TAIL.fullmatch(tail):
        message = head + sep + "[erased]"
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        message = message.replace(secret, "[erased]")
    return message


def scrub_json(value: Any, secrets: Iterable[str]) -> Any:
    """A JSON value with every occurrence of the secrets in its strings replaced by ``[erased]`` (keys kept)."""
    ordered = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            for secret in ordered:
                v = v.replace(secret, "[erased]")
            return v
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


@dataclass
class ErasureResult:
    """One user's request."""

    request_id: int
    user_id: str  # as given: in memory only, never stored
    status: str  # erased | nothing_found | failed | running
    store_rows: int = 0
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
        if self.status == "nothing_found":
            earlier = (f"; already erased by request #{', #'.join(map(str, self.previous_requests))}"
                       if self.previous_requests else "")
            return (f"request #{self.request_id}: nothing to erase for user {self.user_id} (no events, dead-letter "
                    f"rows, profile or warehouse rows){earlier}")
        warehouses = ", ".join(f"{c}: {n:,}" for c, n in sorted(self.warehouse_rows.items())) or "lake: 0"
        return (f"request #{self.request_id}: user {self.user_id} {self.status}: {self.store_rows:,} event(s) "
                f"anonymised in PostgreSQL, {self.dead_letter_rows:,} dead-letter row(s), {self.profile_rows} "
                f"profile row(s), {warehouses} row(s) rewritten; {len(self.affected_days)} day(s), "
                f"{len(self.affected_hours)} hour(s) to re-aggregate")


@dataclass
class ErasureBatch:
    results: list[ErasureResult] = field(default_factory=list)
    refreshes: list[WarehouseRefresh] = field(default_factory=list)
    completed_earlier: list[int] = field(default_factory=list)  # older requests whose queued work this run finished
    seconds: dict[str, float] = field(default_factory=dict)


def erase_users(database_url: str, user_ids: Sequence[str], warehouses: Sequence[GovernedWarehouse] = (), *,
                requested_by: str = "cli", run_id: str | None = None) -> ErasureBatch:
    """Erase each user of ``user_ids`` from PostgreSQL and every warehouse (see the module's documentation)."""
    ids = parse_user_ids(user_ids)
    batch = ErasureBatch()
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn, governance_lock(conn):
        key = erasure_key(conn)
        for user_id in ids:
            batch.results.append(_erase_in_postgres(conn, key, user_id, warehouses, requested_by, run_id))
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
    mine = {r.request_id for r in batch.results}
    batch.completed_earlier = sorted(done - mine)
    for result in batch.results:
        result.warehouse_rows = {w.consumer: refreshed.get(result.request_id, {}).get(w.consumer, 0)
                                 for w in warehouses}
        if result.request_id in done:
            result.status = "erased"
    batch.seconds["total"] = time.perf_counter() - started
    return batch


def _erase_in_postgres(conn: psycopg.Connection, key: bytes, user_id: str, warehouses: Sequence[GovernedWarehouse],
                       requested_by: str, run_id: str | None) -> ErasureResult:
    user_hash = keyed_hash(key, user_id)
    previous = [r[0] for r in conn.execute(query("governance/previous_erasures"), {"user_hash": user_hash})]
    request_id = conn.execute(query("governance/start_erasure"), {
        "user_hash": user_hash, "requested_by": requested_by, "run_id": run_id}).fetchone()[0]
    result = ErasureResult(request_id, user_id, "running", previous_requests=previous)
    try:
        held = {w.consumer: w.user_rows(user_id) for w in warehouses}
        with conn.transaction():
            rows = conn.execute(query("governance/anonymise_user"), {"user_id": user_id}).fetchall()
            result.store_rows = len(rows)
            events = {(r[0], r[1]): r[2] for r in rows}  # (event_id, timestamp) -> type
            for consumer, found in held.items():
                queued = dict(events)
                queued.update({(uuid.UUID(e), ts): t for e, ts, t in found})
                conn.execute(query("governance/queue_refresh"), {
                    "consumer": consumer, "request_id": request_id,
                    "event_ids": [e for e, _ in queued], "timestamps": [ts for _, ts in queued],
                    "event_types": list(queued.values())})
            values: dict[str, set[str]] = {kind: set() for kind in VALUE_KINDS}
            for row in rows:  # email, phone, address, ip_address, user_agent as they were
                for kind, value in zip(VALUE_KINDS[:5], row[3:8], strict=True):
                    if value:
                        values[kind].add(value)
                if row[6] and row[7] and is_routable(row[6]):
                    values["ip_user_agent"].add(row[6] + PAIR_SEPARATOR + row[7])
            secrets = {user_id, *(v for vs in values.values() for v in vs)}
            for row in rows:  # the same values under other keys of the user's own events go too
                data, metadata = scrub_json(row[8], secrets), scrub_json(row[9], secrets)
                if data != row[8] or metadata != row[9]:
                    conn.execute(query("governance/scrub_event"), {"event_id": row[0], "timestamp": row[1],
                                                                   "event_data": Jsonb(data),
                                                                   "metadata": Jsonb(metadata)})
            failures = conn.execute(query("governance/user_failures"),
                                    {"event_ids": [e for e, _ in events]}).fetchall()
            for event_id, message in failures:
                scrubbed = scrub_message(message, secrets)
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
            nothing = not (rows or failures or result.profile_rows or any(held.values()))
            result.status = "nothing_found" if nothing else "running"
            if nothing and previous:
                result.notes.append(f"already erased by request #{', #'.join(map(str, previous))}")
            elif nothing:
                result.notes.append("unknown user: no events, dead-letter rows, profile or warehouse rows")
            conn.execute(query("governance/record_erasure"), {
                "request_id": request_id, "status": result.status, "store_rows": result.store_rows,
                "dead_letter_rows": result.dead_letter_rows, "profile_rows": result.profile_rows,
                "value_hashes": Jsonb({k: sorted(keyed_hash(key, v) for v in vs) for k, vs in values.items() if vs}),
                "affected_days": result.affected_days, "affected_hours": result.affected_hours,
                "affected_event_types": result.affected_event_types,
                "aggregation_rows": Jsonb(result.aggregation_rows), "notes": result.notes})
    except BaseException as exc:
        conn.execute(query("governance/fail_erasures"), {
            "request_ids": [request_id], "error": f"{type(exc).__name__}: {exc}"[:2000]})
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

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass
class ErasureTrace:
    request_id: int | None  # None: not one request's (an anonymised event that kept personal data)
    store: str  # postgres | user_profiles | dead_letter | warehouse:<consumer> | refresh_queue:<consumer>
    kind: str  # user_id | email | phone | address | ip_user_agent | queued | anonymised_with_personal_data
    rows: int

    @property
    def severity(self) -> str:
        """``warn`` for the (IP address, user agent) pair on an event without a user: most likely the user's own
        logged-out browsing, which the seed's statement (by user_id) does not reach; ``error`` for the rest."""
        return "warn" if self.kind == "ip_user_agent" else "error"


@dataclass
class ErasureVerification:
    requests: int = 0
    users: int = 0
    traces: list[ErasureTrace] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.traces

    @property
    def errors(self) -> list[ErasureTrace]:
        return [t for t in self.traces if t.severity == "error"]


def verify_erasures(database_url: str, warehouses: Sequence[GovernedWarehouse] = ()) -> ErasureVerification:
    """For every request of the ledger: no row anywhere carries the user's id (the store, user_profiles, the dead
    letter's messages, every warehouse), nor an email, phone or address the user's events carried, nor -- on an
    event without a user -- the user's (IP address, user agent) pair; and no work of it is still queued. And,
    for any erasure: no event without a user whose type requires one (only an erasure makes those) still carries
    an email, phone, address, IP address or user agent."""
    found = ErasureVerification()
    with psycopg.connect(database_url, autocommit=True) as conn:
        key = erasure_key(conn)
        ledger = conn.execute(query("governance/erasure_ledger")).fetchall()
        if not ledger:
            return found
        user_types = {r[0] for r in conn.execute(query("governance/user_required_types"))}
        for _, rows in conn.execute(query("governance/anonymised_with_personal_data")):
            found.traces.append(ErasureTrace(None, "postgres", "anonymised_with_personal_data", rows))
        owners: dict[tuple[str, str], list[int]] = {}  # (kind, hash) -> requests
        for request_id, user_hash, _, value_hashes in ledger:
            owners.setdefault(("user_id", user_hash), []).append(request_id)
            for kind in TRACE_KINDS:
                for h in (value_hashes or {}).get(kind, []):
                    owners.setdefault((kind, h), []).append(request_id)
        found.requests = len(ledger)
        found.users = len({h for _, h, _, _ in ledger})

        def trace(store: str, kind: str, h: str, rows: int) -> None:
            for request_id in owners.get((kind, h), []):
                found.traces.append(ErasureTrace(request_id, store, kind, rows))

        user_hashes = [h for kind, h in owners if kind == "user_id"]
        for store, h, rows in conn.execute(query("governance/user_traces"), {"user_hashes": user_hashes}):
            trace(store, "user_id", h, rows)
        value_hashes = [h for kind, h in owners if kind != "user_id"]
        if value_hashes:
            for kind, h, rows in conn.execute(query("governance/value_traces"), {"hashes": value_hashes}):
                trace("postgres", kind, h, rows)
        leaf_hashes = [h for kind, h in owners if kind in LEAF_KINDS]
        for h, rows in conn.execute(query("governance/anonymised_value_traces"), {"hashes": leaf_hashes}):
            for kind in LEAF_KINDS:
                trace("postgres", kind, h, rows)
        for (message,) in conn.execute(query("governance/failure_messages")):
            for candidate in {m.lower() for m in _UUID.findall(message)}:
                trace("dead_letter", "user_id", keyed_hash(key, candidate), 1)
            for value in _quoted_values(message):
                for kind in PERSONAL_DATA_KEYS:
                    trace("dead_letter", kind, keyed_hash(key, value), 1)
        for request_id, consumer, rows in conn.execute(query("governance/pending_refresh")):
            if request_id is not None:
                found.traces.append(ErasureTrace(request_id, f"refresh_queue:{consumer}", "queued", rows))
    hashes: dict[str, set[str]] = {}
    for kind, h in owners:
        hashes.setdefault(kind, set()).add(h)
    for warehouse in warehouses:
        held = warehouse.traces(key, hashes, user_types)
        for h, rows in held.anonymised_values.items():
            for kind in LEAF_KINDS:
                trace(f"warehouse:{warehouse.consumer}", kind, h, rows)
        for kind, rows_by_hash in held.rows.items():
            for h, rows in rows_by_hash.items():
                trace(f"warehouse:{warehouse.consumer}", kind, h, rows)
        if held.anonymised_with_personal_data:
            found.traces.append(ErasureTrace(None, f"warehouse:{warehouse.consumer}", "anonymised_with_personal_data",
                                             held.anonymised_with_personal_data))
    return found


def _quoted_values(message: str) -> list[str]:
    """The value a validation message ends with, when it is a JSON string (``..., got "x"``)."""
    _, sep, tail = message.rpartition(_GOT)
    if not sep:
        return []
    try:
        value: Any = json.loads(tail)
    except ValueError:
        return []
    return [value] if isinstance(value, str) else []
