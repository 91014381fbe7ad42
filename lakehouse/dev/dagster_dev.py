"""`dagster dev` as a subprocess with homes of its own, for the browser tests and the streaming benchmark:
started in its own process group (webserver, daemon, code server and run workers), reached through its
GraphQL API, and stopped with Ctrl-C to the whole group, as a user stops it."""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lakehouse.dev.broker import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 240  # seconds; `dagster dev` loads the code location (and parses dbt) in ~30-45 s here


@dataclass
class DagsterDev:
    """A running `dagster dev`: its URL, homes and log, and a GraphQL client."""

    url: str
    lakehouse_home: Path
    dagster_home: Path
    log: Path
    process: subprocess.Popen

    @classmethod
    def start(cls, lakehouse_home: Path, dagster_home: Path, env: dict[str, str], log: Path) -> "DagsterDev":
        """`dagster dev -w workspace.yaml` on a free port (DAGSTER_HOME must hold a dagster.yaml), ready when
        this returns: the code location has loaded. Stopped (and raised) if it does not get there."""
        port = free_port()
        with log.open("w") as out:
            process = subprocess.Popen(
                ["dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                cwd=REPO_ROOT,
                env={**env, "LAKEHOUSE_HOME": str(lakehouse_home), "DAGSTER_HOME": str(dagster_home)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends webserver, daemon and runs together
            )
        server = cls(f"http://127.0.0.1:{port}", lakehouse_home, dagster_home, log, process)
        try:
            server.wait_until_ready()
        except BaseException:
            server.stop()
            raise
        return server

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

    def location_loaded(self) -> bool:
        data = self.graphql("""{ workspaceOrError { ... on Workspace { locationEntries {
            name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
        entries = data["workspaceOrError"]["locationEntries"]
        for entry in entries:
            error = entry["locationOrLoadError"] or {}
            if error.get("__typename") == "PythonError":
                raise AssertionError(f"code location {entry['name']} failed to load: {error['message']}")
        return bool(entries) and all(e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries)

    def wait_until_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """/server_info answers, then the code location has loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5):
                    pass
                if self.location_loaded():
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        raise AssertionError(f"dagster dev not ready after {timeout:.0f} s:\n{self.log_tail()}")

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
