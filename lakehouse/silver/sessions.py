"""Silver sessions: clickstream events grouped per user into sessions split by 30 minutes of inactivity.

A run takes the Bronze events of its window that Silver has not seen yet (ingested after the newest
`_bronze_ingested_at` in Silver: Bronze commits are serialised, so ingestion time follows commit
order), finds the users they belong to, and re-sessionises the part of those users' (deduplicated)
event history that the new events can change. The result is MERGEd: new sessions are inserted, sessions that grew (a late event re-opens
them) are updated, and a session that a late event joined into a larger one is deleted (only when the
larger one covers it). Re-running a window changes nothing.
"""

from datetime import timezone

import dagster as dg
import pyarrow.compute as pc
from deltalake import DeltaTable
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse import partitions
from lakehouse.bronze import streaming as bronze
from lakehouse.resources.lake import DeltaLake, window_predicate
from lakehouse.resources.spark import SparkEngine
from lakehouse.silver import silver_asset
from lakehouse.silver.rules import keep_latest

IDLE_GAP_SECONDS = 30 * 60
TABLE = "sessions"
EVENT_TS = "try_to_timestamp(event_ts)"
EVENT_RULE = f"_parse_error IS NULL AND event_id IS NOT NULL AND user_id IS NOT NULL AND {EVENT_TS} IS NOT NULL"
SESSION_COLUMNS = ["session_id", "user_id", "session_start", "session_end", "session_date", "duration_seconds",
                   "page_count", "page_views", "is_bounce", "last_event_received_at", "_bronze_ingested_at"]


def valid_events(rows: DataFrame) -> DataFrame:
    """One row per event_id (re-sent duplicates dropped), typed; malformed and keyless messages left out."""
    events = rows.where(EVENT_RULE).select(
        "event_id", "user_id", "event_type", "page", "product_id", F.expr(EVENT_TS).alias("event_ts"),
        "kafka_timestamp", "kafka_partition", "kafka_offset", "_ingested_at")
    return keep_latest(events, ["event_id"], F.col("kafka_timestamp"), F.col("kafka_partition"), F.col("kafka_offset"))


def sessionise(events: DataFrame) -> DataFrame:
    """Sessions of each user: a new one starts after more than 30 minutes without an event."""
    by_time = Window.partitionBy("user_id").orderBy("event_ts", "event_id")
    gap = F.col("event_ts").cast("long") - F.lag("event_ts").over(by_time).cast("long")
    numbered = events.withColumn("_new", F.when(gap.isNull() | (gap > IDLE_GAP_SECONDS), 1).otherwise(0)).withColumn(
        "_session", F.sum("_new").over(by_time.rowsBetween(Window.unboundedPreceding, Window.currentRow)))
    sessions = numbered.groupBy("user_id", "_session").agg(
        F.min("event_ts").alias("session_start"),
        F.max("event_ts").alias("session_end"),
        F.count("*").alias("page_count"),
        F.sum(F.when(F.col("event_type") == "page_view", 1).otherwise(0)).alias("page_views"),
        F.max("kafka_timestamp").alias("last_event_received_at"),
        F.max("_ingested_at").alias("_bronze_ingested_at"),
    )
    return sessions.select(
        F.concat_ws("-", "user_id", F.date_format("session_start", "yyyyMMdd'T'HHmmss")).alias("session_id"),
        "user_id", "session_start", "session_end", F.to_date("session_start").alias("session_date"),
        (F.col("session_end").cast("long") - F.col("session_start").cast("long")).alias("duration_seconds"),
        F.col("page_count").cast("int").alias("page_count"), F.col("page_views").cast("int").alias("page_views"),
        (F.col("page_count") == 1).alias("is_bounce"), "last_event_received_at", "_bronze_ingested_at",
    )


_CHANGED = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in SESSION_COLUMNS[1:])
_SET = ", ".join(f"{c} = s.{c}" for c in SESSION_COLUMNS)
MERGE_CLAUSES = (
    f"WHEN MATCHED AND s._delete THEN DELETE "
    f"WHEN MATCHED AND NOT s._delete AND ({_CHANGED}) THEN UPDATE SET {_SET} "
    f"WHEN NOT MATCHED AND NOT s._delete THEN INSERT ({', '.join(SESSION_COLUMNS)}) "
    f"VALUES ({', '.join('s.' + c for c in SESSION_COLUMNS)})"
)


def newest(snapshot: DeltaTable, column: str) -> str | None:
    """The newest value of a timestamp column in a table snapshot, as a UTC literal (read with delta-rs)."""
    value = pc.max(snapshot.to_pyarrow_table(columns=[column]).column(0)).as_py()
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(sep=" ")  # the session time zone is UTC (resources/spark.py)


