"""The sweep's peers from PyPI: DuckDB's postgres scanner and dlt + connectorx, each copying the store's rows
(``platform_event_store``, every column, optionally one timestamp range) into Parquet files, in a process of its
own run by the python of a virtual environment this module creates (``bench/.peers-venv``), neither validating
nor enriching anything.

Imported by ``bench_ingest.py`` (the parent side: :func:`prepare_peers`, :func:`run_peer`); run as a script by
the peers' python (the child side: ``peers.py --peer duckdb|dlt --database-url URL --out DIR [--since ISO
--until ISO]``, one JSON line on stdout). The child side imports nothing of the project.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
import venv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VENV = Path(__file__).resolve().parent / ".peers-venv"
SCRIPT = Path(__file__).resolve()
TABLE = "platform_event_store"
#: The store's columns, named.
COLUMNS = ("event_id", "event_type", "event_category", "user_id", "entity_type", "entity_id", "event_data", "metadata",
           "source", "timestamp", "session_id", "created_at", "tx_id")
# pinned: the duckdb-extension-* wheels on PyPI exist for DuckDB 1.5.5 only (DuckDB cannot download extensions here)
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "duckdb": ("duckdb==1.5.5", "duckdb-extension-postgres-scanner==1.5.5"),
    "dlt": ("dlt[parquet,sql-database]==1.31.0", "connectorx==0.4.6", "psycopg2-binary==2.9.13"),
}
PEERS = tuple(REQUIREMENTS)
WHAT = {
    "duckdb": ("DuckDB 1.5.5 with its postgres_scanner extension (the duckdb-extension-postgres-scanner wheel, "
               "LOADed from its path): ATTACH (TYPE postgres, READ_ONLY), SET pg_use_ctid_scan = false, then COPY "
               "(SELECT <the written columns> FROM pg.public.platform_event_store [WHERE \"timestamp\" >= since AND < "
               "until]) TO "
               "'<dir>/events.parquet' (FORMAT parquet): DuckDB's defaults (binary COPY from PostgreSQL, snappy, "
               "all cores)"),
    "dlt": ("dlt 1.31.0: sql_table(table='platform_event_store', included_columns=<the written columns>, "
            "backend='connectorx', backend_kwargs="
            "{'return_type': 'arrow_stream'}) [query_adapter_callback adding the timestamp WHERE], "
            "pipeline.run(..., loader_file_format='parquet') into a filesystem destination (file://<dir>): "
            "extract, normalize, load, dlt's defaults (50,000-row chunks, pyarrow's Parquet writer)"),
}


# -- the parent side -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """A peer that installed: its name and the python that runs it."""

    name: str
    python: Path


@dataclass(frozen=True)
class PeerRun:
    """One peer process: its rows as it reports them, as the Parquet files it wrote hold them, its seconds
    (timed inside it, from before its connection to its last file: interpreter start-up and imports excluded, as
    for the sweep), its whole process's wall and CPU seconds and peak RSS."""

    rows: int
    parquet_rows: int
    seconds: float
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    parquet_bytes: int
    versions: dict[str, str]

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def _log(message: str) -> None:
    print(f"[peers] {message}", file=sys.stderr, flush=True)


def prepare_peers(names: Sequence[str], home: Path = VENV) -> tuple[list[Peer], dict[str, str]]:
    """The virtual environment at ``home`` with each peer's pinned requirements from PyPI (installed once, again
    when the pins change); returns the peers that installed and, for the others, why not."""
    python = home / "bin" / "python"
    if not python.exists():
        _log(f"creating the peers' virtual environment at {home}")
        venv.create(home, with_pip=True, clear=True)
    peers: list[Peer] = []
    failed: dict[str, str] = {}
    for name in names:
        wanted = REQUIREMENTS[name]
        stamp = home / f"installed-{name}.txt"
        digest = hashlib.sha256("\n".join(wanted).encode()).hexdigest()
        if not (stamp.exists() and stamp.read_text() == digest):
            _log(f"installing {name}: {' '.join(wanted)}")
            done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                                   *wanted], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  check=False)
            if done.returncode != 0:
                errors = [line for line in done.stdout.splitlines() if "ERROR" in line] or done.stdout.splitlines()
                failed[name] = f"pip install {' '.join(wanted)} failed: {' / '.join(errors[-3:])}"
                _log(failed[name])
                continue
            stamp.write_text(digest)
        peers.append(Peer(name, python))
    return peers, failed


def parquet_rows(directory: Path) -> tuple[int, int]:
    """Rows and bytes of the Parquet files under ``directory`` (from their footers)."""
    import pyarrow.parquet as pq

    files = sorted(directory.rglob("*.parquet"))
    return (sum(pq.ParquetFile(f).metadata.num_rows for f in files), sum(f.stat().st_size for f in files))


def as_url(conninfo: str) -> str:
    """A ``postgresql://`` URL for a libpq connection string or URL (what both peers' clients accept)."""
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(conninfo)
    user = quote(str(params.get("user", "postgres")), safe="")
    password = f":{quote(str(params['password']), safe='')}" if params.get("password") else ""
    host = params.get("host", "127.0.0.1")
    port = params.get("port", 5432)
    return f"postgresql://{user}{password}@{host}:{port}/{quote(str(params['dbname']), safe='')}"


