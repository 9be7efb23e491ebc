"""The pipeline's health at a glance (``workdev-pipeline status`` and the ``pipeline/pipeline_status`` asset's
observations): what :func:`read_status` measures, what :func:`diagnose` makes of it, and what to do about each
problem.

Figures only -- counts, ages, versions, sweep ids and process ids; never an event, a user or a query's text. Ages
are measured by the database's clock (lake commits too), so the host's time zone and clock do not matter.

Limits (environment, seconds):

``WORKDEV_MAX_PENDING_AGE_SECONDS``    (300) the oldest unswept event may wait this long; queued rebuild and
                                       refresh work too
``WORKDEV_STUCK_SWEEP_SECONDS``        (120) a sweep 'running' this long with no session holding its lock was left
                                       by a killed run
``WORKDEV_MAX_DELIVERY_LAG_SECONDS``   (600) an engine may be this long behind the lake's oldest commit it lacks
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import psycopg

from workdev_pipeline.errors import WorkdevError
from workdev_pipeline.governance.redaction import redact_message
from workdev_pipeline.lake.events import EventLake
from workdev_pipeline.sql_files import query

Severity = Literal["error", "warning"]
ERROR_KINDS = ("validation", "enrichment", "transient")
#: The most commits of the lake's log read to date an engine's lag (beyond it, the oldest of them dates it).
MAX_HISTORY = 1_000


@dataclass(frozen=True)
class Limits:
    """When a figure becomes a problem (see the module's documentation)."""

    pending_age_seconds: float = 300.0
    stuck_sweep_seconds: float = 120.0
    delivery_lag_seconds: float = 600.0

    @classmethod
    def from_env(cls) -> Limits:
        def seconds(name: str, default: float) -> float:
            text = os.environ.get(name, "").strip()
            try:
                value = float(text) if text else default
            except ValueError:
                value = -1.0
            if not value >= 0:
                raise WorkdevError(f"{name} must be a number of seconds >= 0, got {text!r}")
            return value

        return cls(seconds("WORKDEV_MAX_PENDING_AGE_SECONDS", cls.pending_age_seconds),
                   seconds("WORKDEV_STUCK_SWEEP_SECONDS", cls.stuck_sweep_seconds),
                   seconds("WORKDEV_MAX_DELIVERY_LAG_SECONDS", cls.delivery_lag_seconds))


@dataclass(frozen=True)
class ConsumerLag:
    """How far one consumer of the event store (the lake's) has swept."""

    consumer: str
    tx_watermark: int
    pending: int
    oldest_pending_seconds: float | None
    last_sweep_seconds: float | None  # None: never swept
    failed_runs: int = 0  # sweeps failed transiently since the last good one (their events stay pending)
    last_error_kind: str | None = None


@dataclass(frozen=True)
class RunningSweep:
    sweep_id: int
    consumer: str
    running_seconds: float
    lock_held: bool


@dataclass(frozen=True)
class DeadLetter:
    consumer: str
    error_kind: str
    events: int
    oldest_seconds: float
    max_retries: int


@dataclass(frozen=True)
class LastLoad:
    warehouse: str
    status: str
    seconds_ago: float
    events_loaded: int
    events_failed: int


@dataclass(frozen=True)
class EngineDelivery:
    """An engine fed from the lake: the lake version it holds against the lake's, and whether it answers."""

    engine: str
    enabled: bool
    delivered_version: int | None  # None: never delivered
    rows_loaded: int
    seconds_since_delivery: float | None
    versions_behind: int
    behind_seconds: float | None  # the age of the oldest lake commit it lacks
    unreachable: str | None = None  # the probe's error
    #: events the lake holds that it has not delivered: ``pending`` in platform_events while it gates ``processed``
    #: (registered enabled in lake_engines by the sweeps), else None
    events_waiting: int | None = None


@dataclass(frozen=True)
class QueuedWork:
    queue: str  # rebuild (days) | refresh (events)
    consumer: str
    items: int
    oldest_seconds: float


@dataclass(frozen=True)
class BlockingTransaction:
    pid: int
    state: str | None
    open_seconds: float


@dataclass(frozen=True)
class PipelineStatus:
    consumers: list[ConsumerLag]
    running_sweeps: list[RunningSweep]
    dead_letter: list[DeadLetter]
    last_loads: list[LastLoad]
    engines: list[EngineDelivery]
    queues: list[QueuedWork]
    blocker: BlockingTransaction | None
    lake_version: int | None  # None: no lake table yet
    lake_unreachable: str | None = None


@dataclass(frozen=True)
class Problem:
    severity: Severity
    subject: str
    message: str
    advice: str


def _undelivered(delivered: int | None, lake_version: int) -> int:
    """How many of the lake's latest commits an engine lacks (all of them when it never delivered, or delivered a
    version the lake does not have: a re-created lake)."""
    return lake_version + 1 if delivered is None or delivered > lake_version else lake_version - delivered


def _commit_times(lake: EventLake, count: int) -> dict[int, int]:
    """The times (milliseconds since the epoch) of the lake's ``count`` latest commits (at most MAX_HISTORY), by
    version."""
    table = lake.table() if count else None
    entries = table.history(min(count, MAX_HISTORY)) if table is not None else []
    return {int(e["version"]): int(e["timestamp"]) for e in entries if "version" in e and "timestamp" in e}


def _error(exc: BaseException) -> str:
    """An error as one short line, the values it quotes redacted."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact_message(f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__)


def read_status(database_url: str, lake: EventLake, probes: Mapping[str, Callable[[], None] | None], *,
                consumer: str = "lake") -> PipelineStatus:
    """The pipeline as it stands: PostgreSQL's books (``sql/queries/status``), the lake's version and log, and each
    enabled engine (``probes``: engine -> a call that raises when the engine cannot be reached; None: no probe).
    Engines that delivered once but are not enabled are listed, not probed."""
    lake_version: int | None = None
    lake_unreachable = None
    try:
        lake_version = lake.version()
    except Exception as exc:  # an object store down or misconfigured: reported, not raised
        lake_unreachable = _error(exc)
    with psycopg.connect(database_url, autocommit=True) as conn:
        consumers = [ConsumerLag(*r) for r in conn.execute(query("status/consumers"), {"consumer": consumer})]
        running = [RunningSweep(*r) for r in conn.execute(query("status/running_sweeps"))]
        dead = [DeadLetter(*r) for r in conn.execute(query("status/dead_letter"))]
        loads = [LastLoad(*r) for r in conn.execute(query("status/last_loads"))]
        deliveries = {r[0]: r[1:] for r in conn.execute(query("status/deliveries"))}
        waiting = {r[0]: int(r[2]) for r in conn.execute(query("ingest/engines_behind"))}
        queues = [QueuedWork(*r) for r in conn.execute(query("status/queues"))]
        found = conn.execute(query("status/blocking_transaction")).fetchone()
        now_ms = conn.execute(query("status/now")).fetchone()[0] * 1000
    names = sorted(set(probes) | set(deliveries) | set(waiting))
    held = {e: deliveries.get(e, (None, 0, None)) for e in names}
    lacking = {e: 0 if lake_version is None or held[e][0] == lake_version else _undelivered(held[e][0], lake_version)
               for e in names}
    times = _commit_times(lake, max(lacking.values(), default=0))
    engines = []
    for engine in names:
        delivered, rows, since = held[engine]
        behind, behind_seconds = lacking[engine], None
        if behind:
            oldest = min((t for v, t in times.items() if v > lake_version - behind), default=None)
            behind_seconds = max(0.0, (now_ms - oldest) / 1000) if oldest is not None else None
        unreachable = None
        probe = probes.get(engine)
        if probe is not None:
            try:
                probe()
            except Exception as exc:  # whatever the client raises: the engine does not answer
                unreachable = _error(exc)
        engines.append(EngineDelivery(engine, engine in probes, delivered, rows, since, behind, behind_seconds,
                                      unreachable, waiting.get(engine)))
    return PipelineStatus(consumers, running, dead, loads, engines, queues,
                          BlockingTransaction(*found) if found else None, lake_version, lake_unreachable)


def duration(seconds: float | None) -> str:
    """``3h 2m``, ``4m 5s``, ``12s`` (``-`` for None)."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole >= 86_400:
        return f"{whole // 86_400}d {whole % 86_400 // 3600}h"
    if whole >= 3600:
        return f"{whole // 3600}h {whole % 3600 // 60}m"
    if whole >= 60:
        return f"{whole // 60}m {whole % 60}s"
    return f"{whole}s"


def diagnose(status: PipelineStatus, limits: Limits) -> list[Problem]:
    """The problems ``status`` shows, errors first, each with what to do about it."""
    problems: list[Problem] = []
    stuck = [s for s in status.running_sweeps if not s.lock_held and s.running_seconds > limits.stuck_sweep_seconds]
    if status.lake_unreachable:
        problems.append(Problem("error", "lake", f"the lake cannot be read ({status.lake_unreachable})",
                                "check WORKDEV_LAKE_URI and the object store's credentials and network"))
    for lag in status.consumers:
        age = lag.oldest_pending_seconds
        if lag.failed_runs and lag.pending:
            problems.append(Problem("error", f"backlog {lag.consumer}",
                                    f"{lag.pending:,} event(s) pending because {lag.failed_runs} sweep(s) failed "
                                    f"transiently ({lag.last_error_kind or 'unknown fault'})",
                                    "fix the cause; the ingest sensor retries with backoff, or sweep now with "
                                    "`workdev-pipeline sweep`"))
        elif lag.pending and age is not None and age > limits.pending_age_seconds:
            if status.blocker is not None:
                b = status.blocker
                advice = (f"transaction of process {b.pid} ({b.state or 'unknown state'}) open for "
                          f"{duration(b.open_seconds)} holds sweeps back: let it commit, or end it with "
                          f"SELECT pg_terminate_backend({b.pid})")
            elif any(s.consumer == lag.consumer for s in stuck):
                advice = "a killed sweep holds it (see below): `workdev-pipeline sweep`"
            else:
                advice = ("sweep now with `workdev-pipeline sweep`; if that works, check the ingest_sensor runs "
                          "(`workdev-pipeline dev`)")
            problems.append(Problem("error", f"backlog {lag.consumer}",
                                    f"{lag.pending:,} event(s) pending, the oldest for {duration(age)} "
                                    f"(limit {duration(limits.pending_age_seconds)})", advice))
    for sweep in stuck:
        problems.append(Problem("error", f"sweep {sweep.sweep_id}",
                                f"'running' for {duration(sweep.running_seconds)} and no process holds "
                                f"{sweep.consumer}'s ingestion lock (its run was killed)",
                                "`workdev-pipeline sweep` redoes it over the same range, exactly once"))
    for load in status.last_loads:
        if load.status == "failed":
            problems.append(Problem("error", f"load {load.warehouse}",
                                    f"the last load failed {duration(load.seconds_ago)} ago",
                                    "`workdev-pipeline sweep` shows the error; its events stay pending and the "
                                    "next good sweep loads them"))
    for engine in status.engines:
        if not engine.enabled:
            continue
        if engine.unreachable:
            problems.append(Problem("error", f"engine {engine.engine}", f"unreachable ({engine.unreachable})",
                                    f"check the {engine.engine.upper()}_* settings, credentials and network; then "
                                    f"`workdev-pipeline deliver --engine {engine.engine}`"))
        if engine.versions_behind and (engine.behind_seconds or 0) > limits.delivery_lag_seconds:
            held = "nothing" if engine.delivered_version is None else f"lake version {engine.delivered_version}"
            pending = f"; {engine.events_waiting:,} event(s) pending until it delivers them" \
                if engine.events_waiting else ""
            problems.append(Problem("error", f"delivery {engine.engine}",
                                    f"holds {held}, the lake is at {status.lake_version}: behind for "
                                    f"{duration(engine.behind_seconds)} (limit "
                                    f"{duration(limits.delivery_lag_seconds)}){pending}",
                                    f"`workdev-pipeline deliver --engine {engine.engine}` (shows any error); "
                                    f"then check its sensor delivery_sensor_{engine.engine} runs"))
    for dead in status.dead_letter:
        if dead.error_kind == "transient":
            problems.append(Problem("error", f"dead letter {dead.consumer}",
                                    f"{dead.events:,} event(s) failed transiently after {dead.max_retries} "
                                    f"retries, the oldest {duration(dead.oldest_seconds)} ago: not in the lake",
                                    "once the cause is fixed (see the last load): `workdev-pipeline replay`"))
        else:
            fix = ("fix the producer or the type's schema (workdev_pipeline/catalog.py, `workdev-pipeline migrate`)"
                   if dead.error_kind == "validation" else "fix the enrichment's input (user attributes, GeoIP)")
            problems.append(Problem("warning", f"dead letter {dead.consumer}",
                                    f"{dead.events:,} event(s) failed {dead.error_kind}, the oldest "
                                    f"{duration(dead.oldest_seconds)} ago", f"{fix}; then `workdev-pipeline replay`"))
    for work in status.queues:
        if work.oldest_seconds > limits.pending_age_seconds:
            if work.queue == "rebuild":
                what, advice = "day(s) queued for a rebuild", "every sweep drains it first: `workdev-pipeline sweep`"
            else:
                what, advice = ("erased event(s) to refresh", "`workdev-pipeline erase --pending` finishes the "
                                "erasures' warehouse work")
            problems.append(Problem("warning", f"queue {work.queue} {work.consumer}",
                                    f"{work.items:,} {what}, the oldest for {duration(work.oldest_seconds)}", advice))
    return sorted(problems, key=lambda p: p.severity != "error")


def verdict(problems: list[Problem]) -> str:
    """``failing`` (an error), ``degraded`` (warnings only) or ``healthy``."""
    if any(p.severity == "error" for p in problems):
        return "failing"
    return "degraded" if problems else "healthy"


def figures(status: PipelineStatus, problems: list[Problem]) -> dict[str, int | float]:
    """The numbers of ``status`` under stable names (the observation's metadata, plotted by the UI)."""
    out: dict[str, int | float] = {}
    for lag in status.consumers:
        out[f"{lag.consumer}_pending_events"] = lag.pending
        out[f"{lag.consumer}_oldest_pending_seconds"] = round(lag.oldest_pending_seconds or 0.0, 3)
        out[f"{lag.consumer}_failed_sweeps"] = lag.failed_runs
        if lag.last_sweep_seconds is not None:
            out[f"{lag.consumer}_seconds_since_last_sweep"] = round(lag.last_sweep_seconds, 3)
    out["sweeps_running"] = len(status.running_sweeps)
    out["sweeps_without_lock"] = sum(not s.lock_held for s in status.running_sweeps)
    out["dead_letter_events"] = sum(d.events for d in status.dead_letter)
    for kind in ERROR_KINDS:
        out[f"dead_letter_{kind}_events"] = sum(d.events for d in status.dead_letter if d.error_kind == kind)
    for load in status.last_loads:
        out[f"{load.warehouse}_seconds_since_last_load"] = round(load.seconds_ago, 3)
    if status.lake_version is not None:
        out["lake_version"] = status.lake_version
    for e in status.engines:
        if e.delivered_version is not None:
            out[f"{e.engine}_delivered_lake_version"] = e.delivered_version
            out[f"{e.engine}_seconds_since_last_delivery"] = round(e.seconds_since_delivery or 0.0, 3)
        out[f"{e.engine}_lake_versions_behind"] = e.versions_behind
        out[f"{e.engine}_seconds_behind_lake"] = round(e.behind_seconds or 0.0, 3)
        if e.events_waiting is not None:
            out[f"{e.engine}_events_pending_delivery"] = e.events_waiting
        if e.enabled:
            out[f"{e.engine}_reachable"] = int(e.unreachable is None)
    out["rebuild_queue_days"] = sum(q.items for q in status.queues if q.queue == "rebuild")
    out["refresh_queue_events"] = sum(q.items for q in status.queues if q.queue == "refresh")
    out["problems_error"] = sum(p.severity == "error" for p in problems)
    out["problems_warning"] = sum(p.severity == "warning" for p in problems)
    return out


def render(status: PipelineStatus, problems: list[Problem]) -> str:
    """A compact table of ``status`` and, per problem, what to do."""
    rows: list[tuple[str, str, str]] = []
    for lag in status.consumers:
        last = "never swept" if lag.last_sweep_seconds is None else f"last sweep {duration(lag.last_sweep_seconds)} ago"
        oldest = f", oldest {duration(lag.oldest_pending_seconds)}" if lag.pending else ""
        rows.append(("backlog", lag.consumer, f"{lag.pending:,} pending{oldest}; {last}"))
    for s in status.running_sweeps:
        holder = "running" if s.lock_held else "NO PROCESS HOLDS ITS LOCK"
        rows.append(("sweep", s.consumer, f"sweep {s.sweep_id} claimed {duration(s.running_seconds)} ago, {holder}"))
    if status.blocker is not None:
        b = status.blocker
        rows.append(("blocker", f"pid {b.pid}", f"transaction open {duration(b.open_seconds)} ({b.state or '?'}) "
                                                f"holds sweeps back"))
    kinds: dict[str, list[str]] = {}
    for d in status.dead_letter:
        kinds.setdefault(d.consumer, []).append(f"{d.error_kind} {d.events:,}")
    for consumer, parts in kinds.items():
        rows.append(("dead letter", consumer, ", ".join(parts)))
    if not status.dead_letter:
        rows.append(("dead letter", "-", "empty"))
    for load in status.last_loads:
        rows.append(("last load", load.warehouse, f"{load.status} {duration(load.seconds_ago)} ago: "
                                                  f"{load.events_loaded:,} loaded, {load.events_failed:,} failed"))
    lake = status.lake_unreachable or ("no table yet" if status.lake_version is None else
                                       f"version {status.lake_version}")
    rows.append(("lake", "platform_events", lake))
    for e in status.engines:
        held = "never delivered" if e.delivered_version is None else (
            f"lake version {e.delivered_version}, {duration(e.seconds_since_delivery)} ago ({e.rows_loaded:,} rows)")
        behind = f"; {e.versions_behind} behind for {duration(e.behind_seconds)}" if e.versions_behind else ""
        waiting = f"; {e.events_waiting:,} event(s) pending until delivered" if e.events_waiting else ""
        state = "not enabled" if not e.enabled else ("UNREACHABLE" if e.unreachable else "reachable")
        if not e.enabled and e.events_waiting is not None:
            state = "not enabled here, but enabled where the lake is swept: `processed` waits for it"
        rows.append(("engine", e.engine, f"{held}{behind}{waiting}; {state}"))
    for q in status.queues:
        unit = "day(s)" if q.queue == "rebuild" else "event(s)"
        rows.append((f"{q.queue} queue", q.consumer, f"{q.items:,} {unit}, oldest {duration(q.oldest_seconds)}"))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    errors = sum(p.severity == "error" for p in problems)
    lines = [f"pipeline status: {verdict(problems)}" + (
        f" ({errors} error(s), {len(problems) - errors} warning(s))" if problems else "")]
    lines += [f"  {a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in rows]
    for p in problems:
        lines.append(f"{p.severity.upper()} {p.subject}: {p.message}")
        lines.append(f"  do: {p.advice}")
    return "\n".join(lines)
