"""Benchmark the hourly volume check's work: ``AggregationLake.type_counts`` (the checked hours and the same hours
of the 8 previous weeks, DuckDB over the lake's hourly files) plus ``assess_hour`` for each hour, on a year of
hourly aggregations of every catalog type.

No database: a lake under ``$TMPDIR`` (removed at the end). ``--months`` months of hourly rows (every catalog type in
every hour) are written one commit a month, as compaction leaves them. Figures, medians of ``--rounds``:

* ``volume_check_1_hour_seconds``: one hour (what the hourly automation's run adds);
* ``volume_check_24_hours_seconds``, ``volume_check_168_hours_seconds``: a day's and a week's hours in one run (a
  backfill or a day's rebuild after a late sweep).

Prints one JSON line per figure on stdout. Usage::

    .venv/bin/python bench/bench_volume_checks.py [--months 12] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_emit import emit_figure

from workdev_pipeline.aggregations.anomalies import assess_hour, history_hours
from workdev_pipeline.aggregations.periods import HOURLY
from workdev_pipeline.catalog import EVENT_TYPES
from workdev_pipeline.lake.aggregations import AGGREGATION_SCHEMA, AggregationLake
from workdev_pipeline.lake.location import LakeLocation

HOUR = timedelta(hours=1)
MONTH_HOURS = 730


def write_year(lake: AggregationLake, start: datetime, months: int) -> int:
    """``months`` months of hourly rows, one commit a month; the rows written."""
    computed, written = datetime.now(UTC), 0
    for month in range(months):
        first = start + month * MONTH_HOURS * HOUR
        rows = [{"aggregation_type": "hourly", "period_start": h, "period_end": h + HOUR, "event_type": t.name,
                 "event_category": t.category.name, "total_events": 50 + i, "unique_users": 40,
                 "unique_sessions": 40, "amount_sum": None, "computed_at": computed, "amount_overflow": False}
                for h in HOURLY.periods(first, first + MONTH_HOURS * HOUR) for i, t in enumerate(EVENT_TYPES)]
        lake.replace_periods(HOURLY, first, first + MONTH_HOURS * HOUR,
                             pa.Table.from_pylist(rows, schema=AGGREGATION_SCHEMA))
        written += len(rows)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wd_bench_volume_"))
    try:
        lake = AggregationLake(LakeLocation.from_env(str(work / "lake")))
        start = datetime(2025, 1, 6, tzinfo=UTC)
        rows = write_year(lake, start, args.months)
        last = start + args.months * MONTH_HOURS * HOUR - HOUR
        for n in (1, 24, 168):
            hours = [last - i * HOUR for i in range(n)]
            runs = []
            for _ in range(args.rounds):
                began = time.perf_counter()
                counts = lake.type_counts(HOURLY, [p for h in hours for p in (*history_hours(h), h)])
                for hour in hours:
                    assess_hour(hour, counts)
                runs.append(time.perf_counter() - began)
            emit_figure({"figure": f"volume_check_{n}_{'hour' if n == 1 else 'hours'}_seconds",
                         "value": round(statistics.median(runs), 3), "unit": "s", "hours": n, "table_rows": rows,
                         "types": len(EVENT_TYPES), "runs_seconds": [round(r, 3) for r in runs]})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
