"""Session-scoped fixtures: one embedded Sail engine and one small lake materialised through Dagster,
shared by every test that only reads it. Tests that write get their own lake."""

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from lakehouse.dev.generator import generate
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.spark import SparkEngine, embedded_sail_url, spark_session
from lakehouse_tests.helpers import DAY_KEYS, DAYS, SCALE, SEED, START, materialize


@pytest.fixture(scope="session")
def sail_url() -> str:
    return embedded_sail_url()


@pytest.fixture(scope="session")
def spark(sail_url):
    return spark_session(sail_url)


@pytest.fixture(scope="session")
def lakehouse_home(tmp_path_factory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("lakehouse_home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAKEHOUSE_HOME", str(home))  # the Bronze assets find the landing zone through it
        yield home


@pytest.fixture(scope="session")
def manifest(lakehouse_home) -> dict:
    return generate(lakehouse_home / "landing", START, DAYS, SCALE, SEED)


@pytest.fixture(scope="session")
def lake(lakehouse_home) -> DeltaLake:
    return DeltaLake(root=str(lakehouse_home / "lake"))


@pytest.fixture(scope="session")
def resources(sail_url, lake) -> dict:
    return {"spark": SparkEngine(remote=sail_url), "lake": lake}


@pytest.fixture(scope="session")
def batch_run(manifest, resources) -> dg.ExecuteInProcessResult:
    """Bronze and Silver for the whole generated window, in one Dagster run."""
    result = materialize(resources, DAY_KEYS[0], DAY_KEYS[-1])
    assert result.success
    return result


# -- CI runs every test ------------------------------------------------------------------------------------------

_skipped: list[str] = []


def pytest_runtest_logreport(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(f"{report.nodeid}: {report.longrepr[-1] if isinstance(report.longrepr, tuple) else ''}")


def pytest_sessionfinish(session, exitstatus) -> None:
    """With CI set, a skipped test fails the run: a skip for a missing server or engine hides a missing install."""
    if os.environ.get("CI") and _skipped and session.exitstatus == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(f"CI: {len(_skipped)} test(s) skipped, which CI does not allow:", red=True)
        for line in _skipped:
            reporter.write_line(f"  {line}")
        session.exitstatus = 1
