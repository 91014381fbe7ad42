"""Bronze assets for the three batch sources: each run lands the files of its partition window
as they are (strings, rescued columns, ingestion columns) and replaces that window in one commit."""

import dagster as dg
from pyspark.sql import functions as F

from lakehouse import settings
from lakehouse.lib import accounting, partitions
from lakehouse.lib.contracts import bronze as contracts
from lakehouse.lib.contracts.evaluate import enforce_schema
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.landing import read_landing, record_count
from lakehouse.lib.spark import SparkEngine


def batch_bronze_asset(source: str, contract: type[contracts.BronzeRow], description: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=source,
        key_prefix="bronze",
        group_name="bronze",
        description=description,
        partitions_def=partitions.daily,
        backfill_policy=partitions.single_run,
        kinds={"spark", "delta"},
        check_specs=[accounting.spec(dg.AssetKey(["bronze", source]))],
    )
    def _bronze(context: dg.AssetExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.MaterializeResult:
        start, end = partitions.window(context)
        columns = contracts.source_columns(contract)
        raw = read_landing(spark.spark_session, settings.landing_dir(), source, columns, start, end)
        rows = raw.withColumn("_ingested_at", F.current_timestamp()).withColumn("_run_id", F.lit(context.run_id))
        metadata = lake.overwrite_window(enforce_schema(contract, rows), "bronze", source, "_partition_date", start, end)
        counts, accounted = accounting.account(f"bronze.{source}", record_count(source, settings.landing_dir(), start, end),
                                               metadata.get("rows_written", 0))
        return dg.MaterializeResult(metadata={**metadata, **counts}, check_results=[accounted])

    return _bronze


crm_customers = batch_bronze_asset(
    "crm_customers", contracts.CrmCustomers,
    "CRM customer records as exported each day (JSON lines), untyped, nothing dropped.",
)
orders = batch_bronze_asset(
    "orders", contracts.Orders, "E-commerce orders as landed each day (CSV), untyped, nothing dropped."
)
fx_rates = batch_bronze_asset(
    "fx_rates", contracts.FxRates, "Daily FX rates to USD as landed (CSV), untyped, nothing dropped."
)
