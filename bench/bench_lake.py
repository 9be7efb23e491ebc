"""Benchmark the lake's maintenance: compaction of a day written by 2,880 small commits, and whether z-ordering the
events by ``user_id`` pays for erasure.

* ``lake_small_commits_per_s``: the day's events (``--events``, default 1,000,000, ``--users`` users) appended as
  ``--commits`` (default 2,880: one every 30 s) separate ``EventLake.append`` commits, each of the events of its 30
  seconds -- what a day of sweeps leaves: one small file per commit;
* ``lake_compaction_seconds``: ``maintain`` (``workdev_pipeline.lake.maintenance``: compaction of the day, vacuum at
  0 h, checkpoint, log cleanup) in a fresh process, with ``files_before``/``files_after``, ``bytes_before``/
  ``bytes_after`` and the steps' seconds; ``lake_compaction_peak_rss_mib`` that process's peak RSS (VmHWM);
* z-order (``--skip-zorder`` leaves it out): the compacted table copied, the copy z-ordered by ``user_id``
  (``maintain(z_order=True)``, in a fresh process: ``lake_zorder_seconds``, ``lake_zorder_peak_rss_mib``), then on
  both tables: ``lake_user_read_seconds`` / ``lake_user_read_zorder_seconds`` (one user's rows of the day through the
  snapshot's pyarrow dataset with a filter, median over ``--rounds`` users), ``lake_hour_read_seconds`` /
  ``lake_hour_read_zorder_seconds`` (one hour of the day, what the hourly aggregation reads), and
  ``lake_user_delete_seconds`` / ``lake_user_delete_zorder_seconds`` (a Delta DELETE of one user's rows: the files it
  rewrites). The lake's erasure itself overwrites the days it touches, whatever their order.

Prints one JSON line per figure on stdout (see ``bench/README.md``); progress on stderr. The lake lives in a temp
directory, removed at the end (``--work-dir``: kept there, and the written day reused by the next run with the same
sizes). No database: maintenance runs without the writers' lock here. Usage::

    .venv/bin/python bench/bench_lake.py [--events 1000000] [--commits 2880] [--users 20000] [--rounds 7]
                                         [--skip-zorder] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from workdev_pipeline.enrichment import DEVICE_INFO_TYPE, GEO_LOCATION_TYPE
from workdev_pipeline.ingest.schema import warehouse_table
from workdev_pipeline.lake.events import EventLake
from workdev_pipeline.lake.location import LakeLocation
from workdev_pipeline.lake.maintenance import maintain

DAY = date(2026, 11, 2)
SEED = 42
TYPES = [("user.login", "user_action"), ("project.viewed", "engagement"), ("proposal.submitted", "transaction"),
         ("message.sent", "communication"), ("search.performed", "engagement")]
COUNTRIES = ["DE", "FR", "US", "BR", "IN", "GB", None]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit_figure(figure: dict[str, Any]) -> None:
    print(json.dumps(figure, default=str), flush=True)


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def make_lake(root: Path) -> EventLake:
    return EventLake(LakeLocation.from_env(str(root)))


# -- the day's events -------------------------------------------------------------------------------------------------

def commit_rows(rng: random.Random, users: list[str], commit: int, commits: int, rows: int) -> pa.Table:
    """The events of one 30-second sweep window (``commit`` of ``commits`` over the day), in the warehouse schema."""
    midnight = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    window = 86_400 / commits
    stamps = sorted(midnight + timedelta(seconds=(commit + rng.random()) * window) for _ in range(rows))
    kinds = [TYPES[rng.randrange(len(TYPES))] for _ in range(rows)]
    batch = pa.RecordBatch.from_pydict({
        "event_id": [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(rows)],
        "event_type": [k[0] for k in kinds],
        "event_category": [k[1] for k in kinds],
        "user_id": rng.choices(users, k=rows),
        "user_role": rng.choices(["developer", "client", "admin"], weights=[70, 28, 2], k=rows),
        "user_tenure_days": [rng.randrange(2_000) for _ in range(rows)],
        "entity_type": ["project"] * rows,
        "entity_id": [f"p-{rng.randrange(50_000)}" for _ in range(rows)],
        "source": rng.choices(["web", "mobile", "api"], k=rows),
        "timestamp": pa.array(stamps, pa.timestamp("us", tz="UTC")),
        "session_id": [f"s-{rng.randrange(200_000)}" for _ in range(rows)],
        "event_data": [f'{{"project_id": "p-{rng.randrange(50_000)}", "duration_ms": {rng.randrange(90_000)}}}'
                       for _ in range(rows)],
        "metadata": [f'{{"ip_address": "203.0.{rng.randrange(256)}.{rng.randrange(256)}"}}' for _ in range(rows)],
    })
    country = pa.array(rng.choices(COUNTRIES, k=rows), pa.string())
    nothing = pa.nulls(rows, pa.string())
    geo = pa.StructArray.from_arrays([country, nothing, nothing], fields=list(GEO_LOCATION_TYPE))
    device = pa.StructArray.from_arrays([pa.array(rng.choices(["desktop", "mobile"], k=rows)),
                                         pa.array(rng.choices(["Chrome", "Firefox", "Safari"], k=rows)),
                                         pa.array(rng.choices(["Linux", "Windows", "macOS", "iOS"], k=rows))],
                                        fields=list(DEVICE_INFO_TYPE))
    ingested = pa.array([s + timedelta(seconds=30) for s in stamps], pa.timestamp("us", tz="UTC"))
    return warehouse_table(batch, geo, device, ingested)


def write_small_commits(lake: EventLake, events: int, commits: int, users: list[str]) -> float:
    rng = random.Random(SEED)
    started = time.perf_counter()
    for commit in range(commits):
        rows = events * (commit + 1) // commits - events * commit // commits
        lake.append([commit_rows(rng, users, commit, commits, rows)], app_id="bench", version=commit + 1)
        if (commit + 1) % 240 == 0:
            log(f"  {commit + 1:,}/{commits:,} commits ({time.perf_counter() - started:.0f} s)")
    return time.perf_counter() - started


# -- children: one maintenance run in a process of its own -------------------------------------------------------------

def child(kind: str, root: str) -> None:
    lake = make_lake(Path(root))
    if kind == "compact":
        result = maintain(lake, vacuum_retention_hours=0)
    else:  # zorder: the compacted day rewritten z-ordered by user_id
        result = maintain(lake, vacuum_retention_hours=0, min_small_files=1, z_order=True)
    skip = ("days_compacted", "day_files")
    print(json.dumps({"result": {k: v for k, v in vars(result).items() if k not in skip},
                      "peak_rss_mib": round(peak_rss_mib(), 1)}, default=str), flush=True)


def run_child(kind: str, root: Path) -> dict[str, Any]:
    started = time.perf_counter()
    process = subprocess.run([sys.executable, __file__, "--child", kind, str(root)], capture_output=True, text=True,
                             check=False)
    if process.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{process.stderr}")
    outcome = json.loads(process.stdout.strip().splitlines()[-1])
    outcome["process_seconds"] = round(time.perf_counter() - started, 2)
    return outcome


# -- reads ------------------------------------------------------------------------------------------------------------

def median_seconds(action, arguments: list) -> tuple[float, list[float], Any]:
    runs, last = [], None
    for argument in arguments:
        started = time.perf_counter()
        last = action(argument)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), runs, last


def user_rows(lake: EventLake, user: str) -> int:
    dataset = lake.snapshot().dataset(days=[DAY])
    return dataset.to_table(filter=pc.field("user_id") == user).num_rows


def hour_rows(lake: EventLake, hour: int) -> int:
    start = datetime(DAY.year, DAY.month, DAY.day, hour, tzinfo=UTC)
    dataset = lake.snapshot().dataset(days=[DAY])
    stamp = pa.timestamp("us", tz="UTC")
    expression = ((pc.field("timestamp") >= pa.scalar(start, stamp))
                  & (pc.field("timestamp") < pa.scalar(start + timedelta(hours=1), stamp)))
    return dataset.to_table(filter=expression).num_rows


def user_delete(lake: EventLake, user: str) -> dict[str, Any]:
    table = lake.table()
    assert table is not None
    started = time.perf_counter()
    metrics = table.delete(f"user_id = '{user}'")
    return {"seconds": time.perf_counter() - started, "rows_deleted": metrics.get("num_deleted_rows"),
            "files_removed": metrics.get("num_removed_files"), "files_added": metrics.get("num_added_files"),
            "rows_copied": metrics.get("num_copied_rows")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--commits", type=int, default=2_880)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7, help="users (and hours) read per table")
    parser.add_argument("--skip-zorder", action="store_true")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the written day here (reused by the next run with the same directory)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="wd_bench_lake_"))
    try:
        rng = random.Random(SEED + 1)
        users = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(args.users)]
        base = {"events": args.events, "commits": args.commits, "users": args.users}
        written = work / f"written-{args.events}-{args.commits}-{args.users}"
        if not written.is_dir():
            lake = make_lake(written)
            log(f"writing {args.events:,} events of {DAY} as {args.commits:,} commits into {lake.uri}")
            seconds = write_small_commits(lake, args.events, args.commits, users)
            emit_figure({"figure": "lake_small_commits_per_s", "value": round(args.commits / seconds, 1),
                         "unit": "commits/s", "seconds": round(seconds, 2), **base})
        for copy in ("lake", "zorder"):
            shutil.rmtree(work / copy, ignore_errors=True)
        shutil.copytree(written, work / "lake")

        log("compacting (maintain) in a fresh process")
        compacted = run_child("compact", work / "lake")
        result = compacted["result"]
        figure = {"figure": "lake_compaction_seconds", "value": round(result["seconds"], 2), "unit": "s",
                  "files_before": result["files_before"], "files_after": result["files_after"],
                  "bytes_before": result["bytes_before"], "bytes_after": result["bytes_after"],
                  "files_vacuumed": result["files_vacuumed"], "log_files_before": result["log_files_before"],
                  "log_files_after": result["log_files_after"],
                  "step_seconds": {k: round(v, 2) for k, v in result["step_seconds"].items()},
                  "peak_rss_mib": compacted["peak_rss_mib"], "process_seconds": compacted["process_seconds"], **base}
        emit_figure(figure)
        emit_figure({"figure": "lake_compaction_peak_rss_mib", "value": compacted["peak_rss_mib"], "unit": "MiB",
                     "bar": 1024, "meets_bar": compacted["peak_rss_mib"] <= 1024, **base})
        if args.skip_zorder:
            return

        shutil.copytree(work / "lake", work / "zorder")
        log("z-ordering a copy by user_id in a fresh process")
        zordered = run_child("zorder", work / "zorder")
        zresult = zordered["result"]
        emit_figure({"figure": "lake_zorder_seconds", "value": round(zresult["step_seconds"].get("compact", 0.0), 2),
                     "unit": "s", "files_after": zresult["files_after"], "bytes_after": zresult["bytes_after"],
                     "peak_rss_mib": zordered["peak_rss_mib"], **base})
        emit_figure({"figure": "lake_zorder_peak_rss_mib", "value": zordered["peak_rss_mib"], "unit": "MiB", **base})

        plain, zorder = make_lake(work / "lake"), make_lake(work / "zorder")
        readers = random.Random(SEED + 2).sample(users, args.rounds)
        hours = random.Random(SEED + 3).sample(range(24), min(args.rounds, 24))
        for name, lake_ in (("", plain), ("_zorder", zorder)):
            user_rows(lake_, readers[0])  # warm the page cache and the log
            value, runs, rows = median_seconds(lambda u, lk=lake_: user_rows(lk, u), readers)
            emit_figure({"figure": f"lake_user_read{name}_seconds", "value": round(value, 4), "unit": "s",
                         "runs_seconds": [round(r, 4) for r in runs], "rows_last_user": rows, **base})
            value, runs, rows = median_seconds(lambda h, lk=lake_: hour_rows(lk, h), hours)
            emit_figure({"figure": f"lake_hour_read{name}_seconds", "value": round(value, 4), "unit": "s",
                         "runs_seconds": [round(r, 4) for r in runs], "rows_last_hour": rows, **base})
        for name, lake_ in (("", plain), ("_zorder", zorder)):
            deleted = user_delete(lake_, readers[0])
            emit_figure({"figure": f"lake_user_delete{name}_seconds", "value": round(deleted.pop("seconds"), 3),
                         "unit": "s", **deleted, **base})
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