def run_peer(peer: Peer, url: str, out: Path, *, since: str | None = None, until: str | None = None,
             timeout: float = 3600) -> PeerRun:
    """``peer`` copying the store's rows (those with ``since`` <= timestamp < ``until`` if given) into Parquet
    under ``out`` (emptied first, removed after), in a process of its own; checks that the files hold the rows it
    reports."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    args = [str(peer.python), str(SCRIPT), "--peer", peer.name, "--database-url", as_url(url), "--out", str(out)]
    if since is not None and until is not None:
        args += ["--since", since, "--until", until]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"RUNTIME__DLTHUB_TELEMETRY": "false", "RUNTIME__LOG_LEVEL": "ERROR"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, cwd=out, env=env, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"peer {peer.name} exited with {done.returncode}")
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    try:
        rows, size = parquet_rows(out / "parquet")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if rows != outcome["rows"]:
        raise RuntimeError(f"peer {peer.name} reports {outcome['rows']} rows, its Parquet files hold {rows}")
    return PeerRun(outcome["rows"], rows, outcome["seconds"], wall,
                   after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
                   outcome["vm_hwm_kib"] / 1024, size, outcome["versions"])


# -- the child side (the peers' python) ------------------------------------------------------------------


def vm_hwm_kib() -> int:
    """This process's peak resident set size (VmHWM), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def copy_duckdb(url: str, out: Path, since: str | None, until: str | None) -> tuple[int, float, dict[str, str]]:
    """DuckDB's postgres scanner: the rows into ``out/parquet/events.parquet``; (rows, seconds, versions)."""
    from importlib.metadata import version

    import duckdb
    import duckdb_extension_postgres_scanner as scanner

    extension = next(Path(scanner.__file__).parent.glob(f"extensions/v{duckdb.__version__}/*.duckdb_extension"))
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute(f"LOAD '{extension}'")
    # ctid scans on (the default) were found (an earlier session) never to finish a read of the partitioned store
    # of 1,000,000 events
    con.execute("SET pg_use_ctid_scan = false")
    started = time.perf_counter()
    con.execute(f"ATTACH '{url}' AS pg (TYPE postgres, READ_ONLY)")
    where = ""
    if since is not None:
        where = f" WHERE \"timestamp\" >= TIMESTAMPTZ '{since}' AND \"timestamp\" < TIMESTAMPTZ '{until}'"
    target = out / "parquet" / "events.parquet"
    target.parent.mkdir()
    columns = ", ".join(f'"{c}"' for c in COLUMNS)
    rows = con.execute(f"COPY (SELECT {columns} FROM pg.public.{TABLE}{where}) TO '{target}' (FORMAT parquet)"
                       ).fetchone()[0]
    seconds = time.perf_counter() - started
    con.close()
    return rows, seconds, {"duckdb": duckdb.__version__,
                           "duckdb-extension-postgres-scanner": version("duckdb-extension-postgres-scanner")}


def copy_dlt(url: str, out: Path, since: str | None, until: str | None) -> tuple[int, float, dict[str, str]]:
    """dlt's sql_table over connectorx: the rows into Parquet files under ``out/parquet`` (a filesystem
    destination; the pipeline's state under ``out/pipelines``); (rows, seconds, versions)."""
    from datetime import datetime
    from importlib.metadata import version

    import dlt
    from dlt.destinations import filesystem
    from dlt.sources.sql_database import sql_table

    credentials = "postgresql+psycopg2://" + url.split("://", 1)[1]  # SQLAlchemy's reflection; connectorx reads
    adapter = None
    if since is not None and until is not None:
        low, high = datetime.fromisoformat(since), datetime.fromisoformat(until)

        def adapter(query: Any, table: Any) -> Any:
            return query.where(table.c.timestamp >= low).where(table.c.timestamp < high)

    started = time.perf_counter()
    resource_ = sql_table(credentials=credentials, table=TABLE, included_columns=list(COLUMNS), backend="connectorx",
                          backend_kwargs={"return_type": "arrow_stream"}, query_adapter_callback=adapter)
    pipeline = dlt.pipeline(pipeline_name="bench_peer", pipelines_dir=str(out / "pipelines"),
                            destination=filesystem(bucket_url=(out / "parquet").as_uri()), dataset_name="events")
    info = pipeline.run(resource_, loader_file_format="parquet")
    seconds = time.perf_counter() - started
    info.raise_on_failed_jobs()
    rows = pipeline.last_trace.last_normalize_info.row_counts[TABLE]
    return rows, seconds, {"dlt": version("dlt"), "connectorx": version("connectorx"),
                           "pyarrow": version("pyarrow")}


def child_main(argv: Sequence[str] | None = None) -> int:
    """One peer's copy; prints its outcome as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", choices=PEERS, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--since")
    parser.add_argument("--until")
    args = parser.parse_args(argv)
    copy = copy_duckdb if args.peer == "duckdb" else copy_dlt
    rows, seconds, versions = copy(args.database_url, args.out, args.since, args.until)
    print(json.dumps({"peer": args.peer, "rows": rows, "seconds": seconds, "vm_hwm_kib": vm_hwm_kib(),
                      "versions": versions}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
