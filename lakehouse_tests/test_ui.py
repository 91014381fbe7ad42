"""The Dagster UI as people use it, in headless Chromium against `dagster dev` (see ui_fixtures.py):
the lineage of every layer, a partition-range backfill launched from the Materialize dialog (one run
for the whole range), an asset's partitions, a failing check, the Kafka sensor switched on with events
produced to a development broker (a streaming run lands them in Bronze), and the landing-files sensor
switched on (one run per landing file).

Screenshots of each go to LAKEHOUSE_SCREENSHOTS; regenerate the README's with
    LAKEHOUSE_SCREENSHOTS=docs/screenshots python -m pytest lakehouse_tests/test_ui.py
"""

import re
import time
import urllib.parse

import pytest

from lakehouse_tests.ui_fixtures import (  # noqa: F401 (fixtures)
    UI_DAYS,
    UI_START,
    browser,
    dagster_dev,
    new_context,
    page,
    screenshots,
    sharp_page,
)

pytest.importorskip("playwright.sync_api", reason="Playwright is in the dev extra: pip install -e '.[dev]'")
from playwright.sync_api import expect

expect.set_options(timeout=60_000)  # a shared two-core machine: the UI may take a while to answer

BATCH_ASSETS = [
    "bronze/crm_customers",
    "bronze/orders",
    "bronze/fx_rates",
    "silver/customers",
    "silver/orders",
    "silver/fx_rates",
]
FIRST_DAY, LAST_DAY = UI_START.isoformat(), "2026-11-02"
BACKFILL_TIMEOUT = 300  # seconds: one run spawns a process, starts Sail, lands two days, runs the checks
TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
LAYERS = ("bronze", "silver", "gold")
REPOSITORY = {"repositoryLocationName": "lakehouse", "repositoryName": "__repository__"}

assert UI_DAYS == 2  # FIRST_DAY...LAST_DAY is the generated window


def selection_url_of(query: str) -> str:
    """The global lineage page filtered by an asset selection, as the UI writes it when one is typed."""
    return "/asset-groups~" + urllib.parse.quote(query, safe="") + "/"


def selection_url(keys: list[str]) -> str:
    return selection_url_of(" or ".join(f'key:"{k}"' for k in keys))


def wait_for(what: str, probe, timeout: float, interval: float = 2.0):
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def bounding_box(elements, margin: float = 24) -> dict:
    """The smallest page rectangle around every visible element of a locator, plus a margin."""
    boxes = [b for b in (elements.nth(i).bounding_box() for i in range(elements.count())) if b]
    left, top = min(b["x"] for b in boxes) - margin, min(b["y"] for b in boxes) - margin
    right = max(b["x"] + b["width"] for b in boxes) + margin
    bottom = max(b["y"] + b["height"] for b in boxes) + margin
    return {"x": max(left, 0), "y": max(top, 0), "width": right - max(left, 0), "height": bottom - max(top, 0)}


