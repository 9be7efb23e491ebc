"""Benchmark the enrichment functions over demo events: device_info, geo_location, SchemaValidator.validate.

Generates realistic demo events (``workdev_pipeline.demo``: 2,000 users, 1,000,000 events by default) and
turns them into Arrow columns before any timing, then measures each function on the whole column:

* ``device_info_cold_events_per_s`` / ``geo_location_cold_events_per_s``: first call with empty caches
  (readers already loaded), so every distinct value is parsed / looked up once;
* ``device_info_warm_events_per_s`` / ``geo_location_warm_events_per_s``: the next batch, served by the caches;
* ``validation_events_per_s``: ``SchemaValidator.validate`` (column-wise), in batches of ``--batch`` events (the
  sweep's batch size), and ``validation_reference_events_per_s``: the per-event reference it replaced on the sweep's
  path (orjson + fastjsonschema, one event at a time), interleaved with it round by round (medians of
  ``--rounds``; ``ratio``: column-wise / reference; bar 150,000);
* ``ua_parse_native_per_s`` / ``ua_parse_basic_per_s``: cold parses of the distinct user agents with
  ua-parser's native (ua-parser-rs) and pure-Python resolvers: what the ``regex`` extra buys.

Prints one JSON line per figure on stdout (``figure``, ``value``, ``unit``, ``events``, ``seconds``);
progress goes to stderr. Needs no database. Usage::

    .venv/bin/python bench/bench_enrichment.py [--events N] [--users N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa

from workdev_pipeline.demo import generate_events, generate_users
from workdev_pipeline.enrichment import GeoLocator, SchemaValidator, device_info, parse_user_agent
from workdev_pipeline.enrichment.device import MAX_USER_AGENT_LENGTH

VALIDATION_BAR = 150_000
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(figure: str, value: float, unit: str, events: int, seconds: float, **extra: Any) -> None:
    line = {"figure": figure, "value": round(value, 1), "unit": unit, "events": events, "seconds": round(seconds, 4)}
    print(json.dumps(line | extra), flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def demo_columns(users: int, events: int) -> dict[str, pa.Array]:
    """The demo events as Arrow columns (built while streaming: the events themselves are not kept)."""
    types, data, ips, agents = [], [], [], []
    dumps = orjson.dumps
    for event in generate_events(generate_users(users, now=NOW), events, now=NOW, days=2.0):
        types.append(event["event_type"])
        data.append(dumps(event["event_data"]).decode())
        ips.append(event["metadata"]["ip_address"])
        agents.append(event["metadata"]["user_agent"])
    return {"event_type": pa.array(types, pa.string()), "event_data": pa.array(data, pa.string()),
            "ip_address": pa.array(ips, pa.string()), "user_agent": pa.array(agents, pa.string())}


def bench_resolvers(agents: pa.Array) -> None:
    """Cold parse of every distinct user agent with each ua-parser resolver."""
    from ua_parser import BasicResolver, Domain, Parser, load_builtins, load_lazy_builtins

    distinct = [ua[:MAX_USER_AGENT_LENGTH] for ua in agents.unique().to_pylist() if ua and ua.strip()]
    resolvers: list[tuple[str, Callable[[], Parser]]] = [("basic", lambda: Parser(BasicResolver(load_builtins())))]
    try:
        from ua_parser.regex import Resolver as NativeResolver

        resolvers.insert(0, ("native", lambda: Parser(NativeResolver(load_lazy_builtins()))))
    except ImportError:
        log("ua-parser-rs is not installed: no native figure")
    for name, make in resolvers:
        parser = make()
        parser(distinct[0], Domain.ALL)  # load the rules outside the timing
        seconds, _ = timed(lambda p=parser: [p(ua, Domain.ALL) for ua in distinct])
        emit(f"ua_parse_{name}_per_s", len(distinct) / seconds, "user_agents/s", len(distinct), seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3, help="validation runs (the figure is their median)")
    parser.add_argument("--batch", type=int, default=25_000, help="events per validate() call (the sweep's batches)")
    args = parser.parse_args(argv)

    log(f"generating {args.events:,} demo events ...")
    seconds, columns = timed(lambda: demo_columns(args.users, args.events))
    n = args.events
    log(f"  {seconds:.1f} s")

    agents, ips = columns["user_agent"], columns["ip_address"]
    device_info(agents[:10])  # load the parser rules outside the timing
    parse_user_agent.cache_clear()
    seconds, _ = timed(lambda: device_info(agents))
    distinct_agents = len(agents.unique())
    emit("device_info_cold_events_per_s", n / seconds, "events/s", n, seconds, distinct=distinct_agents)
    seconds, _ = timed(lambda: device_info(agents))
    emit("device_info_warm_events_per_s", n / seconds, "events/s", n, seconds, distinct=distinct_agents)

    locator = GeoLocator().load()  # the bundled geoip2fast data, loaded outside the timing
    seconds, _ = timed(lambda: locator.locate(ips))
    distinct_ips = len(ips.unique())
    emit("geo_location_cold_events_per_s", n / seconds, "events/s", n, seconds, distinct=distinct_ips)
    seconds, _ = timed(lambda: locator.locate(ips))
    emit("geo_location_warm_events_per_s", n / seconds, "events/s", n, seconds, distinct=distinct_ips)

    seconds, validator = timed(SchemaValidator.from_catalog)
    log(f"compiled {len(validator.event_types)} schemas in {seconds * 1000:.0f} ms "
        f"({len(validator.column_checked_types)} checked column-wise)")
    types, data = columns["event_type"], columns["event_data"]
    type_list, data_list = types.to_pylist(), data.to_pylist()
    reference = validator.reference

    def column_wise() -> int:
        return sum(validator.validate(types.slice(k, args.batch), data.slice(k, args.batch)).null_count
                   for k in range(0, n, args.batch))

    runs: dict[str, list[float]] = {"column": [], "reference": []}
    for _ in range(args.rounds):  # interleaved: both see the same load
        seconds, valid = timed(column_wise)
        runs["column"].append(seconds)
        seconds, messages = timed(lambda: [reference(t, d) for t, d in zip(type_list, data_list, strict=True)])
        runs["reference"].append(seconds)
    column, before = statistics.median(runs["column"]), statistics.median(runs["reference"])
    emit("validation_events_per_s", n / column, "events/s", n, column, invalid=n - valid, batch=args.batch,
         runs_seconds=[round(s, 4) for s in runs["column"]], ratio=round(before / column, 2), bar=VALIDATION_BAR,
         meets_bar=n / column >= VALIDATION_BAR)
    emit("validation_reference_events_per_s", n / before, "events/s", n, before,
         invalid=sum(m is not None for m in messages), runs_seconds=[round(s, 4) for s in runs["reference"]])

    bench_resolvers(agents)
    return 0


if __name__ == "__main__":
    sys.exit(main())
