"""The lake on S3: the same assets, unchanged, against an S3 API endpoint (a moto server subprocess), with the
engine in a process of its own (a standalone Sail server, which reads AWS_* from its environment). The Delta
tables are then read back through delta-rs from the same bucket and checked against the generator's manifest."""

import json
import os
import subprocess
import sys

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from lakehouse import settings
from lakehouse.defs.gold import dbt as gold
from lakehouse.dev import generator
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.spark import SparkEngine
from lakehouse_tests.helpers import (
    DAY_KEYS,
    DAYS,
    SCALE,
    SEED,
    START,
    day_counts,
    materialize,
    range_tags,
    rows_by,
    silver_orders_by_day,
    total,
)
from lakehouse_tests.kafka_fixtures import broker, kafka, produce_days  # noqa: F401 - fixtures
from lakehouse_tests.remote_fixtures import BUCKET, remote_sail_url, s3_env  # noqa: F401 - fixtures

PREFIX = "lake"
ROOT = f"s3://{BUCKET}/{PREFIX}"
ORDER_RULE_ANOMALIES = ["null_keys", "bad_timestamps", "bad_amounts", "negative_amounts", "unknown_customers"]


@pytest.fixture(scope="module")
def s3_lake(s3_env) -> DeltaLake:
    """The DeltaLake resource as definitions.py builds it when LAKEHOUSE_LAKE_ROOT is s3://: storage options
    derived from the standard AWS variables."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in {**s3_env, "LAKEHOUSE_LAKE_ROOT": ROOT}.items():
            env.setenv(name, value)
        return DeltaLake(root=settings.lake_root(), storage_options=settings.lake_storage_options())


@pytest.fixture(scope="module")
def s3_resources(remote_sail_url, s3_lake) -> dict:
    return {"spark": SparkEngine(remote=remote_sail_url), "lake": s3_lake}


@pytest.fixture(scope="module")
def s3_runs(manifest, s3_resources) -> dict[str, dg.ExecuteInProcessResult]:
    """Bronze -> Silver (with the quality checks) in one run, then Gold (one dbt invocation) for the window."""
    batch = materialize(s3_resources, DAY_KEYS[0], DAY_KEYS[-1])
    assert batch.success
    gold_run = dg.materialize(
        [gold.gold_dbt],
        resources={**s3_resources, "dbt": gold.dbt_resource()},
        tags=range_tags(DAY_KEYS[0], DAY_KEYS[-1]),
    )
    assert gold_run.success
    return {"batch": batch, "gold": gold_run}


def test_storage_options_come_from_the_standard_aws_variables(s3_env, monkeypatch):
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    options = settings.lake_storage_options(ROOT)
    assert options == {**s3_env, "AWS_ALLOW_HTTP": "true"}
    # a resource given no options derives the same ones; a local lake needs none
    assert DeltaLake(root=ROOT).options() == options
    assert settings.lake_storage_options("/tmp/lake") == {}


def test_bronze_and_silver_on_s3_match_the_manifest(s3_runs, manifest, s3_lake):
    for source in ("crm_customers", "orders", "fx_rates"):
        assert rows_by(s3_lake, "bronze", source, "_partition_date") == day_counts(manifest, source, "records")
    assert rows_by(s3_lake, "silver", "orders", "order_date") == silver_orders_by_day(manifest)
    assert s3_lake.delta_table("silver", "orders_quarantine").to_pyarrow_table().num_rows == total(
        manifest, "orders", *ORDER_RULE_ANOMALIES
    )
    checks = s3_runs["batch"].get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks if c.severity == dg.AssetCheckSeverity.ERROR)


def test_gold_dbt_models_are_written_to_the_bucket(s3_runs, s3_lake):
    per_day = {}
    for row in (
        s3_lake.delta_table("gold", "revenue_daily").to_pyarrow_table(columns=["order_date", "orders"]).to_pylist()
    ):
        per_day[row["order_date"].isoformat()] = per_day.get(row["order_date"].isoformat(), 0) + row["orders"]
    assert per_day == {day: round(generator.ORDERS * SCALE) for day in DAY_KEYS}
    assert all(e.passed for e in s3_runs["gold"].get_asset_check_evaluations())
    gold_tables = {t["name"] for t in s3_lake.tables() if t["layer"] == "gold"}
    assert {"revenue_daily", "customer_360", "daily_kpis"} <= gold_tables


def test_every_object_is_under_the_prefix_and_the_bucket_is_listed_through_dagster_aws(s3_runs, s3_env):
    client = S3Resource(
        endpoint_url=s3_env["AWS_ENDPOINT_URL"],
        region_name=s3_env["AWS_REGION"],
        aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
    ).get_client()
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for o in page.get("Contents", [])
    ]
    assert keys and all(k.startswith(f"{PREFIX}/") for k in keys)
    assert f"{PREFIX}/silver/orders/_delta_log/00000000000000000000.json" in keys


def test_lakehouse_tables_cli_lists_the_s3_lake_from_the_environment(s3_runs, s3_env, s3_lake):
    """The user's path: only LAKEHOUSE_LAKE_ROOT and the AWS variables set, nothing passed in code."""
    env = {**os.environ, **s3_env, "LAKEHOUSE_LAKE_ROOT": ROOT}
    done = subprocess.run(
        [sys.executable, "-c", "from lakehouse.cli import main; main()", "tables", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    listed = {(t["layer"], t["name"]): t["rows"] for t in json.loads(done.stdout)}
    assert listed == {(t["layer"], t["name"]): t["rows"] for t in s3_lake.tables()}
    assert listed[("silver", "orders")] == sum(rows_by(s3_lake, "silver", "orders", "order_date").values())


def test_a_streaming_bronze_batch_lands_on_s3_exactly_once(s3_runs, s3_resources, kafka, manifest):
    """Kafka -> Bronze on the bucket; a second run of the same asset finds nothing new (offsets in the table)."""
    from lakehouse.defs.bronze import streaming as bronze

    lake = s3_resources["lake"]

    def landed() -> list[dict]:
        if not lake.exists("bronze", "clickstream_events"):
            return []
        return (
            lake.delta_table("bronze", "clickstream_events")
            .to_pyarrow_table(columns=["kafka_topic", "kafka_partition", "kafka_offset"])
            .to_pylist()
        )

    before = len(landed())  # the module's lake is shared: the test's run with the other broker is there too
    sent = produce_days(kafka, "clickstream", START, DAYS, SCALE, SEED)
    assert sent == total(manifest, "clickstream", "records")
    resources = {**s3_resources, "kafka": kafka}
    for _ in range(2):
        assert dg.materialize([bronze.clickstream_events], resources=resources, partition_key=DAY_KEYS[-1]).success
    rows = landed()
    mine = [r for r in rows if r["kafka_topic"] == kafka.topic("clickstream")]
    assert len(rows) - before == len(mine) == sent == len({tuple(r.values()) for r in mine})


def test_concurrent_writers_of_different_partitions_both_commit_on_s3(remote_sail_url, s3_lake):
    """On S3 the engine commits with a conditional PUT (If-None-Match): the loser gets 412 and DeltaLake retries."""
    from datetime import date

    from lakehouse.lib.spark import spark_session
    from lakehouse_tests.test_concurrency import assert_log_intact, day_frame, together

    spark = spark_session(remote_sail_url)
    d1, d2, d3 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)
    s3_lake.overwrite_window(day_frame(spark, d1, "seed", 10), "silver", "concurrent", "d", d1, d2)
    results = together(
        lambda: s3_lake.overwrite_window(day_frame(spark, d1, "a"), "silver", "concurrent", "d", d1, d2),
        lambda: s3_lake.overwrite_window(day_frame(spark, d2, "b"), "silver", "concurrent", "d", d2, d3),
    )
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert_log_intact(s3_lake, "silver", "concurrent")
    assert rows_by(s3_lake, "silver", "concurrent", "writer") == {"a": 2000, "b": 2000}
