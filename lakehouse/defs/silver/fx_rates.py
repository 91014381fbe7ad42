"""Silver FX rates: typed, one row per (rate_date, currency), upserted so late corrections win."""

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse import catalog
from lakehouse.defs.silver import silver_asset
from lakehouse.lib import accounting, partitions
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
    Rule("rate_date_is_date", "date", "try_cast(`date` AS DATE) IS NULL", "must be a date (YYYY-MM-DD)"),
    Rule(
        "currency_is_iso_code",
        "currency",
        "NOT coalesce(currency RLIKE '^[A-Z]{3}$', false)",
        "must be a 3-letter ISO 4217 code",
    ),
    Rule(
        "rate_is_positive_number",
        "rate_to_usd",
        "NOT coalesce(try_cast(rate_to_usd AS DECIMAL(18,6)) > 0, false)",
        "must be a number > 0",
    ),
]
RAW_COLUMNS = ["date", "currency", "rate_to_usd"]


def typed(passed_rows: DataFrame) -> DataFrame:
    return passed_rows.select(
        F.col("date").cast("date").alias("rate_date"),
        "currency",
        F.col("rate_to_usd").cast("decimal(18,6)").alias("rate_to_usd"),
        "_ingested_at",
        "_source_file",
    )


def conform(passed_rows: DataFrame) -> DataFrame:
    return keep_latest(typed(passed_rows), ["rate_date", "currency"], F.desc("_ingested_at"), F.desc("_source_file"))


@silver_asset(deps=[catalog.table("bronze/fx_rates").key])
def fx_rates(context: dg.AssetExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.MaterializeResult:
    """Daily rate to USD per currency. Upsert (MERGE) on (rate_date, currency)."""
    start, end = partitions.window(context)
    rows = lake.read_window(spark.spark_session, "bronze", "fx_rates", "_partition_date", start, end)
    classified = classify(rows, RULES, "silver.fx_rates")
    counts = rule_counts(classified)
    quarantine(lake, classified, RAW_COLUMNS, "fx_rates", start, end)
    rates = enforce_schema(contracts.FxRates, conform(passed(classified)))
    metadata = lake.merge(rates, "silver", "fx_rates", ["rate_date", "currency"])
    kept, superseded = accounting.kept_and_superseded(
        typed(passed(classified)),
        lake.read(spark.spark_session, "silver", "fx_rates"),
        ["rate_date", "currency"],
        ["_source_file"],
    )
    counts.pop("passed", None)
    accounted_metadata, accounted = accounting.account(
        "silver.fx_rates", rows.count(), kept, {r.name: counts.get(r.name, 0) for r in RULES}, superseded
    )
    return dg.MaterializeResult(metadata={**metadata, **accounted_metadata}, check_results=[accounted])
