"""One pipeline, every engine: the same landing files give the same tables on Sail (the embedded default), on
Apache Spark with Delta Lake (`LAKEHOUSE_SPARK_REMOTE=local`) and on an Apache Spark standalone cluster reached
over Spark Connect (`lakehouse spark-cluster`). Apache Spark is the reference: where the engines disagree, the
pipeline must give what Spark gives. Each engine runs Bronze, Silver, their checks and Gold (dbt) over the
session's generated days, into a lake of its own."""

import os
import subprocess
import sys
import time
from decimal import Decimal

import dagster as dg
import pytest

from lakehouse.lib.jvm_spark import SparkCluster, free_port
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.spark import SparkEngine
from lakehouse_tests.engine_probe import EXPECTED, silver_orders
from lakehouse_tests.helpers import BATCH_ASSETS, DAY_KEYS, QUALITY_CHECKS, materialize
from lakehouse_tests.test_gold import build_gold

KEY_TABLES = ["silver/orders", "gold/revenue_daily", "gold/customer_360", "gold/daily_kpis"]
# When and by which run a row was written: the only columns that differ between two runs of the same data.
RUN_COLUMNS = {"_ingested_at", "_run_id", "_quarantined_at"}


def run_pipeline(remote: str, lake: DeltaLake, checks: bool = True) -> list[dg.ExecuteInProcessResult]:
    resources = {"spark": SparkEngine(remote=remote), "lake": lake}
    # Without the quality checks; each asset's own (rows_accounted_for) runs with it.
    selection = None if checks else dg.AssetSelection.assets(*BATCH_ASSETS) - dg.AssetSelection.checks(*QUALITY_CHECKS)
    runs = [
        materialize(resources, DAY_KEYS[0], DAY_KEYS[-1], selection),
        build_gold(resources, DAY_KEYS[0], DAY_KEYS[-1]),
    ]
    assert all(run.success for run in runs)
    return runs


@pytest.fixture(scope="session")
def lakes(manifest, sail_url, tmp_path_factory) -> dict[str, DeltaLake]:
    """The whole pipeline on Sail and on local Apache Spark (a Connect server this process starts)."""
    found = {}
    for engine, remote in [("sail", sail_url), ("spark", "local")]:
        found[engine] = DeltaLake(root=str(tmp_path_factory.mktemp(f"lake-{engine}")))
        run_pipeline(remote, found[engine])
    return found


@pytest.fixture(scope="session")
def cluster_lake(lakes, tmp_path_factory) -> DeltaLake:
    """The same pipeline on a standalone cluster: a master, two workers and a Connect server with Delta. Its
    tables are what is compared; the Bronze and Silver checks, which ran on local Spark, are left out to keep
    the suite's time (each Spark job costs a scheduling round trip to the executors)."""
    lake = DeltaLake(root=str(tmp_path_factory.mktemp("lake-cluster")))
    cluster = SparkCluster(
        workers=2, port=free_port(), worker_memory="1g", log_dir=tmp_path_factory.mktemp("spark-cluster")
    )
    with cluster.running():
        run_pipeline(cluster.url, lake, checks=False)
    return lake


def row_counts(lake: DeltaLake) -> dict[str, int]:
    return {f"{t['layer']}/{t['name']}": t["rows"] for t in lake.tables()}


def content(lake: DeltaLake, table: str) -> list[tuple]:
    """Every row, sorted, without the columns that record the run; decimals and floats as text."""
    layer, name = table.split("/")
    rows = lake.delta_table(layer, name).to_pyarrow_table().to_pylist()

    def cell(value):
        return str(value) if isinstance(value, (Decimal, float)) else value

    return sorted((tuple((k, cell(v)) for k, v in sorted(r.items()) if k not in RUN_COLUMNS) for r in rows), key=repr)


def test_silver_orders_transform_on_sail(spark):
    assert silver_orders(spark) == EXPECTED


def test_silver_orders_transform_on_apache_spark_gives_the_same_answer(lakes):
    from lakehouse.lib.spark import spark_session

    assert silver_orders(spark_session("local")) == EXPECTED


def test_local_spark_is_apache_spark_with_delta(lakes):
    from lakehouse.lib.spark import spark_session

    spark = spark_session("local")
    assert spark.version.startswith("4.1")
    assert spark.conf.get("spark.sql.extensions") == "io.delta.sql.DeltaSparkSessionExtension"
    assert lakes["spark"].delta_table("silver", "orders").history(1)[0]["engineInfo"].startswith("Apache-Spark/")
    assert not lakes["sail"].delta_table("silver", "orders").history(1)[0].get("engineInfo", "").startswith("Apache")


