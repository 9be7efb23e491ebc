"""Benchmark scale-out: rebuilding warehouse day partitions with 1, 2 and 4 concurrent workers.

A warehouse backfill is a set of day rebuilds (``Ingestor.rebuild``, what ``workdev-pipeline rebuild --from D
--to D`` and a Dagster partition run of ``warehouse/platform_events`` execute). This measures how its
throughput grows with concurrent workers on this machine, each worker a process of its own (as a Dagster run
is) rebuilding distinct days:

* ``rebuild_shared_events_per_s`` (workers=1, 2, 4): every worker on the same warehouse and consumer
  (``local``), exactly what concurrent ``workdev-pipeline rebuild`` processes or concurrent partition runs do
  today. The consumer's advisory lock (which keeps sweeps, rebuilds and replays of one warehouse exactly-once)
  admits one at a time, so this shows what the lock costs;
* ``rebuild_independent_events_per_s`` (workers=1, 2, 4): worker i on a consumer and warehouse directory of its
  own (``scaleout_w<i>``, swept beforehand), so nothing is shared but PostgreSQL and the machine: the
  parallel capacity a per-day lock would unlock, and what separate machines (Dagster's Docker/Kubernetes run
  launchers) would each add;
* ``projected_events_per_s_per_added_worker``: the model below, from the measured figures.

Every configuration rebuilds the same DAYS whole UTC days (``--events`` demo events over them): 1 worker
rebuilds all of them, 2 workers half each, 4 workers one each. Throughput is the events rebuilt over the
wall-clock time from starting the first worker to the last one finishing (process start-up included, as a
run's would be); configurations are interleaved for ``--rounds`` rounds and the median is reported.

Model: with n workers on separate machines (or cores), throughput(n) = n x r1 x e, where r1 is one worker's
rate and e the parallel efficiency, until PostgreSQL's extraction (one COPY stream per worker, shared disk
and CPU of the database server) saturates. e is measured here at n = 2 (this machine has 2 cores: at n = 4
the workers share cores, so the n = 4 figure is the single-machine ceiling, not the per-worker gain).

Prints one JSON line per figure on stdout; progress goes to stderr. Usage::

    .venv/bin/python bench/bench_scaleout.py [--events 400000] [--rounds 2] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_emit import emit_figure, resolve_admin_url, throwaway_database

from workdev_pipeline.migrate import migrate

DAYS = 4
WORKERS = (1, 2, 4)
USERS = 2_000
SEED = 42
SHARED_CONSUMER = "local"
SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent


def log(message: str) -> None:
    print(f"[bench_scaleout] {message}", file=sys.stderr, flush=True)


# -- a worker: one process rebuilding its days ----------------------------------------------------------------


def child(url: str, warehouse_dir: str, consumer: str, days: list[str]) -> None:
    """What ``workdev-pipeline rebuild --from D --to D`` does (the CLI's Ingestor), for a chosen consumer."""
    from workdev_pipeline.ingest.ingestor import Ingestor
    from workdev_pipeline.ingest.local_store import LocalEventFiles

    ingestor = Ingestor(url, LocalEventFiles(warehouse_dir), consumer=consumer)
    outcome = ingestor.rebuild([date.fromisoformat(d) for d in days], run_id=f"bench-{os.getpid()}")
    print(json.dumps({"events": outcome.events_loaded, "seconds": outcome.seconds, "status": outcome.status}))


def start_worker(url: str, warehouse_dir: Path, consumer: str, days: Sequence[date]) -> subprocess.Popen:
    args = [sys.executable, str(SCRIPT), "--child", url, str(warehouse_dir), consumer, ",".join(map(str, days))]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO)


def split(days: Sequence[date], workers: int) -> list[list[date]]:
    return [list(days[i::workers]) for i in range(workers)]


