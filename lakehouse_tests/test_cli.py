"""The command-line interface as users and other tools call it, in subprocesses with a home of their own."""

import json
import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest
from deltalake import DeltaTable

from lakehouse_tests.helpers import START

BATCH_SELECTION = "bronze/crm_customers,bronze/orders,bronze/fx_rates,silver/customers,silver/fx_rates,silver/orders"


def run(env: dict, *command: str) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("cli_home")
    return {**os.environ, "LAKEHOUSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}


@pytest.fixture(scope="module")
def demo_twice(home) -> tuple[str, list[dict], list[dict]]:
    args = ["lakehouse", "demo", "--start", START.isoformat(), "--days", "2", "--scale", "0.05", "--seed", "5"]
    printed = run(home, *args)
    first = json.loads(run(home, "lakehouse", "tables", "--json"))
    run(home, *args)
    return printed, first, json.loads(run(home, "lakehouse", "tables", "--json"))


def test_generate_prints_the_manifest_as_json(home):
    manifest = json.loads(
        run(home, "lakehouse", "generate", "--start", "2026-11-01", "--days", "1", "--scale", "0.05", "--seed", "5")
    )
    assert manifest["totals"]["orders"]["records"] == manifest["sources"]["orders"]["2026-11-01"]["records"] > 0
    assert Path(manifest["landing_dir"]) == Path(home["LAKEHOUSE_HOME"]) / "landing"


def test_demo_prints_row_counts_per_table_and_partition(demo_twice):
    printed, first, _ = demo_twice
    orders = {t["name"]: t["rows"] for t in first if t["layer"] == "silver"}["orders"]
    day_rows = [line.split() for line in printed.splitlines() if line.startswith("silver.orders ")]
    assert [d[1] for d in day_rows] == ["2026-11-01", "2026-11-02"]
    assert sum(int(d[2]) for d in day_rows) == orders


def test_tables_json_lists_every_delta_table(demo_twice):
    _, tables, _ = demo_twice
    assert {(t["layer"], t["name"]) for t in tables} >= {("bronze", "orders"), ("silver", "customers")}
    assert all({"layer", "name", "rows", "version", "path"} <= t.keys() for t in tables)


def test_rerunning_the_demo_leaves_every_tables_rows_unchanged(demo_twice):
    _, first, second = demo_twice
    assert {t["name"]: t["rows"] for t in second} == {t["name"]: t["rows"] for t in first}


def test_demo_runs_are_recorded_in_the_instance_for_the_ui(demo_twice, home):
    with dg.DagsterInstance.from_config(home["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs()
    assert [r.job_name for r in runs] == ["batch", "batch"]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)


def test_dagster_cli_materialises_a_partition_range_in_one_run(demo_twice, home):
    run(
        home,
        "dagster",
        "asset",
        "materialize",
        "-m",
        "lakehouse.definitions",
        "--select",
        BATCH_SELECTION,
        "--partition-range",
        "2026-11-01...2026-11-02",
    )
    with dg.DagsterInstance.from_config(home["DAGSTER_HOME"]) as instance:
        [latest, *_] = instance.get_runs()
        events = instance.get_records_for_run(latest.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    assert latest.status == dg.DagsterRunStatus.SUCCESS
    assert len(events) == 6 * 2  # six assets, two partitions each, one run


def test_kafka_broker_command_keeps_its_storage_across_restarts_and_sigterm_stops_it(home, tmp_path):
    """`lakehouse broker --kafka`: Apache Kafka in KRaft mode, formatted on first start, its data kept."""
    from lakehouse.dev.broker import free_port
    from lakehouse.lib.kafka import KafkaResource

    port, env = free_port(), {**home, "LAKEHOUSE_HOME": str(tmp_path)}
    for start in range(2):
        broker = subprocess.Popen(
            ["lakehouse", "broker", "--kafka", "--port", str(port)], env=env, text=True, stdout=subprocess.PIPE
        )
        try:
            assert broker.stdout.readline().startswith(f"Apache Kafka (KRaft, one node) listening on 127.0.0.1:{port}")
            assert broker.stdout.readline().strip() == f"export LAKEHOUSE_KAFKA_BOOTSTRAP=127.0.0.1:{port}"
            kafka = KafkaResource(bootstrap_servers=f"127.0.0.1:{port}")
            if start == 0:
                kafka.create_topic("clickstream", 2)
                producer = kafka.producer()
                for n in range(10):
                    producer.produce("clickstream", value=b"{}", partition=n % 2)
                assert producer.flush(30) == 0
            assert kafka.end_offsets("clickstream") == {0: 5, 1: 5}  # the second start still has them
        finally:
            broker.terminate()
            assert broker.wait(60) == 0
    assert (tmp_path / "kafka" / "logs" / "meta.properties").exists()


def test_kafka_epoch_starts_a_new_epoch_of_a_streaming_table_and_refuses_others(home, tmp_path):
    import pyarrow as pa
    from deltalake import write_deltalake

    from lakehouse.defs.bronze.streaming import EPOCH_PROPERTY

    env = {**home, "LAKEHOUSE_HOME": str(tmp_path)}
    refused = subprocess.run(["lakehouse", "kafka-epoch", "orders"], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "no streaming Bronze table 'orders'" in refused.stderr
    write_deltalake(str(tmp_path / "lake" / "bronze" / "clickstream_events"), pa.table({"kafka_epoch": [0]}))
    for epoch in (1, 2):
        out = run(env, "lakehouse", "kafka-epoch", "clickstream_events")
        assert out.startswith(f"bronze.clickstream_events: epoch {epoch} started")
    table = DeltaTable(str(tmp_path / "lake" / "bronze" / "clickstream_events"))
    assert table.metadata().configuration[EPOCH_PROPERTY] == "2"
