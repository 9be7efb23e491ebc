"""Benchmark the typed amounts a sweep adds to each event (``aggregations/amounts.py`` ``event_amounts``): the
catalog's amount field read from ``event_data`` exactly, by Arrow's JSON reader, against the exact per-payload read
(``json.loads`` with Decimals) that it falls back to.

No database: ``--events`` synthetic payloads, half of them of financial types (``project.created`` budgets with
cents, ``payment.completed`` amounts, ``proposal.submitted`` integer bids), the rest of other types. Figures, the
best of ``--rounds``:

* ``event_amounts_seconds``: ``event_amounts`` over every event (what a sweep's batch costs);
* ``event_amounts_python_seconds``: the same payloads read one at a time by ``amount_of`` (the fallback, and what
  the sweep would cost without the Arrow reader).

Prints one JSON line per figure on stdout. Usage::

    .venv/bin/python bench/bench_amounts.py [--events 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_emit import emit_figure

from workdev_pipeline.aggregations.amounts import _read_with_python, event_amounts
from workdev_pipeline.catalog import amount_fields

TYPES = ("user.login", "project.viewed", "search.performed", "project.created", "payment.completed",
         "proposal.submitted")


def payloads(n: int, seed: int = 1) -> tuple[pa.Array, pa.Array]:
    rng = random.Random(seed)
    types, data = [], []
    for i in range(n):
        event_type = TYPES[rng.randrange(len(TYPES))]
        types.append(event_type)
        if event_type == "project.created":
            body = {"title": "E-commerce platform rebuild", "budget": round(rng.uniform(100, 50_000), 2),
                    "project_type": "fixed", "skills": ["python", "sql"]}
        elif event_type == "payment.completed":
            body = {"amount": round(rng.uniform(10, 5_000), 2), "currency": "EUR",
                    "milestone_id": "6f1c0000-0000-4000-8000-000000000000"}
        elif event_type == "proposal.submitted":
            body = {"project_id": "6f1c0000-0000-4000-8000-000000000000", "bid_amount": rng.randint(100, 9_000)}
        else:
            body = {"method": "github", "n": i}
        data.append(json.dumps(body))
    return pa.array(types), pa.array(data)


def best(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def python_read(types: pa.Array, data: pa.Array) -> None:
    fields = amount_fields()
    for field in set(fields.values()):
        wanted = [d for t, d in zip(types.to_pylist(), data.to_pylist(), strict=True) if fields.get(t) == field]
        _read_with_python(pa.array(wanted, pa.string()), field)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    types, data = payloads(args.events)
    financial = sum(1 for t in types.to_pylist() if t in amount_fields())
    common = {"events": args.events, "financial_events": financial, "statistic": f"best of {args.rounds}",
              "load_average": os.getloadavg()[0]}
    for name, action in (("event_amounts_seconds", lambda: event_amounts(types, data)),
                         ("event_amounts_python_seconds", lambda: python_read(types, data))):
        seconds = best(action, args.rounds)
        emit_figure({"figure": name, "value": round(seconds, 3), "unit": "s", **common,
                     "events_per_second": round(args.events / seconds)})


if __name__ == "__main__":
    main()
