"""The Dagster UI in a real browser: headless Chromium (the Debian package, driven by Playwright) against
``dagster dev`` on a test database with a week of demo events, swept once. A data engineer's path: dismiss the
first-run dialog, see every asset group on the asset graph, open the lake table's partitions (every day of the demo
materialized), launch a 3-day backfill from the Materialize dialog, find those days rebuilt in the lake and each of
their checks Passed by the backfill's run; then read the global lineage (no two nodes alike) and the lake table's
overview (columns, row count, owner, storage, tags, freshness, the sensor that feeds it).

Screenshots go to ``$WORKDEV_TEST_ARTIFACTS`` (default ``test-artifacts/`` in the repository); with
``WORKDEV_UPDATE_SCREENSHOTS=1`` the asset graph is also saved as ``docs/asset-graph.png`` for the README.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dagster_dev_server import (
    DevServer,
    days_back,
    graphql,
    wait_for_backfill,
    wait_for_run,
)
from workdev_pipeline.assets.day_checks import LAKE_DAY_CHECKS
from workdev_pipeline.assets.keys import LAKE_EVENTS

pytest_plugins = ["tests.dagster_dev_server"]
#: slow; and on the same xdist worker as the GraphQL tests, which share its server (``--dist loadgroup``)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dagster_dev")]

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("WORKDEV_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
GROUPS = ("ingestion", "lake", "aggregations", "governance", "metrics")
LAKE_PATH = "/".join(LAKE_EVENTS.path)
UI_TIMEOUT = 60_000  # ms: a shared 2-core machine, the webserver answering GraphQL while runs start


def artifacts_dir() -> Path:
    path = Path(os.environ.get("WORKDEV_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def page() -> Iterator[object]:
    """A page of headless Chromium (no download: the machine's Chromium, never ``playwright install``)."""
    if not Path(CHROMIUM).exists():  # scripts/test.sh installs it where it can (root, apt)
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (or set WORKDEV_CHROMIUM)")
    from playwright import sync_api
    sync_api.expect.set_options(timeout=UI_TIMEOUT)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.set_default_timeout(UI_TIMEOUT)
        context.set_default_navigation_timeout(UI_TIMEOUT)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def shot(page, name: str) -> Path:
    path = artifacts_dir() / f"browser-{name}.png"
    page.screenshot(path=str(path))
    return path


def test_backfill_three_days_from_the_ui(dagster_dev: DevServer, page) -> None:
    from playwright.sync_api import expect

    server = dagster_dev
    days = days_back(4, 2)  # three whole days of demo traffic
    first, last = days[0].isoformat(), days[-1].isoformat()
    expected = server.postgres_day_counts(days)
    assert all(expected.values()), f"the demo left a day empty: {expected}"
    demo_days = len(server.postgres_days())
    try:
        # -- first run: the community dialog, dismissed --------------------------------------------------
        page.goto(f"{server.url}/asset-groups")
        community = page.get_by_role("dialog").filter(has_text="Join the Dagster community")
        expect(community).to_be_visible()
        shot(page, "01-community-dialog")
        community.get_by_role("button", name="Skip").click()
        expect(community).to_be_hidden()

        # -- the asset graph: every group, expanded ------------------------------------------------------
        for group in GROUPS:
            expect(page.get_by_role("button", name=re.compile(rf"\b{group}\b")).first).to_be_visible()
        page.mouse.click(900, 900, button="right")  # the graph's background: its context menu
        expand = page.get_by_role("menuitem", name=re.compile("Expand all groups"))
        expand.click()
        expect(page.get_by_text("lake_events", exact=True).first).to_be_visible()
        expect(page.get_by_text("enriched_events", exact=True).first).to_be_visible()
        for _ in range(2):  # the whole graph in view
            page.get_by_role("button", name="zoom_out").click()
        page.wait_for_timeout(1_500)  # the graph's zoom animation settles
        graph = shot(page, "02-asset-graph")
        if os.environ.get("WORKDEV_UPDATE_SCREENSHOTS") == "1":
            (REPO / "docs").mkdir(exist_ok=True)
            shutil.copyfile(graph, REPO / "docs" / "asset-graph.png")

        # -- the lake table and its partitions: three days lost ------------------------------------------
        dropped = server.drop_lake_days(days)
        page.goto(f"{server.url}/assets/{LAKE_PATH}")
        expect(page.get_by_text("a Delta Lake table at WORKDEV_LAKE_URI", exact=False).first).to_be_visible()
        page.get_by_role("tab", name="Partitions").click()
        expect(page.get_by_text(first, exact=True).first).to_be_visible()
        # the demo's first sweep materialized each of its days (a fresh demo's partitions read filled)
        expect(page.get_by_text(f"Materialized ({demo_days})", exact=True)).to_be_visible()
        expect(page.get_by_text("Missing (0)", exact=True)).to_be_visible()
        shot(page, "03-partitions")

        # -- Materialize -> a range of 3 days -> Launch backfill -------------------------------------------
        page.get_by_role("button", name=re.compile(r"\bMaterialize…")).first.click()
        launch = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
        are_you_sure = page.get_by_role("dialog").filter(has_text="Are you sure?")
        expect(launch.or_(are_you_sure)).to_be_visible()
        if are_you_sure.is_visible():  # only when the upstream asset was never materialized
            are_you_sure.get_by_role("button", name="Confirm").click()
        expect(launch).to_be_visible()
        selection = launch.get_by_role("textbox").first
        selection.fill(f"[{first}...{last}]")
        selection.press("Enter")
        expect(launch.get_by_text("3 partitions", exact=True)).to_be_visible()
        shot(page, "04-launch-backfill")
        launch.get_by_role("button", name="Launch backfill").click()
        toast = page.get_by_text(re.compile(r"Created backfill \w+"))
        expect(toast.first).to_be_visible()
        backfill_id = re.search(r"Created backfill (\w+)", toast.first.inner_text()).group(1)

        # -- the daemon runs it: success, shown on the backfill's page -----------------------------------
        backfill = wait_for_backfill(server.url, backfill_id, context=server.log_tail)
        assert backfill["status"] == "COMPLETED_SUCCESS", backfill
        assert sorted(backfill["partitionNames"]) == [d.isoformat() for d in days]
        assert backfill["runs"] and all(r["status"] == "SUCCESS" for r in backfill["runs"]), backfill["runs"]
        page.goto(f"{server.url}/runs/b/{backfill_id}")
        expect(page.get_by_text("100% completed").first).to_be_visible()
        expect(page.get_by_text(f"{first}...{last}").first).to_be_visible()
        shot(page, "05-backfill-succeeded")
        page.goto(f"{server.url}/assets/{LAKE_PATH}?view=partitions")  # the days show materialized
        expect(page.get_by_text(f"Materialized ({demo_days})", exact=True)).to_be_visible()
        shot(page, "06-partitions-materialized")
        (run,) = backfill["runs"]
        for n, check in enumerate(LAKE_DAY_CHECKS):  # each check's Partitions tab: the 3 days Passed
            expect_days_passed(page, server, check, days, days[n % len(days)].isoformat(), run["runId"])
        shot(page, "06b-check-partitions-passed")
    except Exception:
        shot(page, "failure")
        print(server.log_tail())
        raise

    # -- the lake holds those days again, every event of them, rebuilt in one commit -----------------------
    assert server.lake_day_counts(days) == expected
    assert server.lake.events().version() == dropped + 1
    for check in LAKE_DAY_CHECKS:  # every day's latest verdict of every check: the backfill's run, passed
        for day in days:
            (latest, *_) = graphql(server.url, CHECK_EXECUTIONS, {"path": list(LAKE_EVENTS.path), "check": check,
                                                                  "day": day.isoformat()})["assetCheckExecutions"]
            assert (latest["runId"], latest["status"]) == (run["runId"], "SUCCEEDED"), (check, day, latest)


CHECK_EXECUTIONS = """
query Executions($path: [String!]!, $check: String!, $day: String!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $check, partition: $day, limit: 5) { runId status } }
"""


def expect_days_passed(page, server: DevServer, check: str, days: list, shown: str, run_id: str) -> None:
    """On the check's Partitions tab, the range of ``days`` reads Passed for each day and nothing else; the day
    ``shown``, opened, reads Passed by the run ``run_id``."""
    from playwright.sync_api import expect

    page.goto(f"{server.url}/assets/{LAKE_PATH}?view=checks&checkDetail={check}")
    page.locator('button[role="tab"]').filter(has_text="Partitions").click()  # the check's (the asset's: a link)
    expect(page.get_by_text("Partitions Selected", exact=False)).to_be_visible()
    selection = page.get_by_placeholder(re.compile(r"^ex: "))  # the range of days shown ("[2026-11-26...]")
    selection.fill(f"[{days[0].isoformat()}...{days[-1].isoformat()}]")
    selection.press("Enter")
    expect(page.get_by_text(f"{len(days)} Partitions Selected", exact=True)).to_be_visible()
    expect(page.get_by_text(f"Passed ({len(days)})", exact=True)).to_be_visible()
    page.get_by_text(shown, exact=True).first.click()
    expect(page.get_by_text("Passed", exact=True)).to_be_visible()  # the day's status tag
    expect(page.get_by_text(run_id[:8], exact=True)).to_be_visible()


def test_materialize_all_on_the_lineage_never_selects_an_operator_job(dagster_dev: DevServer, page) -> None:
    """The global lineage's "Materialize all" counts and offers only the assets a sweep or backfill may run:
    retention, erasure and the dead-letter replay are shown in the graph but never selected (they are op jobs,
    launched from their own job pages with their typed config). The dialog is cancelled: nothing is launched."""
    from playwright.sync_api import expect

    from workdev_pipeline.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    materializable = [n.key for n in graph.asset_nodes if n.is_materializable]
    operator_assets = ("retention_runs", "gdpr_erasure_requests", "dead_letter_replay")
    server = dagster_dev
    community_dialog_seen(server)  # (a locator handler that clicked Skip once let the dialog hold a locator 60 s)
    try:
        page.goto(f"{server.url}/asset-groups")
        button = page.get_by_role("button", name=re.compile(r"Materialize all"))
        expect(button.first).to_have_text(re.compile(rf"Materialize all \({len(materializable)}\)"))
        shot(page, "10-lineage-materialize-all")
        button.first.click()
        launch = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
        expect(launch).to_contain_text(f"materialize {len(materializable)} assets")
        launch.get_by_text("Preview", exact=True).click()  # the assets the backfill would launch, one row each
        preview = page.get_by_role("dialog").filter(has_text="Backfill preview")
        for key in materializable:
            expect(preview).to_contain_text(" / ".join(key.path))
        shot(page, "11-materialize-all-preview")
        listed = preview.inner_text()
        assert not [name for name in operator_assets if name in listed], listed
        preview.get_by_role("button", name="OK").click()
        launch.get_by_role("button", name="Cancel").click()  # nothing launched
        expect(launch).to_be_hidden()
    except Exception:
        shot(page, "failure-materialize-all")
        print(server.log_tail())
        raise


RUN_CONFIG = """
query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { runConfigYaml tags { key value } } } }
"""


def test_an_erasure_launched_from_its_config_form_names_the_request_only(dagster_dev: DevServer, page) -> None:
    """The operator files the request (`erase --file-only`: the user id goes to the ledger, never to Dagster), then
    launches ``gdpr_erasure`` from its Launchpad with the request id and a reason: the run succeeds, its config
    (shown by the run's page) names the request, and the user id is nowhere in the run's config or tags."""
    from playwright.sync_api import expect

    from workdev_pipeline.governance.erasure import file_erasure_requests

    server = dagster_dev
    user = str(uuid.uuid4())
    (request_id,) = file_erasure_requests(server.database_url, [user])
    config = (f"ops:\n  erase_requests:\n    config:\n      request_ids: [{request_id}]\n"
              f"      reason: ticket GDPR-{request_id}\n")
    community_dialog_seen(server)  # (a locator handler that clicked Skip once let the dialog hold a locator 60 s)
    try:
        page.goto(f"{server.url}/locations/__repository__@{server.location_name}/jobs/gdpr_erasure/playground")
        editor = page.locator(".CodeMirror").first
        expect(editor).to_be_visible()
        editor.click()
        page.keyboard.press("Control+A")
        page.keyboard.press("Delete")
        page.keyboard.insert_text(config)  # no key events: the editor's auto-indent leaves the YAML as it is
        shot(page, "20-erasure-launchpad")
        page.get_by_role("button", name=re.compile(r"Launch run", re.IGNORECASE)).click()
        page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
        run_id = re.search(r"/runs/([0-9a-f-]{36})", page.url).group(1)
        assert wait_for_run(server.url, run_id, context=server.log_tail) == "SUCCESS"
        page.reload()
        page.get_by_role("button", name=re.compile(r"View tags and config")).click()
        shown = page.get_by_role("dialog").first
        expect(shown).to_contain_text("request_ids")  # the run's page shows the config it ran with
        expect(shown).to_contain_text(f"ticket GDPR-{request_id}")
        shot(page, "21-erasure-run-config")
        assert user not in shown.inner_text()
    except Exception:
        shot(page, "failure-erasure-launchpad")
        print(server.log_tail())
        raise
    run = graphql(server.url, RUN_CONFIG, {"id": run_id})["runOrError"]
    assert f"request_ids:\n      - {request_id}\n" in run["runConfigYaml"], run
    assert user not in run["runConfigYaml"] + json.dumps(run["tags"])
    assert {"key": "dagster/priority", "value": "5"} in run["tags"]  # an operator run: ahead of the metrics refresh


ASSET_KEYS = "query { assetNodes { assetKey { path } } }"
#: The asset graph's node labels (the key's last part, middle-truncated when long: "postgres_a…_hourly").
NODE_LABELS = '[class*="AssetNode_assetName"]'


def community_dialog_seen(server: DevServer) -> None:
    """The first-run dialog marked as seen, as its Skip button does (the backfill test above clicks it; a test run
    on its own would otherwise meet it)."""
    graphql(server.url, "mutation { setNuxSeen }")


def assets_labelled(label: str, names: list[str]) -> list[str]:
    """The asset names a rendered label can stand for (a truncated label keeps the name's head and tail)."""
    head, _, tail = label.partition("…")
    return [n for n in names if (n.startswith(head) and n.endswith(tail) if "…" in label else n == label)]


def test_the_global_lineage_shows_every_asset_under_a_label_of_its_own(dagster_dev: DevServer, page) -> None:
    """All groups expanded and the whole graph in view, there is one node per asset of the code location, and each
    label as rendered (truncated where long) reads as exactly one asset: none is ambiguous at a glance."""
    from playwright.sync_api import expect

    server = dagster_dev
    names = sorted(node["assetKey"]["path"][-1] for node in graphql(server.url, ASSET_KEYS)["assetNodes"])
    community_dialog_seen(server)
    try:
        page.goto(f"{server.url}/asset-groups")
        expect(page.get_by_role("button", name=re.compile(r"\blake\b")).first).to_be_visible()
        page.mouse.click(900, 900, button="right")  # the graph's background: its context menu
        toggle = page.get_by_role("menuitem", name=re.compile("(Expand|Collapse) all groups"))
        if "Expand" in toggle.inner_text():  # the groups stay expanded from the backfill test (kept by the browser)
            toggle.click()
        else:
            page.keyboard.press("Escape")
        labels = page.locator(NODE_LABELS)
        expect(labels.first).to_be_visible()
        for _ in range(4):  # zoomed out until every node is drawn (the graph draws the nodes in view only)
            try:
                expect(labels).to_have_count(len(names), timeout=5_000)
                break
            except AssertionError:
                page.get_by_role("button", name="zoom_out").click()
        expect(labels).to_have_count(len(names))
        shot(page, "07-global-lineage")
        rendered = labels.all_inner_texts()
    except Exception:
        shot(page, "failure-lineage")
        raise
    assert len(set(rendered)) == len(rendered) == len(names), rendered
    readings = {label: assets_labelled(label, names) for label in rendered}
    assert all(len(r) == 1 for r in readings.values()), readings
    assert sorted(r[0] for r in readings.values()) == names


def test_the_lake_tables_overview_shows_its_columns_row_count_owner_and_freshness(dagster_dev: DevServer,
                                                                                  page) -> None:
    """After the demo's first sweep (and whatever the tests before rebuilt): its overview lists the described columns
    (personal ones tagged), the table's row count as its latest materialization reported it, the owner, the table
    name, the tier and pii tags, its freshness policy passing and the ingest sensor among its automations."""
    from playwright.sync_api import expect

    server = dagster_dev
    rows = sum(n for _, n in server.lake.events().snapshot().query("SELECT event_type, count(*) FROM platform_events "
                                                                   "GROUP BY 1"))
    community_dialog_seen(server)
    try:
        page.goto(f"{server.url}/assets/{LAKE_PATH}")
        expect(page.get_by_text("Columns", exact=True).first).to_be_visible()
        for column, description in (("event_id", "The event's id (UUID)"), ("geo_location", "Country, region")):
            expect(page.get_by_text(column, exact=True).first).to_be_visible()
            expect(page.get_by_text(description, exact=False).first).to_be_visible()
        expect(page.get_by_text("pii: true", exact=True).first).to_be_visible()  # a personal column's tag
        expect(page.get_by_text("Row count", exact=True)).to_be_visible()
        expect(page.get_by_text(f"{rows:,}", exact=True).first).to_be_visible()
        expect(page.get_by_text("data-platform", exact=True).first).to_be_visible()  # the owner
        expect(page.get_by_text("lake.platform_events", exact=True).first).to_be_visible()  # storage: table name
        expect(page.get_by_text("tier: silver", exact=True).first).to_be_visible()
        expect(page.locator('a[href$="/sensors/ingest_sensor"]')).to_be_visible()  # automation: the sensor feeding it
        freshness = page.get_by_text("Freshness policy", exact=True).first.locator("..")
        expect(freshness.get_by_text("Passing", exact=True)).to_be_visible()  # the daemon's evaluation
        shot(page, "08-lake-overview")
    except Exception:
        shot(page, "failure-overview")
        raise
