"""Session-scoped fixtures: one embedded Sail engine and one small lake materialised through Dagster,
shared by every test that only reads it. Tests that write get their own lake."""

import os
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from lakehouse.definitions import BATCH_ASSETS, QUALITY_CHECKS
from lakehouse.resources.lake import DeltaLake
from lakehouse.resources.spark import SparkEngine, embedded_sail_url, spark_session
from lakehouse.sources.generator import generate

START = date(2026, 11, 1)
DAYS = 3
SCALE = 0.2
SEED = 7
DAY_KEYS = [(START + timedelta(days=i)).isoformat() for i in range(DAYS)]


@pytest.fixture(scope="session")
def sail_url() -> str:
    return embedded_sail_url()


@pytest.fixture(scope="session")
def spark(sail_url):
    return spark_session(sail_url)


def range_tags(first: str, last: str) -> dict:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def materialize(resources: dict, first: str, last: str, selection=None, **kwargs) -> dg.ExecuteInProcessResult:
    """One run of the batch assets and their checks over [first, last], as a backfill of the range would."""
    return dg.materialize([*BATCH_ASSETS, *QUALITY_CHECKS], resources=resources, selection=selection,
                          tags=range_tags(first, last), **kwargs)


@pytest.fixture(scope="session")
def lakehouse_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("lakehouse_home")
    os.environ["LAKEHOUSE_HOME"] = str(home)  # the Bronze assets find the landing zone through it
    return home


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


def day_counts(manifest: dict, source: str, key: str) -> dict[str, int]:
    """A manifest figure per day: `records` or an anomaly name."""
    days = manifest["sources"][source]
    return {d: (v[key] if key in v else v["anomalies"][key]) for d, v in days.items()}


# Landed order rows that are not a Silver order of their own: older versions (re-sent, moved on in a
# later day's file) and the rows each rule quarantines.
ORDER_ROWS_NOT_IN_SILVER = ["duplicates", "late_updates", "resent", "null_keys", "bad_timestamps", "bad_amounts",
                            "negative_amounts", "unknown_customers"]


def silver_orders_by_day(manifest: dict) -> dict[str, int]:
    """Silver orders per order date: each day's landed rows less those that are not an order of that day."""
    return {day: f["records"] - sum(f["anomalies"][k] for k in ORDER_ROWS_NOT_IN_SILVER)
            for day, f in manifest["sources"]["orders"].items()}


def total(manifest: dict, source: str, *keys: str) -> int:
    return sum(sum(day_counts(manifest, source, k).values()) for k in keys)


def rows_by(lake: DeltaLake, layer: str, table: str, column: str) -> dict[str, int]:
    """Row counts per value of `column`, read with delta-rs."""
    t = lake.delta_table(layer, table).to_pyarrow_table(columns=[column]).group_by(column).aggregate([([], "count_all")])
    return {str(k): v for k, v in zip(t.column(0).to_pylist(), t.column(1).to_pylist())}


def read_rows(lake: DeltaLake, layer: str, table: str) -> list[dict]:
    return lake.delta_table(layer, table).to_pyarrow_table().to_pylist()


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