def run_config(url: str, root: Path, mode: str, workers: int, days: Sequence[date]) -> dict[str, Any]:
    """All workers started at once; returns events rebuilt, wall seconds and each worker's own timing."""
    started = time.perf_counter()
    processes = []
    for i, share in enumerate(split(days, workers)):
        consumer = SHARED_CONSUMER if mode == "shared" else f"scaleout_w{i}"
        directory = root / ("shared" if mode == "shared" else consumer)
        processes.append(start_worker(url, directory, consumer, share))
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=1_800)
        if process.returncode != 0:
            raise RuntimeError(f"a worker failed (exit {process.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - started
    events = sum(r["events"] for r in results)
    return {"events": events, "wall_seconds": wall, "events_per_s": events / wall,
            "worker_seconds": [round(r["seconds"], 2) for r in results]}


# -- setup -------------------------------------------------------------------------------------------------


def prepare(url: str, root: Path, events: int) -> list[date]:
    """Demo events over DAYS whole UTC days, swept into the shared warehouse and every independent one."""
    from workdev_pipeline.demo_loader import load_demo
    from workdev_pipeline.ingest.ingestor import Ingestor
    from workdev_pipeline.ingest.local_store import LocalEventFiles

    migrate(url)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    report = load_demo(url, users=USERS, events=events, days=float(DAYS), seed=SEED,
                       now=midnight - timedelta(seconds=1))
    log(f"demo: {report.events_inserted:,} events in {report.seconds:.1f} s")
    days = [(midnight - timedelta(days=DAYS - i)).date() for i in range(DAYS)]
    consumers = [(SHARED_CONSUMER, root / "shared")] + [(f"scaleout_w{i}", root / f"scaleout_w{i}")
                                                        for i in range(max(WORKERS))]
    for consumer, directory in consumers:  # a rebuild rewrites what its consumer has swept
        outcome = Ingestor(url, LocalEventFiles(directory), consumer=consumer).sweep(run_id="bench-setup")
        log(f"swept {outcome.events_loaded:,} events for consumer {consumer} in {outcome.seconds:.1f} s")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return days


# -- main --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=400_000, help="demo events over the DAYS days")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per configuration (median)")
    parser.add_argument("--admin-url", default=None, help="superuser URL the throw-away database is made with")
    parser.add_argument("--child", nargs=4, metavar=("URL", "DIR", "CONSUMER", "DAYS"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        url, directory, consumer, days = args.child
        child(url, directory, consumer, days.split(","))
        return 0
    admin = resolve_admin_url(args.admin_url)
    root = Path(tempfile.mkdtemp(prefix="wd_bench_scaleout_"))
    try:
        with throwaway_database(admin) as url:
            days = prepare(url, root, args.events)
            runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
            for round_no in range(1, args.rounds + 1):
                modes = ("shared", "independent") if round_no % 2 else ("independent", "shared")  # no order bias
                for mode in modes:
                    for workers in WORKERS:
                        result = run_config(url, root, mode, workers, days)
                        runs.setdefault((mode, workers), []).append(result)
                        log(f"round {round_no} {mode:11} workers={workers}: {result['events']:,} events in "
                            f"{result['wall_seconds']:.1f} s = {result['events_per_s']:,.0f}/s "
                            f"(workers' own seconds {result['worker_seconds']})")
            medians: dict[tuple[str, int], float] = {}
            for (mode, workers), results in runs.items():
                median = statistics.median(r["events_per_s"] for r in results)
                medians[(mode, workers)] = median
                emit_figure({"figure": f"rebuild_{mode}_events_per_s", "workers": workers, "value": round(median),
                             "unit": "events/s", "events": results[0]["events"], "days": DAYS,
                             "runs_per_s": [round(r["events_per_s"]) for r in results],
                             "wall_seconds": [round(r["wall_seconds"], 2) for r in results],
                             "worker_seconds": [r["worker_seconds"] for r in results],
                             "speedup_vs_1": round(median / medians[(mode, 1)], 2), "cores": os.cpu_count()})
            r1 = medians[("independent", 1)]
            efficiency = medians[("independent", 2)] / (2 * r1)
            emit_figure({"figure": "projected_events_per_s_per_added_worker", "value": round(r1 * efficiency),
                         "unit": "events/s", "one_worker_events_per_s": round(r1),
                         "parallel_efficiency_at_2": round(efficiency, 2),
                         "shared_lock_gain_per_added_worker": round(
                             medians[("shared", 2)] - medians[("shared", 1)]),
                         "model": "throughput(n) = n * r1 * e for n workers on their own cores or machines, "
                                  "r1 = one worker's rate, e = measured efficiency at 2 workers on this 2-core "
                                  "machine; holds while the PostgreSQL server has spare CPU and I/O for one "
                                  "COPY stream per worker, and only for workers that do not share the "
                                  "consumer's advisory lock (today's rebuilds of one warehouse serialize)"})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