def test_every_table_has_the_same_row_count_on_sail_and_spark(lakes):
    sail, spark = row_counts(lakes["sail"]), row_counts(lakes["spark"])
    assert len(sail) == 15 and all(sail.values())
    assert spark == sail


@pytest.mark.parametrize("table", KEY_TABLES)
def test_key_tables_have_the_same_content_on_sail_and_spark(lakes, table):
    assert content(lakes["spark"], table) == content(lakes["sail"], table)


def test_every_table_has_the_same_row_count_on_the_standalone_cluster(lakes, cluster_lake):
    assert row_counts(cluster_lake) == row_counts(lakes["spark"])


@pytest.mark.parametrize("table", KEY_TABLES)
def test_key_tables_have_the_same_content_on_the_standalone_cluster(lakes, cluster_lake, table):
    assert content(cluster_lake, table) == content(lakes["spark"], table)


def java_descendants(pid: int) -> list:
    """The JVMs under `pid`. Spark's start scripts also run short-lived shells, which may be gone by the time
    their names are read: those are skipped."""
    import psutil

    found = []
    for process in psutil.Process(pid).children(recursive=True):
        try:
            if process.name() == "java":
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def test_spark_cluster_command_starts_everything_and_sigterm_stops_it(tmp_path):
    """`lakehouse spark-cluster` prints the sc:// URL, serves queries there, and SIGTERM stops every JVM."""
    import psutil

    port = free_port()
    command = subprocess.Popen(
        ["lakehouse", "spark-cluster", "--workers", "1", "--port", str(port), "--worker-memory", "512m"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "LAKEHOUSE_HOME": str(tmp_path)},
    )
    try:
        lines = [command.stdout.readline() for _ in range(2)]
        assert lines[1].strip() == f"export LAKEHOUSE_SPARK_REMOTE=sc://127.0.0.1:{port}"
        jvms = java_descendants(command.pid)
        roles = {
            role for p in jvms for role in ("Master", "Worker", "SparkConnectServer") if role in " ".join(p.cmdline())
        }
        assert roles == {"Master", "Worker", "SparkConnectServer"}
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from lakehouse.lib.spark import spark_session; "
                f"print(spark_session('sc://127.0.0.1:{port}').range(5).count())",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert probe.stdout.strip().splitlines()[-1] == "5", probe.stderr[-2000:]
        jvms = java_descendants(command.pid)  # and the executor
    finally:
        command.terminate()
        assert command.wait(60) == 0
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in jvms)


def test_jars_are_fetched_once_into_the_cache(tmp_path, monkeypatch):
    from lakehouse.lib import jars

    monkeypatch.setenv("LAKEHOUSE_JARS_CACHE", str(tmp_path))
    found = jars.jars(jars.DELTA)
    assert [j.name for j in found] == ["delta-spark_2.13-4.3.1.jar", "delta-storage-4.3.1.jar"]
    assert found[0].parent == jars.DELTA.folder and jars.DELTA.folder.parent == tmp_path
    monkeypatch.setattr(jars, "fetch", lambda bundle: pytest.fail("fetched again"))
    assert jars.jars(jars.DELTA) == found  # offline from now on


def test_a_jvm_started_by_a_process_that_dies_gets_sigterm(tmp_path):
    # A stand-in for the JVM, started as a Spark server is, that notes the signal it gets; its parent exits
    noted = tmp_path / "signal"
    jvm = (
        f"import signal, time; signal.signal(signal.SIGTERM, lambda *_: open({str(noted)!r}, 'w').write('TERM'));"
        " print('ready', flush=True); time.sleep(30)"
    )
    parent = (
        "import subprocess, sys; from lakehouse.lib.jvm_spark import dying_with_parent;"
        f"child = subprocess.Popen(dying_with_parent([sys.executable, '-c', {jvm!r}]), stdout=subprocess.PIPE);"
        "child.stdout.readline()"
    )
    subprocess.run([sys.executable, "-c", parent], check=True, timeout=60)
    deadline = time.monotonic() + 10
    while not noted.exists():
        assert time.monotonic() < deadline, "the child got no SIGTERM when its parent exited"
        time.sleep(0.1)
    assert noted.read_text() == "TERM"