BACKFILL_QUERY = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
    id status numPartitions isAssetBackfill
    runs(limit: 50) { runId status tags { key value } assetMaterializations { assetKey { path } partition } }
} } }"""


@pytest.fixture(scope="module")
def backfill(browser, dagster_dev, screenshots) -> dict:  # noqa: F811
    """Select the six batch assets, Materialize all, type the range, Launch backfill; wait until it ends."""
    context = new_context(browser, dagster_dev)
    ui = context.new_page()
    try:
        ui.goto(selection_url(BATCH_ASSETS))
        ui.get_by_role("button", name="Materialize all").click()
        dialog = ui.get_by_role("dialog")
        expect(dialog.get_by_text("Launch runs to materialize 6 assets")).to_be_visible()
        partitions = dialog.get_by_placeholder("No matching partitions")
        partitions.fill(f"[{FIRST_DAY}...{LAST_DAY}]")
        partitions.press("Enter")
        expect(dialog.get_by_text("2 partitions", exact=True)).to_be_visible()
        dialog.get_by_role("button", name="Launch backfill").click()
        toast = ui.get_by_text(re.compile(r"Created backfill \w+"))
        expect(toast).to_be_visible()
        backfill_id = re.search(r"Created backfill (\w+)", toast.inner_text()).group(1)

        def finished():
            found = dagster_dev.graphql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
            return found if found.get("status") in TERMINAL_BACKFILL else None

        try:
            result = wait_for(f"backfill {backfill_id} to finish", finished, BACKFILL_TIMEOUT)
        except AssertionError as timeout:
            raise AssertionError(f"{timeout}\n--- dagster dev log ---\n{dagster_dev.log_tail()}") from None
        ui.goto(f"/runs/b/{backfill_id}")
        expect(ui.get_by_text("100% completed")).to_have_count(len(BATCH_ASSETS), timeout=60_000)
        ui.screenshot(path=screenshots / "backfill.png")
        return result
    finally:
        context.close()


def test_asset_graph_shows_every_layer(sharp_page, dagster_dev, screenshots):  # noqa: F811
    ui = sharp_page
    assets = dagster_dev.asset_groups()
    layers = {key: group for key, group in assets.items() if group in LAYERS}
    assert {key.split("/")[0] for key in layers} == set(LAYERS)
    assert all(key.split("/")[0] == group for key, group in layers.items())  # group = layer = key prefix
    assert sum(1 for k in layers if k.startswith("gold/")) >= 6  # the dbt marts
    ui.goto(selection_url_of(" or ".join(f"group:{g}" for g in LAYERS)))
    expect(ui.get_by_role("button", name="Materialize all")).to_be_visible()
    graph = ui.locator("foreignObject")  # one per group box and asset node
    for group in LAYERS:
        expect(graph.get_by_text(group, exact=True).first).to_be_visible()
    # every asset is a node; small zoom levels shorten long names, so count the nodes too
    expect(graph.filter(has=ui.locator("div[style*='--minimal-bg'], [class*=AssetNode]"))).to_have_count(len(layers))
    ui.wait_for_timeout(2000)  # the graph zooms to fit once its layout is done
    ui.screenshot(path=screenshots / "lineage.png", clip=bounding_box(graph))

    # The catalog names every asset in full (the graph may shorten names), each linking to its page
    ui.set_viewport_size({"width": 1600, "height": 2400})
    ui.goto("/assets?view=flat")
    for key in assets:
        expect(ui.locator(f'a[href="/assets/{key}"]').first).to_contain_text(key.replace("/", " / "))


def test_backfill_of_a_range_from_the_ui_is_one_successful_run(backfill):
    assert backfill["isAssetBackfill"] and backfill["numPartitions"] == 2
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    [run] = backfill["runs"]  # single-run backfill policy: the whole range in one run
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run["status"] == "SUCCESS"
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        FIRST_DAY,
        LAST_DAY,
    )
    materialized = {("/".join(m["assetKey"]["path"]), m["partition"]) for m in run["assetMaterializations"]}
    assert materialized == {(a, d) for a in BATCH_ASSETS for d in (FIRST_DAY, LAST_DAY)}


def test_asset_partitions_view_shows_the_backfilled_days(page, backfill, screenshots):  # noqa: F811
    page.goto("/assets/silver/orders?view=partitions")
    expect(page.get_by_text("Materialized (2)")).to_be_visible()
    window = page.get_by_placeholder(re.compile("^ex: "))
    window.fill("[2026-10-20...2026-11-08]")
    window.press("Enter")
    expect(page.get_by_text("20 Partitions Selected")).to_be_visible()
    expect(page.get_by_text("Missing (18)")).to_be_visible()
    page.get_by_text(LAST_DAY, exact=True).first.click()
    # the partition's latest materialisation and its metadata: rows, Delta version
    for entry in ("dagster/row_count", "delta/version"):
        expect(page.get_by_text(entry, exact=True)).to_be_visible()
    page.screenshot(path=screenshots / "partitions.png")


def test_failing_check_is_shown_on_the_asset(page, dagster_dev, backfill, screenshots):  # noqa: F811
    # The generator adds an unknown column to the orders files: schema_drift fails with WARN.
    data = dagster_dev.graphql("""{ assetNodeOrError(assetKey: {path: ["bronze", "orders"]}) { ... on AssetNode {
        assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization {
            status evaluation { severity description } } } } } } } }""")
    checks = {
        c["name"]: c["executionForLatestMaterialization"]
        for c in data["assetNodeOrError"]["assetChecksOrError"]["checks"]
    }
    assert checks["schema_drift"]["status"] == "FAILED"
    assert checks["schema_drift"]["evaluation"]["severity"] == "WARN"
    assert checks["contract"]["status"] == "SUCCEEDED"

    page.goto("/assets/bronze/orders?view=checks&checkDetail=schema_drift")
    expect(page.get_by_text("non-blocking", exact=True)).to_be_visible()
    expect(page.get_by_text("unknown columns (kept in _rescued_data)")).to_be_visible()
    expect(page.get_by_text("Failed", exact=True).first).to_be_visible()
    page.screenshot(path=screenshots / "failing_check.png")


SENSOR_QUERY = """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { ... on Sensor {
    sensorState { status ticks(limit: 1) { status runIds skipReason error { message } } } } } }"""


def sensor_state(server, name: str) -> dict:
    data = server.graphql(SENSOR_QUERY, {"selector": {**REPOSITORY, "sensorName": name}})
    return data["sensorOrError"]["sensorState"]


RUNS_QUERY = """query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) { ... on Runs {
    results { runId status tags { key value } } } } }"""
KAFKA_EVENTS = 60


def switch_on(page, sensor: str, server) -> None:  # noqa: F811
    """Open the sensor's page, flip its Running switch on, wait until the instance has it RUNNING."""
    page.goto(f"/locations/lakehouse/sensors/{sensor}")
    running = page.get_by_role("checkbox")  # the "Running" switch: a styled checkbox inside its label
    expect(running).not_to_be_checked()
    page.locator("label").filter(has=running).click()
    expect(running).to_be_checked()
    # the switch flips at once; the instance follows when the mutation lands
    wait_for(f"{sensor} to be RUNNING", lambda: sensor_state(server, sensor)["status"] == "RUNNING", 60)


