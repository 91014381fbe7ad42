"""Silver customers as a type-2 slowly changing dimension.

Each valid CRM record is a version of a customer, effective from its `updated_at`. A run takes the
versions landed in its window plus the versions Silver already holds for the same customers, and
recomputes `valid_to` / `is_current` from the full, time-ordered history. So late-arriving updates
slot into history instead of becoming current, and re-running a day changes nothing.
"""

import dagster as dg
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse import catalog
from lakehouse.defs.silver import silver_asset
from lakehouse.lib import accounting, partitions
from lakehouse.lib.contracts import bronze as bronze_contracts
from lakehouse.lib.contracts import silver as contracts
from lakehouse.lib.contracts.evaluate import enforce_schema
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.rules import (
    Rule,
    classify,
    keep_latest,
    passed,
    quarantine,
    rule_counts,
)
from lakehouse.lib.spark import SparkEngine

RULES = [
    Rule("customer_id_not_null", "customer_id", "customer_id IS NULL OR trim(customer_id) = ''", "must be present"),
    Rule(
        "updated_at_is_timestamp", "updated_at", "try_to_timestamp(updated_at) IS NULL", "must be an ISO-8601 timestamp"
    ),
]
RAW_COLUMNS = bronze_contracts.source_columns(bronze_contracts.CrmCustomers) + ["_rescued_data"]
ATTRIBUTES = ["email", "phone", "first_name", "last_name", "country", "signup_date", "_rescued_data", "_source_file"]
VERSION_COLUMNS = ["customer_id", "updated_at", *ATTRIBUTES]
SCD2_COLUMNS = [*VERSION_COLUMNS, "valid_from", "valid_to", "is_current"]


def versions(passed_rows: DataFrame) -> DataFrame:
    """Typed customer versions, one per (customer_id, updated_at)."""
    typed = passed_rows.withColumn("updated_at", F.expr("try_to_timestamp(updated_at)")).withColumn(
        "signup_date", F.expr("try_cast(signup_date AS DATE)")
    )
    return keep_latest(typed, ["customer_id", "updated_at"], F.desc("_ingested_at")).select(VERSION_COLUMNS)


def scd2(new_versions: DataFrame, existing: DataFrame | None) -> DataFrame:
    """All versions of the customers touched by `new_versions`, with validity recomputed."""
    history = new_versions.withColumn("_is_new", F.lit(1))
    if existing is not None:
        prior = existing.join(new_versions.select("customer_id").distinct(), "customer_id", "left_semi")
        history = history.unionByName(prior.select(VERSION_COLUMNS).withColumn("_is_new", F.lit(0)))
    history = keep_latest(history, ["customer_id", "updated_at"], F.desc("_is_new")).drop("_is_new")
    by_time = Window.partitionBy("customer_id").orderBy("updated_at")
    return (
        history.withColumn("valid_from", F.col("updated_at"))
        .withColumn("valid_to", F.lead("updated_at").over(by_time))
        .withColumn("is_current", F.col("valid_to").isNull())
        .select(SCD2_COLUMNS)
    )


# Only touch rows whose validity or attributes actually changed, so a re-run rewrites nothing.
_CHANGED = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in ["valid_to", "is_current", *ATTRIBUTES])
MERGE_CLAUSES = f"WHEN MATCHED AND ({_CHANGED}) THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"


@silver_asset(deps=[catalog.table("bronze/crm_customers").key], pool="silver_customers")
def customers(context: dg.AssetExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.MaterializeResult:
    """Customer history (SCD2): valid_from, valid_to, is_current; exactly one current row per customer."""
    start, end = partitions.window(context)
    spark_session = spark.spark_session
    rows = lake.read_window(spark_session, "bronze", "crm_customers", "_partition_date", start, end)
    classified = classify(rows, RULES, "silver.customers")
    counts = rule_counts(classified)
    quarantine(lake, classified, RAW_COLUMNS, "customers", start, end)
    landed = versions(passed(classified))
    # One SCD2 MERGE at a time (the pool, across hosts): each recomputes validity from the history it read.
    with lake.lock("silver", "customers"):
        existing = lake.read(spark_session, "silver", "customers") if lake.exists("silver", "customers") else None
        history = enforce_schema(contracts.Customers, scd2(landed, existing))
        metadata = lake.merge(history, "silver", "customers", ["customer_id", "valid_from"], MERGE_CLAUSES)
    # Late updates are versions older than the export day they arrived in; they join history, not "current".
    late = passed(classified).where("to_date(try_to_timestamp(updated_at)) < _partition_date").count()
    valid = passed(classified).withColumn("updated_at", F.expr("try_to_timestamp(updated_at)"))
    kept, superseded = accounting.kept_and_superseded(
        valid, lake.read(spark_session, "silver", "customers"), ["customer_id", "updated_at"], ["_source_file"]
    )
    counts.pop("passed", None)
    accounted_metadata, accounted = accounting.account(
        "silver.customers", rows.count(), kept, {r.name: counts.get(r.name, 0) for r in RULES}, superseded
    )
    return dg.MaterializeResult(
        metadata={**metadata, **accounted_metadata, "late_updates": late}, check_results=[accounted]
    )
