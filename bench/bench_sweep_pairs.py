"""One sweep (or day rebuild) at a time, in fresh processes, alternated between git revisions: on a noisy machine, the
comparison that separates two codes a few per cent apart (``bench/README.md``, "Issue 14's table, 2026-12-03 late").

Loads a backlog of demo events into a throw-away database once. Then, pair after pair, for each revision in turn:
forgets every sweep (``bench_ingest.reset_ingestion``) and runs ``Ingestor.sweep()`` of that revision's code in a
fresh interpreter (its worktree first on ``sys.path``), which reports its seconds, its process CPU (user and system,
from the sweep's start), page faults, peak RSS and the CPU of each of its threads over the sweep (``/proc``, sampled
every 50 ms; the two ``event-read-ahead`` threads, extraction and transformation, together).
``--operation rebuild``: the backlog is loaded within yesterday (UTC), swept once by the first revision, and each
run is ``Ingestor.rebuild([that day])`` instead (nothing forgotten between runs: a rebuild rewrites the day whole).
Prints one JSON line per run, then per revision and figure the median and the pairs it won against the first::

    PYTHONPATH=. .venv/bin/python bench/bench_sweep_pairs.py --rev 17c8934 --rev HEAD --events 1000000 --pairs 8
    PYTHONPATH=. .venv/bin/python bench/bench_sweep_pairs.py --operation rebuild --rev HEAD~1 --rev HEAD --pairs 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

#: The environment as given, for the sweeps' processes: importing ``workdev_pipeline`` here sets variables (Arrow's
#: jemalloc options) that a revision's own import must decide for itself.
GIVEN_ENVIRONMENT = dict(os.environ)
SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent
#: The bench's consumer (``bench_ingest.CONSUMER``; not imported in the child: that would import this tree's code).
CONSUMER = "lake"
SAMPLE_SECONDS = 0.05
#: Figures compared between the revisions (lower is better for all of them).
FIGURES = ("seconds", "cpu_seconds", "system_seconds", "page_faults", "peak_rss_mib")


def log(message: str) -> None:
    print(f"[bench_sweep_pairs] {message}", file=sys.stderr, flush=True)


# -- the child: one sweep of one revision --------------------------------------------------------------------


class ThreadClock:
    """The CPU seconds each thread of this process spends while the clock runs, by thread name, sampled until stopped
    (a thread that ends keeps its last sample)."""

    def __init__(self) -> None:
        self._seconds: dict[int, tuple[str, float]] = {}
        self._before: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-thread-clock", daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> ThreadClock:
        self._sample()
        self._before = {tid: seconds for tid, (_, seconds) in self._seconds.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self) -> None:
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended meanwhile
                continue
            name = names.get(int(tid)) or self._seconds.get(int(tid), ("other", 0.0))[0]
            self._seconds[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / self._tick)

    def by_name(self) -> dict[str, float]:
        """CPU seconds per thread name, the numbered threads of a pool together (``validation_0`` → ``validation``)."""
        totals: dict[str, float] = {}
        for tid, (name, seconds) in self._seconds.items():
            key = name.rstrip("0123456789").rstrip("_") or name
            totals[key] = round(totals.get(key, 0.0) + seconds - self._before.get(tid, 0.0), 3)
        return totals


def child_main(args: argparse.Namespace) -> int:
    """One sweep (``--day``: one rebuild of that day) of the code first on ``sys.path`` (the revision's worktree, by
    ``PYTHONPATH``); prints its figures as one JSON line."""
    from workdev_pipeline.ingest.ingestor import Ingestor
    from workdev_pipeline.lake import EventLake, LakeLocation

    if not Path(sys.modules["workdev_pipeline"].__file__ or "").resolve().is_relative_to(Path(args.tree).resolve()):
        raise RuntimeError(f"the sweep imported workdev_pipeline from outside {args.tree}")
    ingestor = Ingestor(args.database_url, EventLake(LakeLocation.from_env(args.lake)), consumer=CONSUMER)
    before = resource.getrusage(resource.RUSAGE_SELF)
    with ThreadClock() as clock:
        outcome = (ingestor.rebuild([date.fromisoformat(args.day)], run_id="bench-pairs") if args.day
                   else ingestor.sweep(run_id="bench-pairs"))
    after = resource.getrusage(resource.RUSAGE_SELF)
    if outcome.status != "loaded":
        raise RuntimeError(f"the {outcome.kind} ended {outcome.status}: {outcome.error}")
    first = getattr(outcome, "first_event_read_at", None)  # (older revisions do not note it)
    print(json.dumps({
        "events": outcome.events_loaded, "seconds": round(outcome.seconds, 3),
        "cpu_seconds": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 3),
        "system_seconds": round(after.ru_stime - before.ru_stime, 3),
        "page_faults": after.ru_minflt - before.ru_minflt, "peak_rss_mib": round(after.ru_maxrss / 1024, 1),
        "first_event_seconds": round(first - (time.time() - outcome.seconds), 3) if first else None,
        "threads": clock.by_name()}), flush=True)
    return 0


# -- the parent: revisions, pairs, figures ---------------------------------------------------------------------


def _parent_imports() -> None:
    """The bench's helpers and this tree's code, for the parent only (a child imports its revision's)."""
    sys.path.insert(0, str(SCRIPT.parent))
    sys.path.insert(0, str(REPO))


def worktree(rev: str, parent: Path) -> Path:
    """A detached worktree of ``rev`` under ``parent`` (``.``: this tree as it is, uncommitted changes included)."""
    from bench_ingest import add_worktree

    if rev == ".":
        return REPO
    parent.mkdir(parents=True, exist_ok=True)
    tree = parent / str(len(list(parent.iterdir())))
    add_worktree(rev, tree)
    return tree


def one_run(url: str, tree: Path, lake: Path, day: date | None = None) -> dict[str, Any]:
    """Forget every sweep, then one sweep of ``tree``'s code in a fresh interpreter (``day``: a rebuild of that day
    instead, nothing forgotten); its figures."""
    from bench_ingest import reset_ingestion

    if day is None:
        reset_ingestion(url, [lake])
    env = {**GIVEN_ENVIRONMENT,
           "PYTHONPATH": os.pathsep.join([str(tree), *filter(None, [GIVEN_ENVIRONMENT.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, str(SCRIPT), "--child", "--tree", str(tree), "--database-url", url,
                           "--lake", str(lake), *(["--day", day.isoformat()] if day else [])], cwd=tree, env=env,
                          stdout=subprocess.PIPE, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"the {'rebuild' if day else 'sweep'} of {tree} exited with {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(revs: Sequence[str], runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per revision and figure: the median, and the pairs in which it was lower than the first revision's."""
    lines = []
    first = revs[0]
    for rev in revs:
        for figure in FIGURES:
            values = [run[figure] for run in runs[rev]]
            line: dict[str, Any] = {"figure": figure, "rev": rev, "median": round(statistics.median(values), 3),
                                    "runs": values}
            if rev != first:
                pairs = list(zip(runs[first], runs[rev], strict=True))
                line["pairs_won"] = f"{sum(b[figure] < a[figure] for a, b in pairs)} of {len(pairs)}"
                line["median_ratio_per_pair"] = round(statistics.median(b[figure] / a[figure] for a, b in pairs), 3)
            lines.append(line)
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", dest="revs", action="append", default=[],
                        help="a git revision to sweep with, '.' for this tree as it is (repeatable, at least two; "
                             "the first is the reference)")
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the backlog (default 1,000,000)")
    parser.add_argument("--days", type=float, default=7.0, help="days the backlog spans (default 7)")
    parser.add_argument("--pairs", type=int, default=8, help="runs of each revision, alternated (default 8)")
    parser.add_argument("--operation", choices=("sweep", "rebuild"), default="sweep",
                        help="what each run does: a sweep of the backlog (default), or a rebuild of the one day the "
                             "backlog is loaded within (yesterday, UTC)")
    parser.add_argument("--admin-url", help="superuser URL (default: $WORKDEV_BENCH_ADMIN_URL, else local)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--lake", help=argparse.SUPPRESS)
    parser.add_argument("--day", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.child and (len(args.revs) < 2 or args.events < 1 or args.pairs < 1):
        parser.error("give at least two --rev, and --events and --pairs of at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    _parent_imports()
    from bench_emit import resolve_admin_url, throwaway_database
    from bench_ingest import load_events, remove_worktree

    from workdev_pipeline.migrate import migrate

    log(f"load average at start: {[round(x, 2) for x in os.getloadavg()]} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory(prefix="wd_bench_pairs_") as work, \
            throwaway_database(resolve_admin_url(args.admin_url)) as url:
        trees = {rev: worktree(rev, Path(work) / "trees") for rev in args.revs}
        try:
            migrate(url)
            day = None
            if args.operation == "rebuild":  # one UTC day, swept once: a rebuild reads below the watermark
                day = (datetime.now(UTC) - timedelta(days=1)).date()
                now = datetime.combine(day, dtime(23, 59, 59), tzinfo=UTC)
                load_events(url, args.events, days=(now - datetime.combine(day, dtime.min, tzinfo=UTC)) / timedelta(
                    days=1), now=now)
                one_run(url, trees[args.revs[0]], Path(work) / "lake")
            else:
                load_events(url, args.events, days=args.days)
            runs: dict[str, list[dict[str, Any]]] = {rev: [] for rev in args.revs}
            for pair in range(1, args.pairs + 1):
                for rev in args.revs:
                    run = one_run(url, trees[rev], Path(work) / "lake", day)
                    if run["events"] != args.events:
                        raise RuntimeError(f"{rev} wrote {run['events']:,} of the {args.events:,} events")
                    runs[rev].append(run)
                    print(json.dumps({"pair": pair, "rev": rev, "load": round(os.getloadavg()[0], 2), **run}),
                          flush=True)
                    log(f"pair {pair}/{args.pairs} {rev}: {run['seconds']:.2f} s, CPU {run['cpu_seconds']:.2f} s, "
                        f"{run['page_faults']:,} faults, {run['peak_rss_mib']:,.0f} MiB")
            for line in summary(args.revs, runs):
                print(json.dumps(line), flush=True)
        finally:
            for tree in trees.values():
                if tree != REPO:
                    remove_worktree(tree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
