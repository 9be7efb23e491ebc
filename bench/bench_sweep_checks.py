"""Benchmark what the lake's per-day checks add to a sweep: ``lake_verdicts`` (reconciliation with PostgreSQL, no
duplicate, footers, and the deep decode of the sweep's own files) for the day a small sweep appended to, on a day
already holding ``--events`` events; beside it the same checks decoding every file of the day (what a rebuild's
checks do) and the small sweep itself.

Creates a throw-away database (migrated) and a lake under ``$TMPDIR`` (both removed at the end). Loads ``--events``
demo events within one UTC day and sweeps them (one file), then ``--rounds`` times: ``--small`` more events, a
sweep, and the checks timed both ways. Figures, medians of the rounds, one JSON line each on stdout:

* ``small_sweep_seconds``: the sweep of the ``--small`` events;
* ``sweep_checks_seconds``: the checks a sweep runs for its day (the deep decode of its own files);
* ``day_checks_all_files_seconds``: the same checks decoding every file of the day.

Usage::

    .venv/bin/python bench/bench_sweep_checks.py [--events 250000] [--small 2000] [--rounds 3] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_emit import emit_figure, resolve_admin_url, throwaway_database

from workdev_pipeline.assets.day_checks import lake_verdicts
from workdev_pipeline.demo_loader import load_demo
from workdev_pipeline.migrate import migrate
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=250_000, help="events the day holds before the small sweeps")
    parser.add_argument("--small", type=int, default=2_000, help="events of each small sweep")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--admin-url", help="superuser URL (default: $WORKDEV_BENCH_ADMIN_URL, else local)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-checks-"))
    try:
        with throwaway_database(resolve_admin_url(args.admin_url)) as url:
            migrate(url)
            lake, postgres = LakeResource(uri=str(root / "lake")), PostgresResource(database_url=url)
            load_demo(url, users=500, events=args.events, days=0.9, seed=1, progress=False)
            lake.ingestor(url).sweep()
            runs: dict[str, list[float]] = {"small_sweep_seconds": [], "sweep_checks_seconds": [],
                                            "day_checks_all_files_seconds": []}
            for round_ in range(args.rounds):
                load_demo(url, users=500, events=args.small, days=0.01, seed=2 + round_, progress=False)
                before = lake.events().version()
                started = time.monotonic()
                outcome = lake.ingestor(url).sweep()
                runs["small_sweep_seconds"].append(time.monotonic() - started)
                own: dict[date, list[str]] = {}
                for path, day in lake.events().actions(before, outcome.lake_version).added.items():
                    own.setdefault(day, []).append(path)
                for figure, paths in (("sweep_checks_seconds", own), ("day_checks_all_files_seconds", None)):
                    started = time.monotonic()
                    lake_verdicts(outcome.days, postgres, lake, paths)
                    runs[figure].append(time.monotonic() - started)
            files = lake.events().snapshot().files().num_rows
            for figure, seconds in runs.items():
                emit_figure({"figure": figure, "value": round(statistics.median(seconds), 3), "unit": "s",
                             "runs": [round(s, 3) for s in seconds], "day_events": args.events,
                             "small_sweep_events": args.small, "lake_files": files})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
