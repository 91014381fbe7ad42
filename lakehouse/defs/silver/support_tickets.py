"""Silver support tickets: the CDC stream applied with MERGE, one row per ticket.

Each change carries a per-ticket sequence number; the highest `seq` wins, whatever order the changes
arrive in (within a batch, across batches, and across ingest-date partitions: a run takes every change
Bronze landed since the newest one Silver has applied). `c` inserts, `u` updates, `d` is a soft delete
(`is_deleted = true`, the ticket's last attributes kept). Re-applying changes already applied is a
no-op. Changes that break a rule go to silver/support_tickets_quarantine with the reason.
"""

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse import policies
from lakehouse.defs.bronze import streaming as bronze
from lakehouse.defs.silver import silver_asset
from lakehouse.defs.silver.sessions import kafka_source, landed_since, newest
from lakehouse.lib import accounting
from lakehouse.lib.contracts import silver as contracts
from lakehouse.lib.contracts.evaluate import enforce_schema
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.rules import (
    Rule,
    classify,
    keep_latest,
    passed,
    quarantined,
    rule_counts,
)
from lakehouse.lib.spark import SparkEngine

TABLE = "support_tickets"
RULES = [
    Rule("message_is_json_object", "_raw", "_parse_error IS NOT NULL", "must be a JSON object"),
    Rule("ticket_id_not_null", "ticket_id", "ticket_id IS NULL", "must be present"),
    Rule("op_is_cdc", "op", "NOT coalesce(op IN ('c', 'u', 'd'), false)", "must be c, u or d"),
    Rule("seq_is_integer", "seq", "try_cast(seq AS INT) IS NULL", "must be an integer"),
]
RECORD_COLUMNS = [*bronze.SUPPORT_TICKETS.columns, "_rescued_data", "_raw", "_parse_error"]
ATTRIBUTES = ["customer_id", "status", "priority", "subject", "_rescued_data"]
ORIGIN = ["kafka_epoch", "kafka_partition", "kafka_offset"]
TICKET_COLUMNS = [f.name for f in contracts.SupportTickets.to_schema().columns.values()]


def typed_changes(valid: DataFrame) -> DataFrame:
    return valid.select(
        "ticket_id",
        F.expr("try_cast(seq AS INT)").alias("seq"),
        "op",
        *ATTRIBUTES,
        F.expr("try_to_timestamp(changed_at)").alias("changed_at"),
        (F.col("op") == "d").alias("is_deleted"),
        *ORIGIN,
        "kafka_timestamp",
        F.col("_ingested_at").alias("_bronze_ingested_at"),
    )


def latest_changes(valid: DataFrame) -> DataFrame:
    """The highest-seq change per ticket (duplicates and superseded changes dropped)."""
    return keep_latest(
        typed_changes(valid), ["ticket_id"], F.desc("seq"), F.col("kafka_timestamp"), F.col("kafka_offset")
    )


_UPDATE = ", ".join(
    [
        f"{c} = s.{c}"
        for c in ["seq", "op", "changed_at", "is_deleted", *ORIGIN, "kafka_timestamp", "_bronze_ingested_at"]
    ]
    + [f"{c} = coalesce(s.{c}, t.{c})" for c in ATTRIBUTES]
)
MERGE_CLAUSES = (
    f"WHEN MATCHED AND s.seq > t.seq THEN UPDATE SET {_UPDATE} "
    f"WHEN NOT MATCHED THEN INSERT ({', '.join(TICKET_COLUMNS)}) VALUES ({', '.join('s.' + c for c in TICKET_COLUMNS)})"
)


# In its Bronze table's pool, which policies.FOLLOWS_STREAM relies on
@silver_asset(
    deps=[bronze.support_ticket_changes], automation_condition=policies.FOLLOWS_STREAM, pool=bronze.SUPPORT_TICKETS.pool
)
def support_tickets(context: dg.AssetExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.MaterializeResult:
    """Current state of every ticket (soft-deleted ones flagged `is_deleted`), by highest change seq."""
    spark_session = spark.spark_session
    snapshot = lake.delta_table("bronze", bronze.SUPPORT_TICKETS.table)
    rows = landed_since(lake, spark_session, bronze.SUPPORT_TICKETS.table, TABLE, newest(snapshot, "_ingested_at"))
    classified = classify(
        rows.withColumn("_partition_date", F.col("_ingest_date")).withColumn("_source_file", kafka_source()),
        RULES,
        "silver.support_tickets",
    )
    counts = rule_counts(classified)
    lake.merge(quarantined(classified, RECORD_COLUMNS), "silver", f"{TABLE}_quarantine", ["_source_file"])
    valid = passed(classified)
    changes = enforce_schema(contracts.SupportTickets, latest_changes(valid).select(TICKET_COLUMNS))
    metadata = lake.merge(changes, "silver", TABLE, ["ticket_id"], MERGE_CLAUSES)
    kept, superseded = accounting.kept_and_superseded(
        typed_changes(valid), lake.read(spark_session, "silver", TABLE), ["ticket_id"], ORIGIN
    )
    counts.pop("passed", None)
    accounted_metadata, accounted = accounting.account(
        "silver.support_tickets", rows.count(), kept, {r.name: counts.get(r.name, 0) for r in RULES}, superseded
    )
    return dg.MaterializeResult(
        metadata={**metadata, **accounted_metadata, "bronze/version": snapshot.version()}, check_results=[accounted]
    )