def test_kafka_sensor_switched_on_in_the_ui_lands_produced_events(page, dagster_dev, backfill):  # noqa: F811
    """The development flow of the README: `lakehouse broker` on 127.0.0.1:9092 (the Kafka resource's default
    when LAKEHOUSE_KAFKA_BOOTSTRAP is unset, so the sensor starts stopped), events produced, the sensor
    turned on in the UI, a streaming run lands every event in Bronze."""
    from deltalake import DeltaTable

    from lakehouse.dev.broker import Broker, port_open
    from lakehouse.dev.producer import messages, publish
    from lakehouse.lib.kafka import DEFAULT_BOOTSTRAP, KafkaResource

    port = int(DEFAULT_BOOTSTRAP.rsplit(":", 1)[1])
    if port_open(port):
        pytest.skip(f"{DEFAULT_BOOTSTRAP} is taken: this test runs the development broker there")
    assert sensor_state(dagster_dev, "kafka_clickstream")["status"] == "STOPPED"
    with Broker(port=port, log_file=dagster_dev.lakehouse_home / "tansu.log"):
        kafka = KafkaResource(bootstrap_servers=DEFAULT_BOOTSTRAP)
        kafka.create_topic("clickstream", 3)
        sent = publish(kafka.producer(), "clickstream", messages("clickstream", UI_START, 1, 0.05, 5), KAFKA_EVENTS)
        assert sent["events"] == KAFKA_EVENTS

        switch_on(page, "kafka_clickstream", dagster_dev)

        def landed():
            runs = dagster_dev.graphql(RUNS_QUERY, {"tags": [{"key": "kafka/topic", "value": "clickstream"}]})
            done = [r for r in runs["runsOrError"]["results"] if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
            return done[0] if done else None

        run = wait_for("a streaming run of the clickstream topic", landed, BACKFILL_TIMEOUT)
        assert run["status"] == "SUCCESS", run
        bronze = DeltaTable(str(dagster_dev.lakehouse_home / "lake" / "bronze" / "clickstream_events"))
        rows = bronze.to_pyarrow_table(columns=["kafka_topic", "kafka_offset"])
        assert rows.num_rows == KAFKA_EVENTS  # every produced event, once
        assert set(rows.column("kafka_topic").to_pylist()) == {"clickstream"}


def test_a_sensor_switched_on_in_the_ui_runs(page, dagster_dev, backfill):  # noqa: F811
    # Last: its six runs would otherwise queue ahead of the backfill's and the streaming run.
    assert sensor_state(dagster_dev, "landing_files")["status"] == "STOPPED"
    switch_on(page, "landing_files", dagster_dev)

    # The daemon ticks it: one Bronze run per landing file of the batch sources (3 sources x 2 days).
    def ticked():
        ticks = sensor_state(dagster_dev, "landing_files")["ticks"]
        return ticks[0] if ticks and ticks[0]["status"] in ("SUCCESS", "FAILURE", "SKIPPED") else None

    tick = wait_for("the landing_files sensor's first tick", ticked, 120)
    assert tick["status"] == "SUCCESS", tick
    assert len(tick["runIds"]) == 3 * UI_DAYS

    running = page.get_by_role("checkbox")
    page.locator("label").filter(has=running).click()  # and off again
    expect(running).not_to_be_checked()
    wait_for(
        "landing_files to be STOPPED", lambda: sensor_state(dagster_dev, "landing_files")["status"] == "STOPPED", 60
    )
