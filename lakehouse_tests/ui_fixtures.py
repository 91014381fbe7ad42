"""Fixtures for the browser tests: `dagster dev` on a free port with a home of its own, and headless
Chromium driven by Playwright.

- The server gets its own LAKEHOUSE_HOME (two generated days of landing files, nothing materialised)
  and DAGSTER_HOME (the repo's dagster.yaml), runs in its own process group, and the whole group
  (webserver, daemon, code server, run workers) is killed at teardown.
- The browser is the system's Chromium (Debian's `chromium` package, or LAKEHOUSE_CHROMIUM): Playwright
  never downloads one. Without a browser or Playwright the browser tests are skipped, saying why.
- Screenshots go to LAKEHOUSE_SCREENSHOTS when set (`docs/screenshots` regenerates the README's),
  else to a pytest temporary folder.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from lakehouse.dev.generator import generate

REPO_ROOT = Path(__file__).resolve().parents[1]
UI_START = date(2026, 11, 1)
UI_DAYS = 2
UI_SCALE = 0.05
UI_SEED = 5
STARTUP_TIMEOUT = 240  # seconds; `dagster dev` loads the code location (and parses dbt) in ~30-45 s here
VIEWPORT = {"width": 1600, "height": 1000}


def ui_local_storage(groups: list[str]) -> dict[str, str]:
    """Browser state the UI keeps in localStorage: every asset group expanded and a top-down graph
    (which the UI zooms to fit), so the lineage screenshot shows every layer at once."""
    expanded = ",".join(f"global@global:{g}" for g in sorted(groups))
    return {
        "asset-graph-open-graph-nodes-global-__GLOBAL__": json.dumps({"expanded": expanded}),
        "asset-graph-direction": json.dumps("vertical"),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_path() -> str | None:
    configured = os.environ.get("LAKEHOUSE_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class DagsterDev:
    """A running `dagster dev`: its URL, homes and log, and a GraphQL client for assertions."""

    url: str
    lakehouse_home: Path
    dagster_home: Path
    log: Path
    process: subprocess.Popen

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.load(response)
        if answer.get("errors"):
            raise AssertionError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def asset_groups(self) -> dict[str, str]:
        """asset key (`layer/table`) -> group name, as the running code location defines them."""
        nodes = self.graphql("{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
        return {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        """Ctrl-C to the whole process group (what `dagster dev` shuts down on), SIGKILL to whatever is left."""
        try:
            os.killpg(self.process.pid, signal.SIGINT)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # run workers and code servers may outlive dagster dev
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)


def location_loaded(server: DagsterDev) -> bool:
    data = server.graphql("""{ workspaceOrError { ... on Workspace { locationEntries {
        name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
    entries = data["workspaceOrError"]["locationEntries"]
    for entry in entries:
        error = entry["locationOrLoadError"] or {}
        if error.get("__typename") == "PythonError":
            raise AssertionError(f"code location {entry['name']} failed to load: {error['message']}")
    return bool(entries) and all(e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries)


def wait_until_ready(server: DagsterDev, timeout: float = STARTUP_TIMEOUT) -> None:
    """/server_info answers, then the code location has loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"dagster dev exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/server_info", timeout=5):
                pass
            if location_loaded(server):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise AssertionError(f"dagster dev not ready after {timeout:.0f} s:\n{server.log_tail()}")


def server_env(lakehouse_home: Path, dagster_home: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "LAKEHOUSE_HOME": str(lakehouse_home),
        "DAGSTER_HOME": str(dagster_home),
        "PYTHONUNBUFFERED": "1",
    }
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
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    generate(lakehouse_home / "landing", UI_START, UI_DAYS, UI_SCALE, UI_SEED)
    port = free_port()
    log = lakehouse_home / "dagster-dev.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT,
            env=server_env(lakehouse_home, dagster_home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown kills webserver, daemon and runs together
        )
    server = DagsterDev(f"http://127.0.0.1:{port}", lakehouse_home, dagster_home, log, process)
    try:
        wait_until_ready(server)
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
