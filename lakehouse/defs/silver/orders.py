"""Silver orders: one row per order_id across all days, the latest update winning whichever day's file
brought it, typed, checked and converted to USD with the FX rate of the order's own date.

`order_date` is the date of `order_ts`, not the landing day: an update that lands days later replaces
the order in its own partition. A run lands the Bronze rows of its window and recomputes each order they
touch from every Bronze version of it (any day), so days run in any order, re-run, or as one range give
the table a full recompute would. The result is MERGEd on order_id in one commit (an order can move
between partitions, and an order whose only valid version is gone is deleted)."""

from datetime import date

import dagster as dg
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import catalog
from lakehouse.defs.silver import silver_asset
from lakehouse.lib import accounting, partitions
from lakehouse.lib.contracts import bronze as bronze_contracts
from lakehouse.lib.contracts import silver as contracts
from lakehouse.lib.contracts.evaluate import enforce_schema
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.landing import days_in
from lakehouse.lib.rules import (
    Rule,
    classify,
    keep_latest,
    passed,
    quarantined,
    rule_counts,
)
from lakehouse.lib.spark import SparkEngine

AMOUNT = "try_cast(amount AS DECIMAL(18,2))"
RULES = [
    Rule("order_id_not_null", "order_id", "order_id IS NULL OR trim(order_id) = ''", "must be present"),
    Rule("order_ts_is_timestamp", "order_ts", "try_to_timestamp(order_ts) IS NULL", "must be an ISO-8601 timestamp"),
    Rule("amount_is_number", "amount", f"{AMOUNT} IS NULL", "must be a decimal number"),
    Rule("amount_non_negative", "amount", f"{AMOUNT} < 0", "must be >= 0"),
    Rule("customer_exists", "customer_id", "_known_customer IS NULL", "must reference a customer in silver.customers"),
    Rule(
        "fx_rate_available",
        "currency",
        "fx_rate_to_usd IS NULL",
        "must have a rate in silver.fx_rates for the order date",
    ),
]
REFERENTIAL_RULES = ("customer_exists", "fx_rate_available")  # broken by data that may land later
RAW_COLUMNS = bronze_contracts.source_columns(bronze_contracts.Orders) + ["_rescued_data"]
ORDER_DATE = "to_date(try_to_timestamp(order_ts))"
ORDER_COLUMNS = [f.name for f in contracts.Orders.to_schema().columns.values()]


def with_references(rows: DataFrame, customers: DataFrame, fx_rates: DataFrame) -> DataFrame:
    """Attach what the referential rules need: whether the customer is known, and the order date's FX rate."""
    known = customers.select("customer_id").distinct().withColumn("_known_customer", F.lit(True))
    rates = fx_rates.select(
        F.col("rate_date").alias("_order_date"), "currency", F.col("rate_to_usd").alias("fx_rate_to_usd")
    )
    return (
        rows.withColumn("_order_date", F.expr(ORDER_DATE))
        .join(known, "customer_id", "left")
        .join(rates, ["_order_date", "currency"], "left")
    )


def conform(passed_rows: DataFrame) -> DataFrame:
    typed = passed_rows.select(
        "order_id",
        "customer_id",
        F.expr("try_to_timestamp(order_ts)").alias("order_ts"),
        F.col("_order_date").alias("order_date"),
        "product_id",
        "category",
        F.expr("try_cast(quantity AS INT)").alias("quantity"),
        F.expr(AMOUNT).alias("amount"),
        "currency",
        "fx_rate_to_usd",
        F.round(F.expr(AMOUNT) * F.col("fx_rate_to_usd"), 2).cast("decimal(18,2)").alias("amount_usd"),
        "status",
        F.expr("try_to_timestamp(updated_at)").alias("updated_at"),
        "_rescued_data",
        "_source_file",
        "_partition_date",
    )
    # The latest update wins; between equal ones, the first landing (a re-sent copy changes nothing).
    latest = keep_latest(
        typed, ["order_id"], F.desc_nulls_last("updated_at"), F.asc("_partition_date"), F.asc("_source_file")
    )
    return latest.drop("_partition_date")


_SET = ", ".join(f"{c} = s.{c}" for c in ORDER_COLUMNS)
# Only orders that changed are rewritten, so the partitions a run writes are the order dates it changed.
_CHANGED = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in ORDER_COLUMNS)
MERGE_CLAUSES = (
    "WHEN MATCHED AND s._delete THEN DELETE "
    f"WHEN MATCHED AND NOT s._delete AND ({_CHANGED}) THEN UPDATE SET {_SET} "
    f"WHEN NOT MATCHED AND NOT s._delete THEN INSERT ({', '.join(ORDER_COLUMNS)}) "
    f"VALUES ({', '.join('s.' + c for c in ORDER_COLUMNS)})"
)


