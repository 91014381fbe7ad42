"""Re-running a partition leaves every table's rows as they were, and a rejected write commits
nothing. These tests write, so they use a lake of their own over the shared landing files."""

from datetime import date

import pytest
from pyspark.sql import functions as F

from lakehouse.lib.lake import DeltaLake, TableWriteError
from lakehouse.lib.spark import SparkEngine
from lakehouse_tests.helpers import DAY_KEYS, materialize, read_rows

VOLATILE = {"_ingested_at", "_run_id", "_quarantined_at"}  # when and by which run, not what


def snapshot(lake: DeltaLake) -> dict[str, list]:
    tables = {}
    for table in lake.tables():
        rows = read_rows(lake, table["layer"], table["name"])
        tables[f"{table['layer']}.{table['name']}"] = sorted(
            repr(sorted((k, v) for k, v in row.items() if k not in VOLATILE)) for row in rows
        )
    return tables


@pytest.fixture(scope="module")
def own_lake(manifest, sail_url, tmp_path_factory):
    lake = DeltaLake(root=str(tmp_path_factory.mktemp("idempotence") / "lake"))
    resources = {"spark": SparkEngine(remote=sail_url), "lake": lake}
    assert materialize(resources, DAY_KEYS[0], DAY_KEYS[-1]).success
    return lake, resources


def test_rematerialising_a_day_keeps_every_tables_rows_and_adds_a_version(own_lake):
    lake, resources = own_lake
    before, versions = snapshot(lake), {t["name"]: t["version"] for t in lake.tables()}
    assert materialize(resources, DAY_KEYS[1], DAY_KEYS[1]).success
    assert snapshot(lake) == before
    # Window overwrites always commit; a MERGE that matches no changed row (customers, orders) commits nothing.
    expected = {name: 0 if name in ("customers", "orders") else 1 for name in versions}
    assert {t["name"]: t["version"] - versions[t["name"]] for t in lake.tables()} == expected


def test_rematerialising_the_whole_range_keeps_every_tables_rows(own_lake):
    lake, resources = own_lake
    before = snapshot(lake)
    assert materialize(resources, DAY_KEYS[0], DAY_KEYS[-1]).success
    assert snapshot(lake) == before


def test_rerun_of_scd2_updates_no_customer(own_lake):
    _, resources = own_lake
    result = materialize(resources, DAY_KEYS[2], DAY_KEYS[2], selection="silver/customers")
    [event] = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata.get("rows_updated", 0) == 0 and metadata.get("rows_inserted", 0) == 0


def test_rows_outside_the_partition_window_are_rejected_and_nothing_is_committed(own_lake, spark):
    lake, _ = own_lake
    version = lake.delta_table("silver", "orders").version()
    rows = lake.read(spark, "silver", "orders").where(F.col("order_date") == DAY_KEYS[0])
    with pytest.raises(
        TableWriteError, match=r"silver\.orders: rows with order_date outside \[2026-11-02, 2026-11-03\)"
    ):
        lake.overwrite_window(rows, "silver", "orders", "order_date", date(2026, 11, 2), date(2026, 11, 3))
    assert lake.delta_table("silver", "orders").version() == version
