"""Bronze assets for the batch sources (the catalog's `landing` tables): each run lands the files of its
partition window as they are (strings, rescued columns, ingestion columns) and replaces that window in one commit.
Rows of customers in the erasure register are not landed (counted as `rows_erased`)."""

import sys

import dagster as dg
from pyspark.sql import functions as F

from lakehouse import catalog, settings
from lakehouse.lib import accounting, partitions
from lakehouse.lib.contracts import bronze as contracts
from lakehouse.lib.contracts.evaluate import enforce_schema
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.landing import erased_records, read_landing, record_count
from lakehouse.lib.spark import SparkEngine


def batch_bronze_asset(table: catalog.Table) -> dg.AssetsDefinition:
    source = table.name

    @dg.asset(
        key=table.key,
        group_name="bronze",
        code_version=catalog.code_version(sys.modules[__name__], table.contract),
        description=table.description,
        partitions_def=partitions.daily,
        backfill_policy=partitions.single_run,
        kinds={"spark", "delta"},
        check_specs=[accounting.spec(table.key)],
    )
    def _bronze(context: dg.AssetExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.MaterializeResult:
        start, end = partitions.window(context)
        columns = contracts.source_columns(table.contract)
        erased = lake.erasure_register().hashes()
        raw = read_landing(spark.spark_session, settings.landing_dir(), source, columns, start, end, erased)
        rows = raw.withColumn("_ingested_at", F.current_timestamp()).withColumn("_run_id", F.lit(context.run_id))
        metadata = lake.overwrite_window(
            enforce_schema(table.contract, rows), "bronze", source, "_partition_date", start, end
        )
        landed = record_count(source, settings.landing_dir(), start, end)
        not_landed = erased_records(source, settings.landing_dir(), start, end, erased)
        counts, accounted = accounting.account(
            f"bronze.{source}", landed, metadata.get("rows_written", 0), erased=not_landed
        )
        return dg.MaterializeResult(metadata={**metadata, **counts}, check_results=[accounted])

    return _bronze


BATCH_BRONZE = [batch_bronze_asset(table) for table in catalog.landed()]
