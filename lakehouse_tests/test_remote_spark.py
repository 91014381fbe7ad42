"""Compute on a remote Spark Connect endpoint: a standalone Sail server in a process of its own stands in for
a cluster (`LAKEHOUSE_SPARK_REMOTE=sc://host:port`). The same transforms and assets run there unchanged.
(Apache Spark's own Connect server from the pyspark wheel is covered by test_engines.py.)"""

from lakehouse import settings
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.spark import SparkEngine, spark_session
from lakehouse_tests.engine_probe import EXPECTED, silver_orders
from lakehouse_tests.helpers import (
    DAY_KEYS,
    day_counts,
    materialize,
    rows_by,
    silver_orders_by_day,
)
from lakehouse_tests.remote_fixtures import SAIL_LOGS, remote_sail_url, s3_env  # noqa: F401 - fixtures


def sessions_created(url: str) -> int:
    return SAIL_LOGS[url].read_text(errors="replace").count("creating session")


def test_the_remote_endpoint_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_SPARK_REMOTE", "sc://spark-connect:15002")
    assert settings.spark_remote() == "sc://spark-connect:15002"


def test_a_remote_endpoint_gets_its_own_session_next_to_the_embedded_engine(spark, remote_sail_url):
    """pyspark's getOrCreate() returns the process's existing session whatever its URL: the resource must not."""
    remote = SparkEngine(remote=remote_sail_url)
    remote.setup_for_execution(None)
    assert remote.spark_session is not spark
    assert remote.spark_session.client._builder.endpoint == remote_sail_url.removeprefix("sc://")
    assert spark_session(remote_sail_url) is remote.spark_session  # one session per endpoint, reused
    assert sessions_created(remote_sail_url) >= 1


def test_the_silver_orders_transform_gives_the_same_answer_on_the_remote_engine(remote_sail_url):
    assert silver_orders(spark_session(remote_sail_url)) == EXPECTED


def test_batch_assets_and_checks_run_through_sc_url(manifest, remote_sail_url, tmp_path):
    lake = DeltaLake(root=str(tmp_path / "lake"))
    result = materialize({"spark": SparkEngine(remote=remote_sail_url), "lake": lake}, DAY_KEYS[0], DAY_KEYS[0])
    assert result.success
    day = DAY_KEYS[0]
    for source in ("crm_customers", "orders", "fx_rates"):
        assert rows_by(lake, "bronze", source, "_partition_date") == {day: day_counts(manifest, source, "records")[day]}
    assert rows_by(lake, "silver", "orders", "order_date") == {day: silver_orders_by_day(manifest)[day]}
    assert all(c.passed for c in result.get_asset_check_evaluations() if c.severity.value == "ERROR")
