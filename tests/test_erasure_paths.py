"""How an erasure reaches its rows (not how fast): the store's rows it rewrites found through the partitions' event
key, and the lake's enrichment loaded while PostgreSQL's part runs. Plans and process state, never timings."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import psycopg

from tests.conftest import REPO
from tests.ingest_helpers import demo
from workdev_pipeline.events import encode_json
from workdev_pipeline.lake import EventLake, LakeLocation
from workdev_pipeline.sql_files import query


def plan_nodes(plan: dict) -> list[dict]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


def test_rewriting_erased_events_probes_the_event_key_instead_of_scanning_the_store(db: str,
                                                                                  conn: psycopg.Connection) -> None:
    # as the store is after a bulk load, before autovacuum has analysed it (a month's partition can be so for long):
    # no statistics, with which the planner prefers one scan of every event to a probe per event id
    for (partition,) in conn.execute("SELECT inhrelid::regclass::text FROM pg_inherits "
                                     "WHERE inhparent = 'platform_event_store'::regclass").fetchall():
        conn.execute(f"ALTER TABLE {partition} SET (autovacuum_enabled = false)")
    demo(db, 20_000, users=200, days=3.0)
    rows = conn.execute('SELECT event_id, "timestamp", event_data, metadata FROM platform_event_store '
                        "WHERE user_id IS NOT NULL ORDER BY event_id LIMIT 40").fetchall()
    params = {"event_ids": [r[0] for r in rows], "timestamps": [r[1] for r in rows],
              "event_data": [encode_json(r[2]) for r in rows], "metadata": [encode_json(r[3]) for r in rows],
              "anonymise": [True] * len(rows)}
    with conn.transaction(force_rollback=True):
        (plan,) = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query("governance/rewrite_events"),
                               params).fetchone()[0]
    scans = [n for n in plan_nodes(plan["Plan"]) if n["Node Type"] != "ModifyTable"
             and n.get("Relation Name", "").startswith("platform_event_store")]
    # every row a scan of the store looked at (returned, or filtered out), in every loop: only the rewritten ones
    examined = sum((n["Actual Rows"] + n.get("Rows Removed by Filter", 0) + n.get("Rows Removed by Index Recheck", 0))
                   * n["Actual Loops"] for n in scans)
    assert examined == len(rows), [(n["Node Type"], n["Relation Name"], n["Actual Rows"]) for n in scans]


def test_preparing_an_erasure_loads_the_enrichment_before_the_refresh_needs_it(db: str, tmp_path) -> None:
    """In a fresh process (a run worker's): once :meth:`prepare` has run, the geo table (from its cache or built from
    the bundled data) and the user-agent rules are loaded, so the refresh's first transform does not wait for them."""
    EventLake(LakeLocation.from_env(str(tmp_path / "lake"))).ensure()
    script = textwrap.dedent(f"""
        import json, uuid
        from workdev_pipeline.enrichment import device, geo
        from workdev_pipeline.governance.warehouse import LakeGovernedWarehouse
        from workdev_pipeline.ingest.ingestor import Ingestor
        from workdev_pipeline.lake import EventLake, LakeLocation

        before = [geo._bundled_table.cache_info().currsize, device._parser.cache_info().currsize]
        lake = EventLake(LakeLocation.from_env({str(tmp_path / "lake")!r}))
        warehouse = LakeGovernedWarehouse(Ingestor({db!r}, lake))
        warehouse.prepare(str(uuid.uuid4())).user_rows()
        warehouse._files_read_ahead()
        print(json.dumps({{"before": before,
                          "after": [geo._bundled_table.cache_info().currsize, device._parser.cache_info().currsize]}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True,
                          timeout=120)
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state == {"before": [0, 0], "after": [1, 1]}
