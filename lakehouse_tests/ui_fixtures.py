"""Fixtures for the browser tests: `dagster dev` on a free port with a home of its own, and headless
Chromium driven by Playwright.

- The server gets its own LAKEHOUSE_HOME (two generated days of landing files, nothing materialised)
  and DAGSTER_HOME (the instance `lakehouse dev` makes), runs in its own process group, and the whole group
  (webserver, daemon, code server, run workers) is killed at teardown.
- The browser is the system's Chromium (Debian's `chromium` package, or LAKEHOUSE_CHROMIUM): Playwright
  never downloads one. Without a browser or Playwright the browser tests are skipped, saying why.
- Screenshots go to LAKEHOUSE_SCREENSHOTS when set (`docs/screenshots` regenerates the README's),
  else to a pytest temporary folder.
"""

import json
import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from lakehouse.cli import write_instance_config
from lakehouse.dev.dagster_dev import DagsterDev
from lakehouse.dev.generator import generate

UI_START = date(2026, 11, 1)
UI_DAYS = 2
UI_SCALE = 0.05
UI_SEED = 5
VIEWPORT = {"width": 1600, "height": 1000}


def ui_local_storage(groups: list[str]) -> dict[str, str]:
    """Browser state the UI keeps in localStorage: every asset group expanded and a top-down graph
    (which the UI zooms to fit), so the lineage screenshot shows every layer at once."""
    expanded = ",".join(f"global@global:{g}" for g in sorted(groups))
    return {
        "asset-graph-open-graph-nodes-global-__GLOBAL__": json.dumps({"expanded": expanded}),
        "asset-graph-direction": json.dumps("vertical"),
    }


def chromium_path() -> str | None:
    configured = os.environ.get("LAKEHOUSE_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def server_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # The server's state is its own home; with no Kafka cluster configured the Kafka sensors start
    # stopped, as on a developer's machine. No alerts leave the test.
    for name in ("LAKEHOUSE_LAKE_ROOT", "LAKEHOUSE_KAFKA_BOOTSTRAP", "LAKEHOUSE_ALERT_WEBHOOK"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    """`dagster dev -w workspace.yaml` on a free port over two generated days; killed at teardown."""
    lakehouse_home = tmp_path_factory.mktemp("ui_home")
    dagster_home = lakehouse_home / "dagster"
    dagster_home.mkdir()
    write_instance_config(dagster_home)  # the instance `lakehouse dev` makes
    generate(lakehouse_home / "landing", UI_START, UI_DAYS, UI_SCALE, UI_SEED)
    log = lakehouse_home / "dagster-dev.log"
    server = DagsterDev.start(lakehouse_home, dagster_home, server_env(), log)
    try:
        server.graphql("mutation { setNuxSeen }")  # the first-visit newsletter dialog would cover the page
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    """Headless system Chromium through Playwright (never a downloaded browser)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is in the dev extra: pip install -e '.[dev]'"
    )
    executable = chromium_path()
    if not executable:
        pytest.skip("no Chromium: apt-get install -y chromium (or set LAKEHOUSE_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser, server: DagsterDev, device_scale_factor: float = 1):
    """A browser context on the server with the UI state above and generous but bounded waits."""
    context = browser.new_context(viewport=VIEWPORT, base_url=server.url, device_scale_factor=device_scale_factor)
    storage = ui_local_storage(sorted(set(server.asset_groups().values())))
    context.add_init_script(
        "".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});" for k, v in storage.items())
    )
    context.set_default_timeout(60_000)
    return context


@pytest.fixture
def page(browser, dagster_dev):
    """A fresh browser context per test."""
    context = new_context(browser, dagster_dev)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def sharp_page(browser, dagster_dev):
    """A page rendered at twice the pixel density, for screenshots of small things (the whole graph)."""
    context = new_context(browser, dagster_dev, device_scale_factor=2)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where screenshots go: LAKEHOUSE_SCREENSHOTS (e.g. docs/screenshots), else a temporary folder."""
    configured = os.environ.get("LAKEHOUSE_SCREENSHOTS")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