def recomputed(window_ids: DataFrame, candidates: DataFrame, existing: DataFrame | None) -> DataFrame:
    """The orders the window touches, from `candidates` (every Bronze version of them, with references),
    as a MERGE source: the winners, and a `_delete` row for each order that no longer has a valid version."""
    winners = enforce_schema(contracts.Orders, conform(passed(classify(candidates, RULES, "silver.orders"))))
    if existing is None:
        return winners
    gone = existing.join(window_ids, "order_id", "left_semi").join(winners.select("order_id"), "order_id", "left_anti")
    return winners.withColumn("_delete", F.lit(False)).unionByName(
        gone.select(*ORDER_COLUMNS).withColumn("_delete", F.lit(True))
    )


def days_to_run(
    lake: DeltaLake, spark: SparkSession, start: date, end: date, customers: DataFrame, fx_rates: DataFrame
) -> list[date]:
    """The window's landing days, and the days with orders parked for a customer or FX rate that has
    landed since (in any day's file): those days run again, so the table does not depend on the order
    the days were run in. An order whose customer never lands stays parked and costs nothing."""
    days = set(days_in(start, end))
    if lake.exists("silver", "orders_quarantine"):
        parked = lake.read(spark, "silver", "orders_quarantine").where(F.col("_rule").isin(*REFERENTIAL_RULES))
        record = lambda field: F.get_json_object("_record", f"$.{field}")  # noqa: E731
        customer_known = parked.where("_rule = 'customer_exists'").join(
            customers.select("customer_id"), record("customer_id") == F.col("customer_id"), "left_semi"
        )
        rate_known = parked.where("_rule = 'fx_rate_available'").join(
            fx_rates.select("rate_date", F.col("currency").alias("_currency")),
            (F.to_date(F.expr("try_to_timestamp(get_json_object(_record, '$.order_ts'))")) == F.col("rate_date"))
            & (record("currency") == F.col("_currency")),
            "left_semi",
        )
        retried = customer_known.unionByName(rate_known).select("_partition_date").distinct().collect()
        days |= {r["_partition_date"] for r in retried}
    return sorted(days)


@silver_asset(deps=[catalog.table(t).key for t in ("bronze/orders", "silver/customers", "silver/fx_rates")])
def orders(context: dg.AssetExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.MaterializeResult:
    """One row per order with `amount_usd`; bad rows go to silver/orders_quarantine with the rule they broke."""
    start, end = partitions.window(context)
    spark_session = spark.spark_session
    customers = lake.read(spark_session, "silver", "customers")
    fx_rates = lake.read(spark_session, "silver", "fx_rates")
    landed = lake.read(spark_session, "bronze", "orders")
    days = days_to_run(lake, spark_session, start, end, customers, fx_rates)
    rows = with_references(landed.where(F.col("_partition_date").isin(*days)), customers, fx_rates)
    classified = classify(rows, RULES, "silver.orders")
    counts = rule_counts(classified)
    lake.overwrite_days(quarantined(classified, RAW_COLUMNS), "silver", "orders_quarantine", "_partition_date", days)
    existing = lake.read(spark_session, "silver", "orders") if lake.exists("silver", "orders") else None
    # The orders to recompute: those the days' files mention, and those a file of these days used to supply.
    touched = rows.select("order_id")
    if existing is not None:
        files = rows.select("_source_file").distinct()
        touched = touched.unionByName(existing.join(files, "_source_file", "left_semi").select("order_id"))
    files_before = lake.data_files("silver", "orders", "order_date") if existing is not None else {}
    with lake.staged(touched.distinct(), "silver.orders-touched") as ids:
        # The versions of the touched orders first, then their references: the engine does not push the
        # semi-join below the joins, and the other way round joined all of Bronze's history every run.
        versions = landed.join(ids, "order_id", "left_semi")
        source = recomputed(ids, with_references(versions, customers, fx_rates), existing)
        metadata = (
            lake.merge(source, "silver", "orders", ["order_id"], partition_by="order_date")
            if existing is None
            else lake.merge(source, "silver", "orders", ["order_id"], MERGE_CLAUSES)
        )
    # An update that lands after its order's day changes that day's partition: say so, so that Dagster
    # marks what depends on it (Gold) stale for that day too.
    for day in sorted(
        lake.partitions_written("silver", "orders", "order_date", files_before)
        - {d.isoformat() for d in days_in(start, end)}
    ):
        context.log_event(
            dg.AssetMaterialization(
                catalog.table("silver/orders").key,
                partition=day,
                metadata={
                    "changed_by": dg.MetadataValue.text(f"the run of [{start}, {end}): later versions of its orders")
                },
            )
        )
    kept, superseded = accounting.kept_and_superseded(
        passed(classified), lake.read(spark_session, "silver", "orders"), ["order_id"], ["_source_file"]
    )
    counts.pop("passed", None)
    accounting_metadata, accounted = accounting.account(
        "silver.orders", rows.count(), kept, {r.name: counts.get(r.name, 0) for r in RULES}, superseded
    )
    return dg.MaterializeResult(
        metadata={
            **metadata,
            **accounting_metadata,
            "landing_days": dg.MetadataValue.json([d.isoformat() for d in days]),
        },
        check_results=[accounted],
    )
