"""Silver support tickets: the CDC stream applied with MERGE, one row per ticket.

Each change carries a per-ticket sequence number; the highest `seq` wins, whatever order the changes
arrive in (within a batch and across batches). `c` inserts, `u` updates, `d` is a soft delete
(`is_deleted = true`, the ticket's last attributes kept). Re-applying changes already applied is a no-op.
"""

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse import partitions
from lakehouse.bronze import streaming as bronze
from lakehouse.resources.lake import DeltaLake
from lakehouse.resources.spark import SparkEngine
from lakehouse.silver import silver_asset
from lakehouse.silver.rules import keep_latest

TABLE = "support_tickets"
CHANGE_RULE = ("_parse_error IS NULL AND ticket_id IS NOT NULL AND op IN ('c', 'u', 'd') "
               "AND try_cast(seq AS INT) IS NOT NULL")
ATTRIBUTES = ["customer_id", "status", "priority", "subject", "_rescued_data"]
TICKET_COLUMNS = ["ticket_id", "seq", "op", *ATTRIBUTES, "changed_at", "is_deleted", "kafka_partition",
                  "kafka_offset", "kafka_timestamp"]


def latest_changes(rows: DataFrame) -> DataFrame:
    """The highest-seq valid change per ticket (duplicates and superseded changes dropped)."""
    typed = rows.where(CHANGE_RULE).select(
        "ticket_id", F.expr("try_cast(seq AS INT)").alias("seq"), "op", *ATTRIBUTES,
        F.expr("try_to_timestamp(changed_at)").alias("changed_at"), (F.col("op") == "d").alias("is_deleted"),
        "kafka_partition", "kafka_offset", "kafka_timestamp")
    return keep_latest(typed, ["ticket_id"], F.desc("seq"), F.col("kafka_timestamp"), F.col("kafka_offset"))


_UPDATE = ", ".join(
    [f"{c} = s.{c}" for c in ["seq", "op", "changed_at", "is_deleted", "kafka_partition", "kafka_offset",
                              "kafka_timestamp"]]
    + [f"{c} = coalesce(s.{c}, t.{c})" for c in ATTRIBUTES]
)
MERGE_CLAUSES = (
    f"WHEN MATCHED AND s.seq > t.seq THEN UPDATE SET {_UPDATE} "
    f"WHEN NOT MATCHED THEN INSERT ({', '.join(TICKET_COLUMNS)}) VALUES ({', '.join('s.' + c for c in TICKET_COLUMNS)})"
)


@silver_asset(deps=[bronze.support_ticket_changes], automation_condition=dg.AutomationCondition.eager())
def support_tickets(context: dg.AssetExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.MaterializeResult:
    """Current state of every ticket (soft-deleted ones flagged `is_deleted`), by highest change seq."""
    start, end = partitions.window(context)
    rows = lake.read_window(spark.spark_session, "bronze", bronze.SUPPORT_TICKETS.table, "_ingest_date", start, end)
    changes = latest_changes(rows).select(TICKET_COLUMNS)
    rejected = rows.where(f"NOT coalesce(({CHANGE_RULE}), false)").count()
    metadata = lake.merge(changes, "silver", TABLE, ["ticket_id"], MERGE_CLAUSES)
    return dg.MaterializeResult(metadata={**metadata, "changes_rejected": rejected})
