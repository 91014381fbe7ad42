"""Silver orders: typed, checked, deduplicated on order_id (latest update wins) and converted to USD
with the day's FX rate. A run replaces its window of `order_date` partitions in one commit."""

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse import partitions
from lakehouse.bronze import batch as bronze
from lakehouse.contracts import bronze as bronze_contracts
from lakehouse.contracts import silver as contracts
from lakehouse.contracts.evaluate import enforce_schema
from lakehouse.resources.lake import DeltaLake
from lakehouse.resources.spark import SparkEngine
from lakehouse.silver import silver_asset
from lakehouse.silver import customers as silver_customers
from lakehouse.silver import fx_rates as silver_fx_rates
from lakehouse.silver.rules import Rule, classify, keep_latest, passed, quarantine, quarantine_metadata, rule_counts

AMOUNT = "try_cast(amount AS DECIMAL(18,2))"
RULES = [
    Rule("order_id_not_null", "order_id", "order_id IS NULL OR trim(order_id) = ''", "must be present"),
    Rule("order_ts_is_timestamp", "order_ts", "try_to_timestamp(order_ts) IS NULL", "must be an ISO-8601 timestamp"),
    Rule("amount_is_number", "amount", f"{AMOUNT} IS NULL", "must be a decimal number"),
    Rule("amount_non_negative", "amount", f"{AMOUNT} < 0", "must be >= 0"),
    Rule("customer_exists", "customer_id", "_known_customer IS NULL", "must reference a customer in silver.customers"),
    Rule("fx_rate_available", "currency", "fx_rate_to_usd IS NULL",
         "must have a rate in silver.fx_rates for the order date"),
]
RAW_COLUMNS = bronze_contracts.source_columns(bronze_contracts.Orders) + ["_rescued_data"]


def with_references(rows: DataFrame, customers: DataFrame, fx_rates: DataFrame) -> DataFrame:
    """Attach what the referential rules need: whether the customer is known, and the day's FX rate."""
    known = customers.select("customer_id").distinct().withColumn("_known_customer", F.lit(True))
    rates = fx_rates.select(
        F.col("rate_date").alias("_partition_date"), "currency", F.col("rate_to_usd").alias("fx_rate_to_usd")
    )
    return rows.join(known, "customer_id", "left").join(rates, ["_partition_date", "currency"], "left")


def conform(passed_rows: DataFrame) -> DataFrame:
    typed = passed_rows.select(
        "order_id",
        "customer_id",
        F.expr("try_to_timestamp(order_ts)").alias("order_ts"),
        F.col("_partition_date").alias("order_date"),
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
    )
    return keep_latest(typed, ["order_id"], F.desc("updated_at"))


@silver_asset(deps=[bronze.orders, silver_customers.customers, silver_fx_rates.fx_rates])
def orders(context: dg.AssetExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.MaterializeResult:
    """One row per order with `amount_usd`; bad rows go to silver/orders_quarantine with the rule they broke."""
    start, end = partitions.window(context)
    session = spark.spark_session
    rows = with_references(
        lake.read_window(session, "bronze", "orders", "_partition_date", start, end),
        lake.read(session, "silver", "customers"),
        lake.read_window(session, "silver", "fx_rates", "rate_date", start, end),
    )
    classified = classify(rows, RULES, "silver.orders")
    counts = rule_counts(classified)
    quarantine(lake, classified, RAW_COLUMNS, "orders", start, end)
    clean = enforce_schema(contracts.Orders, conform(passed(classified)))
    metadata = lake.overwrite_window(clean, "silver", "orders", "order_date", start, end)
    duplicates = counts.get("passed", 0) - metadata["rows_written"]
    return dg.MaterializeResult(
        metadata={**metadata, **quarantine_metadata(counts, RULES), "duplicates_removed": duplicates}
    )
