"""Concurrent writers on one Delta table. Delta commits are optimistic: two writers racing for the same
table version both write their files, and only one commit file can take the version. Sail (pysail 0.7)
does not retry a lost commit itself ("Failed to commit transaction"), so DeltaLake re-runs the write on the
new snapshot (`retry_on_commit_conflict`). Partition replaces and MERGEs are idempotent, so:

- two runs writing different partitions both succeed and both partitions hold exactly their rows;
- two runs writing the same partition both succeed, one after the other, and the partition holds exactly
  one run's rows (the last commit wins) - never both, never a mix, never a broken log."""

import threading
from collections import Counter
from datetime import date

import dagster as dg
import pyarrow.fs as pafs
import pytest
from deltalake import DeltaTable

from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.spark import SparkEngine
from lakehouse_tests.helpers import (  # noqa: I001
    BRONZE,
    DAY_KEYS,
    day_counts,
    range_tags,
    read_rows,
    rows_by,
    total,
)

DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)


def together(*calls):
    """Run the calls in threads released at the same instant; return their results or exceptions."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        try:
            results[i] = call()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            results[i] = error

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


def assert_log_intact(lake: DeltaLake, layer: str, table: str) -> DeltaTable:
    """Every version loads and every data file it names can be read."""
    dt = lake.delta_table(layer, table)
    for version in range(dt.version() + 1):
        DeltaTable(lake.path(layer, table), version=version, storage_options=lake.options()).to_pyarrow_table()
    return dt


@pytest.fixture
def conc_lake(tmp_path) -> DeltaLake:
    return DeltaLake(root=str(tmp_path / "lake"))


def day_frame(spark, day: date, tag: str, n: int = 2000):
    return spark.range(n).selectExpr("id", f"DATE'{day.isoformat()}' AS d", f"'{tag}' AS writer")


@pytest.mark.parametrize("existing", [False, True], ids=["first-write", "existing-table"])
def test_two_writers_of_different_partitions_both_commit(spark, conc_lake, existing):
    if existing:
        conc_lake.overwrite_window(day_frame(spark, DAY1, "seed", 10), "silver", "t", "d", DAY1, DAY2)
    results = together(
        lambda: conc_lake.overwrite_window(day_frame(spark, DAY1, "a"), "silver", "t", "d", DAY1, DAY2),
        lambda: conc_lake.overwrite_window(day_frame(spark, DAY2, "b"), "silver", "t", "d", DAY2, date(2026, 11, 3)),
    )
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert_log_intact(conc_lake, "silver", "t")
    assert rows_by(conc_lake, "silver", "t", "writer") == {"a": 2000, "b": 2000}
    assert rows_by(conc_lake, "silver", "t", "d") == {DAY1.isoformat(): 2000, DAY2.isoformat(): 2000}


def test_two_writers_of_the_same_partition_leave_exactly_one_of_them(spark, conc_lake):
    conc_lake.overwrite_window(day_frame(spark, DAY1, "seed", 10), "silver", "t", "d", DAY1, DAY2)
    results = together(
        lambda: conc_lake.overwrite_window(day_frame(spark, DAY1, "a", 1500), "silver", "t", "d", DAY1, DAY2),
        lambda: conc_lake.overwrite_window(day_frame(spark, DAY1, "b", 2500), "silver", "t", "d", DAY1, DAY2),
    )
    assert not [r for r in results if isinstance(r, BaseException)], results
    dt = assert_log_intact(conc_lake, "silver", "t")
    assert rows_by(conc_lake, "silver", "t", "writer") in ({"a": 1500}, {"b": 2500})
    assert dt.version() == 2  # seed + both replaces, each its own commit


def test_two_concurrent_merges_on_different_keys_keep_both(spark, conc_lake):
    conc_lake.merge(spark.sql("SELECT 0 AS k, 'seed' AS v"), "silver", "m", ["k"])
    results = together(
        lambda: conc_lake.merge(spark.sql("SELECT id AS k, 'a' AS v FROM range(1, 501)"), "silver", "m", ["k"]),
        lambda: conc_lake.merge(spark.sql("SELECT id AS k, 'b' AS v FROM range(501, 1001)"), "silver", "m", ["k"]),
    )
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert_log_intact(conc_lake, "silver", "m")
    assert rows_by(conc_lake, "silver", "m", "v") == {"seed": 1, "a": 500, "b": 500}
    assert staged_files(conc_lake) == []


def staged_files(lake: DeltaLake) -> list[str]:
    fs, root = lake.filesystem()
    return [i.path for i in fs.get_file_info(pafs.FileSelector(f"{root}/_staging", allow_not_found=True))]


def test_a_merge_source_is_staged_once_and_removed_afterwards_even_when_empty(spark, conc_lake):
    conc_lake.merge(spark.sql("SELECT 0 AS k, 'seed' AS v"), "silver", "m", ["k"])
    conc_lake.merge(spark.sql("SELECT id AS k, 'a' AS v FROM range(0, 3)"), "silver", "m", ["k"])
    conc_lake.merge(spark.sql("SELECT 9 AS k, 'b' AS v WHERE false"), "silver", "m", ["k"])
    assert rows_by(conc_lake, "silver", "m", "v") == {"a": 3}
    assert staged_files(conc_lake) == []


def run_bronze_orders(resources: dict, day: str) -> dg.ExecuteInProcessResult:
    return dg.materialize([BRONZE["orders"]], resources=resources, partition_key=day, raise_on_error=False)


def test_two_dagster_runs_of_different_days_run_at_once_and_both_succeed(manifest, sail_url, conc_lake):
    resources = {"spark": SparkEngine(remote=sail_url), "lake": conc_lake}
    runs = together(
        lambda: run_bronze_orders(resources, DAY_KEYS[0]), lambda: run_bronze_orders(resources, DAY_KEYS[1])
    )
    assert all(isinstance(r, dg.ExecuteInProcessResult) and r.success for r in runs), runs
    assert_log_intact(conc_lake, "bronze", "orders")
    expected = day_counts(manifest, "orders", "records")
    assert rows_by(conc_lake, "bronze", "orders", "_partition_date") == {d: expected[d] for d in DAY_KEYS[:2]}


def test_two_dagster_runs_of_the_same_day_never_double_it(manifest, sail_url, conc_lake):
    resources = {"spark": SparkEngine(remote=sail_url), "lake": conc_lake}
    assert run_bronze_orders(resources, DAY_KEYS[0]).success
    runs = together(
        lambda: run_bronze_orders(resources, DAY_KEYS[0]), lambda: run_bronze_orders(resources, DAY_KEYS[0])
    )
    assert all(isinstance(r, dg.ExecuteInProcessResult) and r.success for r in runs), runs
    assert_log_intact(conc_lake, "bronze", "orders")
    assert rows_by(conc_lake, "bronze", "orders", "_partition_date") == {
        DAY_KEYS[0]: day_counts(manifest, "orders", "records")[DAY_KEYS[0]]
    }
    # the whole day comes from one of the two runs: the last to commit
    assert set(rows_by(conc_lake, "bronze", "orders", "_run_id")) in ({runs[0].run_id}, {runs[1].run_id})


def test_concurrent_scd2_runs_of_silver_customers_leave_one_current_version_per_customer(manifest, sail_url, conc_lake):
    """Three days of silver/customers at once: each MERGE recomputes validity from the history it read, so a
    MERGE that lost the commit race is re-run on the winner's table, never committed over it."""
    from lakehouse.defs.silver import customers

    resources = {"spark": SparkEngine(remote=sail_url), "lake": conc_lake}
    assert dg.materialize(
        [BRONZE["crm_customers"]], resources=resources, tags=range_tags(DAY_KEYS[0], DAY_KEYS[-1])
    ).success
    runs = together(
        *[
            lambda day=day: dg.materialize(
                [customers.customers], resources=resources, partition_key=day, raise_on_error=False
            )
            for day in DAY_KEYS
        ]
    )
    assert all(isinstance(r, dg.ExecuteInProcessResult) and r.success for r in runs), runs
    rows = read_rows(conc_lake, "silver", "customers")
    current = Counter(r["customer_id"] for r in rows if r["is_current"])
    assert set(current.values()) == {1} and len(current) == len({r["customer_id"] for r in rows})
    assert len(rows) == total(manifest, "crm_customers", "records") - total(
        manifest, "crm_customers", "duplicates", "null_keys", "bad_timestamps"
    )