def watermark(lake: DeltaLake) -> str | None:
    """The newest Bronze ingestion time Silver has processed."""
    return newest(lake.delta_table("silver", TABLE), "_bronze_ingested_at") if lake.exists("silver", TABLE) else None


def superseded(existing: DataFrame, recomputed: DataFrame) -> DataFrame:
    """Existing sessions that a recomputed session of the same user now covers (a late event joined them)."""
    gone = existing.join(recomputed.select("session_id"), "session_id", "left_anti").alias("e")
    cover = recomputed.select("user_id", "session_start", "session_end").alias("r")
    covered = gone.join(cover, (F.col("e.user_id") == F.col("r.user_id"))
                        & (F.col("r.session_start") <= F.col("e.session_start"))
                        & (F.col("r.session_end") >= F.col("e.session_end")), "left_semi")
    return covered.select(*[F.col(f"e.{c}").alias(c) for c in SESSION_COLUMNS])


def affected_sessions(lake: DeltaLake, session, start, end, upto: str) -> tuple[DataFrame, DataFrame | None]:
    """(recomputed sessions of the users with new events in the window, those users' existing sessions).

    Only the part of each user's history that new events can change is recomputed (`changes_since`).
    Every session before it ends more than 30 minutes before the first new event, so it stays as it is:
    the cost of a run follows the new events, not the age of the table.

    Bronze is read up to `upto`, the newest ingestion time of one snapshot: a batch that commits while
    this run works waits for the next run, instead of reaching the history read but not the window read
    (its other users would never be recomputed). Bronze stamps `_ingested_at` inside its commit lock, so
    the bound is exactly that snapshot (`versionAsOf` would say it too, but Sail 0.7 fails to read a
    version older than the table's last checkpoint)."""
    clicks = lake.read(session, "bronze", bronze.CLICKSTREAM.table).where(f"_ingested_at <= TIMESTAMP '{upto}'")
    window_rows = clicks.where(window_predicate("_ingest_date", start, end))
    current = lake.read(session, "silver", TABLE) if lake.exists("silver", TABLE) else None
    seen = watermark(lake)
    if seen is not None:  # only what Silver has not seen; a literal, so every use of the plan agrees
        window_rows = window_rows.where(f"_ingested_at > TIMESTAMP '{seen}'")
    since = changes_since(window_rows.where(EVENT_RULE), current)
    history = clicks.join(since, "user_id").where(F.expr(EVENT_TS) >= F.col("_since")).drop("_since")
    recomputed = sessionise(valid_events(history))
    if current is None:
        return recomputed, None
    existing = current.join(since, "user_id").where(F.col("session_end") >= F.col("_since")).drop("_since")
    return recomputed, existing


def changes_since(new_events: DataFrame, current: DataFrame | None) -> DataFrame:
    """(user_id, _since) per user with new events: the start of their earliest existing session that ends
    no more than 30 minutes before their first new event (it may grow or merge), else that event's time."""
    first_new = new_events.groupBy("user_id").agg(F.min(F.expr(EVENT_TS)).alias("_first_new"))
    if current is None:
        return first_new.select("user_id", F.col("_first_new").alias("_since"))
    reopened = current.join(first_new, "user_id").where(
        F.col("session_end").cast("long") >= F.col("_first_new").cast("long") - IDLE_GAP_SECONDS)
    earliest = reopened.groupBy("user_id").agg(F.min("session_start").alias("_reopened"))
    return first_new.join(earliest, "user_id", "left").select(
        "user_id", F.least("_first_new", F.coalesce("_reopened", "_first_new")).alias("_since"))


@silver_asset(deps=[bronze.clickstream_events], automation_condition=dg.AutomationCondition.eager())
def sessions(context: dg.AssetExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.MaterializeResult:
    """One row per user session (30-minute idle gap): start, end, page count, bounce flag."""
    start, end = partitions.window(context)
    session = spark.spark_session
    snapshot = lake.delta_table("bronze", bronze.CLICKSTREAM.table)
    recomputed, existing = affected_sessions(lake, session, start, end, newest(snapshot, "_ingested_at"))
    if existing is None:
        metadata = lake.merge(recomputed, "silver", TABLE, ["session_id"])
    else:
        stale = superseded(existing, recomputed)
        source = recomputed.withColumn("_delete", F.lit(False)).unionByName(stale.withColumn("_delete", F.lit(True)))
        metadata = lake.merge(source, "silver", TABLE, ["session_id"], MERGE_CLAUSES)
    return dg.MaterializeResult(metadata={**metadata, "bronze/version": snapshot.version()})
