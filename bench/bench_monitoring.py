"""Benchmark the seed's monitoring query (``EVENT_PROCESSING_METRICS``: processing_status counts over the last hour)
on ``platform_events``, before and after migration 0020 (``processed`` waits for every enabled engine), in one
database, interleaved rounds.

Creates a throw-away database, migrates it, emits two demo backlogs of ``--events / 2`` each (2,000 users, 7 days)
and sweeps each into a throw-away lake (two sweeps: two lake versions). ``before`` is the view as 0018 defined it
(created beside the real one as ``platform_events_0018``); ``after`` is the current view, measured

* ``after_no_engine``: no engine registered (``lake_engines`` empty);
* ``after_engine_half_delivered``: one engine enabled that has delivered the first sweep's lake version only (its
  ``lake_deliveries`` row written directly: what a delivery records), so half the events read ``pending``.

Each figure is the median ``Execution Time`` of ``EXPLAIN (ANALYZE, BUFFERS)`` over ``--rounds`` interleaved rounds;
the plans of the last round go to stderr. Prints one JSON line per figure on stdout. Usage::

    .venv/bin/python bench/bench_monitoring.py [--events N] [--rounds N] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from workdev_pipeline.demo_loader import load_demo
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake import EventLake, LakeLocation
from workdev_pipeline.migrate import migrate
from workdev_pipeline.settings import MIGRATIONS_DIR

#: the seed's query (tests/seed_queries.py), verbatim
EVENT_PROCESSING_METRICS = """
SELECT
  processing_status,
  COUNT(*) as count,
  AVG(retry_count) as avg_retries
FROM platform_events
WHERE created_at > NOW() - INTERVAL '1 hour'
GROUP BY processing_status;
"""


def view_0018() -> str:
    """0018's definition of platform_events, renamed platform_events_0018."""
    text = (MIGRATIONS_DIR / "0018_faults_that_heal.sql").read_text()
    start = text.index("CREATE OR REPLACE VIEW platform_events AS")
    end = text.index(";", text.index("LEFT JOIN event_failures f ON f.event_id = e.event_id", start))
    return text[start:end].replace("VIEW platform_events AS", "VIEW platform_events_0018 AS", 1)


def execution_ms(conn: psycopg.Connection, view: str) -> tuple[float, str]:
    statement = EVENT_PROCESSING_METRICS.replace("FROM platform_events", f"FROM {view}")
    plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}"))
    return float(re.search(r"Execution Time: ([0-9.]+) ms", plan).group(1)), plan


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--admin-url", default=os.environ.get("WORKDEV_TEST_ADMIN_URL",
                                                              "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    name = f"bench_monitoring_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(**{**conninfo_to_dict(args.admin_url), "dbname": name})
    try:
        migrate(url)
        with tempfile.TemporaryDirectory(prefix="bench_monitoring_") as folder:
            lake = EventLake(LakeLocation.from_env(str(Path(folder) / "lake")))
            versions = []
            for seed in (1, 2):
                load_demo(url, users=2_000, events=args.events // 2, days=7, seed=seed)
                outcome = Ingestor(url, lake, engines=[]).sweep()
                assert outcome.status == "loaded", outcome.error
                versions.append(outcome.lake_version)
                print(f"swept {outcome.events_loaded:,} events into lake version {outcome.lake_version}",
                      file=sys.stderr)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(view_0018())
                conn.execute("VACUUM ANALYZE")
                cases = {"before": ("platform_events_0018", None), "after_no_engine": ("platform_events", None),
                         "after_engine_half_delivered": ("platform_events", versions[0])}
                timings: dict[str, list[float]] = {case: [] for case in cases}
                plans: dict[str, str] = {}
                counts: dict[str, list] = {}
                for _ in range(args.rounds):
                    for case, (view, delivered) in cases.items():
                        conn.execute("DELETE FROM lake_engines")
                        conn.execute("DELETE FROM lake_deliveries")
                        if delivered is not None:
                            conn.execute("INSERT INTO lake_engines (engine) VALUES ('redshift')")
                            conn.execute("INSERT INTO lake_deliveries (engine, lake_version, mode) "
                                         "VALUES ('redshift', %s, 'incremental')", (delivered,))
                        ms, plans[case] = execution_ms(conn, view)
                        timings[case].append(ms)
                        counts[case] = sorted(conn.execute(
                            EVENT_PROCESSING_METRICS.replace("FROM platform_events", f"FROM {view}")).fetchall())
        for case, plan in plans.items():
            print(f"--- {case}\n{plan}", file=sys.stderr)
        for case, values in timings.items():
            print(json.dumps({"figure": f"{case}_ms", "median": round(statistics.median(values), 1),
                              "runs": [round(v, 1) for v in values],
                              "statuses": {s: n for s, n, _ in counts[case]}, "events": args.events,
                              "load_average": [round(x, 2) for x in os.getloadavg()]}))
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
