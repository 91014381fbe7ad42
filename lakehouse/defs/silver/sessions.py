"""Silver sessions: clickstream events grouped per user into sessions split by 30 minutes of inactivity.

A run takes every Bronze event that Silver has not seen yet, whichever ingest-date partition it landed in
(ingested after the newest `_bronze_ingested_at` in Silver: Bronze commits are serialised and stamp
`_ingested_at` in commit order), quarantines the ones that break a rule (silver/sessions_quarantine), finds
the users the valid ones belong to, and re-sessionises the part of those users' (deduplicated) event
history that the new events can change, read from the Bronze partitions that can hold it (the Silver table
property `lakehouse.sessions.latest_event_day` keeps each ingest date's latest event day). The result is
MERGEd: new sessions are inserted, sessions that grew (a late event re-opens them) are updated, and a
session that a late event joined into a larger one is deleted (only when the larger one covers it).
Re-running changes nothing.

Silver sessions is partitioned by `session_date`, so that a run reads and rewrites only the days its new
events can reach, whatever the table's age. A table created unpartitioned (before that) stays so: it is
still right, read whole.
"""

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse import policies
from lakehouse.defs.bronze import streaming as bronze
from lakehouse.defs.silver import silver_asset
from lakehouse.lib import accounting, erasure
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.rules import Rule, classify, keep_latest, quarantined, rule_counts
from lakehouse.lib.spark import SparkEngine

IDLE_GAP_SECONDS = 30 * 60
TABLE = "sessions"
PARTITION = "session_date"
EVENT_TS = "try_to_timestamp(event_ts)"
RULES = [
    Rule("message_is_json_object", "_raw", "_parse_error IS NOT NULL", "must be a JSON object"),
    Rule("event_id_not_null", "event_id", "event_id IS NULL", "must be present"),
    Rule("user_id_not_null", "user_id", "user_id IS NULL", "must be present"),
    Rule("event_ts_is_timestamp", "event_ts", f"{EVENT_TS} IS NULL", "must be an ISO-8601 timestamp"),
]
EVENT_RULE = " AND ".join(f"NOT coalesce({r.violated_when}, false)" for r in RULES)
RECORD_COLUMNS = [*bronze.CLICKSTREAM.columns, "_rescued_data", "_raw", "_parse_error"]


def kafka_source() -> Column:
    """Where a quarantined event came from, as the quarantine table's `_source_file`: its place in Kafka."""
    return F.concat_ws(
        "/", F.lit("kafka:"), "kafka_topic", F.concat(F.lit("epoch"), "kafka_epoch"), "kafka_partition", "kafka_offset"
    )


SESSION_COLUMNS = [
    "session_id",
    "user_id",
    "session_start",
    "session_end",
    "session_date",
    "duration_seconds",
    "page_count",
    "page_views",
    "is_bounce",
    "last_event_received_at",
    "_bronze_ingested_at",
]


def valid_events(rows: DataFrame) -> DataFrame:
    """One row per event_id (re-sent duplicates dropped), typed; malformed and keyless messages left out."""
    events = rows.where(EVENT_RULE).select(
        "event_id",
        "user_id",
        "event_type",
        "page",
        "product_id",
        F.expr(EVENT_TS).alias("event_ts"),
        "kafka_timestamp",
        "kafka_partition",
        "kafka_offset",
        "_ingested_at",
    )
    return keep_latest(events, ["event_id"], F.col("kafka_timestamp"), F.col("kafka_partition"), F.col("kafka_offset"))


def sessionise(events: DataFrame) -> DataFrame:
    """Sessions of each user: a new one starts after more than 30 minutes without an event."""
    by_time = Window.partitionBy("user_id").orderBy("event_ts", "event_id")
    gap = F.col("event_ts").cast("long") - F.lag("event_ts").over(by_time).cast("long")
    numbered = events.withColumn("_new", F.when(gap.isNull() | (gap > IDLE_GAP_SECONDS), 1).otherwise(0)).withColumn(
        "_session", F.sum("_new").over(by_time.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    )
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
        "user_id",
        "session_start",
        "session_end",
        F.to_date("session_start").alias("session_date"),
        (F.col("session_end").cast("long") - F.col("session_start").cast("long")).alias("duration_seconds"),
        F.col("page_count").cast("int").alias("page_count"),
        F.col("page_views").cast("int").alias("page_views"),
        (F.col("page_count") == 1).alias("is_bounce"),
        "last_event_received_at",
        "_bronze_ingested_at",
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
    """The newest value of a timestamp column in a table snapshot, as a UTC literal (read with delta-rs).

    Only the files that can hold it are read: the Delta log's per-file maxima (to the millisecond) say which."""
    stats = pa.table(snapshot.get_add_actions(flatten=True))
    bound = pc.max(stats.column(f"max.{column}")) if f"max.{column}" in stats.column_names else None
    candidates = pc.field(column) >= bound if bound is not None and bound.is_valid else None
    value = pc.max(snapshot.to_pyarrow_dataset().to_table(columns=[column], filter=candidates).column(0)).as_py()
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(sep=" ")  # the session time zone is UTC (resources/spark.py)


def watermark(lake: DeltaLake, table: str = TABLE) -> str | None:
    """The newest Bronze ingestion time the Silver `table` has processed."""
    return newest(lake.delta_table("silver", table), "_bronze_ingested_at") if lake.exists("silver", table) else None


def superseded(existing: DataFrame, recomputed: DataFrame) -> DataFrame:
    """Existing sessions that a recomputed session of the same user now covers (a late event joined them)."""
    gone = existing.join(recomputed.select("session_id"), "session_id", "left_anti").alias("e")
    cover = recomputed.select("user_id", "session_start", "session_end").alias("r")
    covered = gone.join(
        cover,
        (F.col("e.user_id") == F.col("r.user_id"))
        & (F.col("r.session_start") <= F.col("e.session_start"))
        & (F.col("r.session_end") >= F.col("e.session_end")),
        "left_semi",
    )
    return covered.select(*[F.col(f"e.{c}").alias(c) for c in SESSION_COLUMNS])


def new_events(lake: DeltaLake, spark: SparkSession, upto: str) -> DataFrame:
    """Bronze events Silver has not seen, from every ingest-date partition, up to the snapshot `upto`."""
    return landed_since(lake, spark, bronze.CLICKSTREAM.table, TABLE, upto)


def landed_since(lake: DeltaLake, spark: SparkSession, bronze_table: str, silver_table: str, upto: str) -> DataFrame:
    """The rows of streaming `bronze_table` that `silver_table` has not taken yet (landed after its watermark),
    from every ingest-date partition, up to `upto`.

    Bronze is read up to `upto`, the newest ingestion time of one snapshot: a batch that commits while
    this run works waits for the next run, instead of reaching the history read but not this one (its
    other users would never be recomputed). `versionAsOf` would say it too, but Sail 0.7 fails to read a
    version older than the table's last checkpoint."""
    rows = lake.read(spark, "bronze", bronze_table).where(f"_ingested_at <= TIMESTAMP '{upto}'")
    rows = rows.where(erasure.NOT_ERASED)  # a tombstone of an erased customer is not an event
    seen = watermark(lake, silver_table)
    if seen is None:
        return rows
    after = datetime.fromisoformat(seen).replace(tzinfo=UTC)
    days = partitions_reaching(lake.delta_table("bronze", bronze_table), "_ingest_date", "_ingested_at", after)
    if days is not None:
        rows = rows.where(F.col("_ingest_date").isin(days) if days else F.lit(False))
    # A literal, so every use of the plan agrees.
    return rows.where(f"_ingested_at > TIMESTAMP '{seen}'")


def partitions_reaching(snapshot: DeltaTable, partition: str, column: str, since: datetime) -> list[date] | None:
    """The values of `partition` with a file that may hold a `column` value at or after `since` (None: the
    Delta log cannot tell, having no statistics or no such partition column). The engine then reads those,
    not every file: Sail does not skip files by their statistics. The log's maxima are cut to the
    millisecond, hence the margin."""
    actions = pa.table(snapshot.get_add_actions(flatten=True))
    if not {f"max.{column}", f"partition.{partition}"} <= set(actions.column_names):
        return None
    stat = actions.column(f"max.{column}")
    bound = pa.scalar(since - timedelta(milliseconds=1), stat.type)
    later = pc.or_kleene(pc.is_null(stat), pc.greater_equal(stat, bound))  # no statistics: it may
    return sorted(set(actions.filter(later).column(f"partition.{partition}").to_pylist()))


# A Silver table property: {Bronze ingest date: the latest day (days since 1970-01-01, UTC) of an event in it}
LATEST_EVENT_DAYS = "lakehouse.sessions.latest_event_day"


def day_number(timestamp: Column) -> Column:
    """A timestamp's UTC day as days since 1970-01-01: any year compares right, unlike a date's text."""
    return F.datediff(F.to_date(timestamp), F.lit("1970-01-01"))


def stored_event_days(lake: DeltaLake) -> dict[str, int] | None:
    if not lake.exists("silver", TABLE):
        return None
    stored = lake.delta_table("silver", TABLE).metadata().configuration.get(LATEST_EVENT_DAYS)
    return json.loads(stored) if stored else None


def event_days(lake: DeltaLake, spark: SparkSession, new: DataFrame, upto: str) -> dict[str, int]:
    """Per Bronze ingest date, the latest day of an event in it: the stored map with the new events'.

    A table sessionised before the map was kept has it built from all of Bronze, once."""
    stored = stored_event_days(lake)
    if stored is None and lake.exists("silver", TABLE):
        new = lake.read(spark, "bronze", bronze.CLICKSTREAM.table).where(f"_ingested_at <= TIMESTAMP '{upto}'")
    found = (
        new.where(f"{EVENT_TS} IS NOT NULL")
        .groupBy("_ingest_date")
        .agg(F.max(day_number(F.expr(EVENT_TS))).alias("latest"))
        .collect()
    )
    days = dict(stored or {})
    for row in found:
        ingested, latest = row["_ingest_date"].isoformat(), int(row["latest"])
        days[ingested] = max(latest, days.get(ingested, latest))
    return days


def keep_event_days(lake: DeltaLake, days: dict[str, int]) -> None:
    """Store the map on Silver (one commit, when it changed). Before the merge: a run that fails after it
    leaves the map covering events Silver has not taken yet, never short of events it has."""
    if lake.exists("silver", TABLE) and stored_event_days(lake) != days:
        lake.delta_table("silver", TABLE).alter.set_table_properties(
            {LATEST_EVENT_DAYS: json.dumps(days, sort_keys=True)}, raise_if_not_exists=False
        )


def affected_sessions(
    lake: DeltaLake, spark: SparkSession, new: DataFrame, upto: str, event_days: dict[str, int]
) -> tuple[DataFrame, DataFrame | None, DataFrame]:
    """(recomputed sessions of the users with new valid events, those users' existing sessions, their history).

    Only the part of each user's history that new events can change is recomputed (`changes_since`).
    Every session before it ends more than 30 minutes before the first new event, so it stays as it is:
    the cost of a run follows the new events, not the age of the table. That history is read from the
    Bronze partitions whose latest event (`event_days`) is not older than the day the earliest part starts."""
    current = reachable_sessions(lake, spark, new.where(EVENT_RULE)) if lake.exists("silver", TABLE) else None
    since = changes_since(new.where(EVENT_RULE), current)
    earliest = since.agg(F.min(day_number(F.col("_since")))).first()[0]
    ingested = sorted(date.fromisoformat(d) for d, n in event_days.items() if earliest is not None and n >= earliest)
    clicks = (
        lake.read(spark, "bronze", bronze.CLICKSTREAM.table)
        .where(F.col("_ingest_date").isin(ingested) if ingested else F.lit(False))
        .where(f"_ingested_at <= TIMESTAMP '{upto}'")
    )
    history = clicks.join(since, "user_id").where(F.expr(EVENT_TS) >= F.col("_since")).drop("_since")
    recomputed = sessionise(valid_events(history))
    if current is None:
        return recomputed, None, history
    existing = current.join(since, "user_id").where(F.col("session_end") >= F.col("_since")).drop("_since")
    return recomputed, existing, history


def reachable_sessions(lake: DeltaLake, spark: SparkSession, new_events: DataFrame) -> DataFrame:
    """The existing sessions, read from the `session_date` partitions that can hold one the new events may
    grow or merge: one that ends no more than 30 minutes before the first new event, or later."""
    table = lake.read(spark, "silver", TABLE)
    first = new_events.agg(F.min(F.expr(EVENT_TS)).cast("long")).first()[0]  # whole seconds: never later
    if first is None:
        return table.where(F.lit(False))
    since = datetime.fromtimestamp(first - IDLE_GAP_SECONDS, UTC)
    dates = partitions_reaching(lake.delta_table("silver", TABLE), PARTITION, "session_end", since)
    return table if dates is None else table.where(F.col(PARTITION).isin(dates) if dates else F.lit(False))


def changes_since(new_events: DataFrame, current: DataFrame | None) -> DataFrame:
    """(user_id, _since) per user with new events: the start of their earliest existing session that ends
    no more than 30 minutes before their first new event (it may grow or merge), else that event's time."""
    first_new = new_events.groupBy("user_id").agg(F.min(F.expr(EVENT_TS)).alias("_first_new"))
    if current is None:
        return first_new.select("user_id", F.col("_first_new").alias("_since"))
    reopened = current.join(first_new, "user_id").where(
        F.col("session_end").cast("long") >= F.col("_first_new").cast("long") - IDLE_GAP_SECONDS
    )
    earliest = reopened.groupBy("user_id").agg(F.min("session_start").alias("_reopened"))
    return first_new.join(earliest, "user_id", "left").select(
        "user_id", F.least("_first_new", F.coalesce("_reopened", "_first_new")).alias("_since")
    )


def events_added(before: DeltaTable | None, after: DeltaTable) -> int:
    """How many events the sessions gained from snapshot `before` to `after`, read with delta-rs (not from this
    run's plan): the events in the files `after` added, less those in the files it removed (a MERGE rewrites
    only the files it changes, so this costs what the run wrote, not the table's size)."""
    kept, now = data_files(before), data_files(after)
    return events_in(after, now - kept) - (events_in(before, kept - now) if before else 0)


def data_files(snapshot: DeltaTable | None) -> set[str]:
    return set(pa.table(snapshot.get_add_actions()).column("path").to_pylist()) if snapshot else set()


def events_in(snapshot: DeltaTable, files: set[str]) -> int:
    """The sum of `page_count` over some of a snapshot's data files."""
    fragments = [f for f in snapshot.to_pyarrow_dataset().get_fragments() if f.path in files] if files else []
    return sum(pc.sum(f.to_table(columns=["page_count"]).column(0)).as_py() or 0 for f in fragments)


def distinct_events(rows: DataFrame) -> int:
    return rows.where(EVENT_RULE).select("event_id").distinct().count()


# In its Bronze table's pool, which policies.FOLLOWS_STREAM relies on
@silver_asset(
    deps=[bronze.clickstream_events], automation_condition=policies.FOLLOWS_STREAM, pool=bronze.CLICKSTREAM.pool
)
def sessions(context: dg.AssetExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.MaterializeResult:
    """One row per user session (30-minute idle gap): start, end, page count, bounce flag.

    A run takes every event Bronze landed since the last one, in whatever partition: the run's partition
    says when it ran, not which events it may take."""
    spark_session = spark.spark_session
    snapshot = lake.delta_table("bronze", bronze.CLICKSTREAM.table)
    upto, seen = newest(snapshot, "_ingested_at"), watermark(lake)
    new = new_events(lake, spark_session, upto)
    classified = classify(
        new.withColumn("_partition_date", F.col("_ingest_date")).withColumn("_source_file", kafka_source()),
        RULES,
        "silver.sessions",
    )
    counts = rule_counts(classified)
    bad = quarantined(classified, RECORD_COLUMNS)
    lake.merge(bad, "silver", f"{TABLE}_quarantine", ["_source_file"])
    days = event_days(lake, spark_session, new, upto)
    keep_event_days(lake, days)
    recomputed, existing, history = affected_sessions(lake, spark_session, new, upto, days)
    before = lake.delta_table("silver", TABLE) if existing is not None else None
    if existing is None:
        metadata = lake.merge(recomputed, "silver", TABLE, ["session_id"], partition_by=PARTITION)
    else:
        stale = superseded(existing, recomputed)
        source = recomputed.withColumn("_delete", F.lit(False)).unionByName(stale.withColumn("_delete", F.lit(True)))
        # A session's id names its start, so its date: a MERGE needs only the source's dates of the target.
        metadata = lake.merge(source, "silver", TABLE, ["session_id"], MERGE_CLAUSES, pruned_by=PARTITION)
    keep_event_days(lake, days)  # the first run created the table
    # A valid new event is either new to Silver (it is now in a session) or a re-sent copy of one it has.
    earlier = history.where(f"_ingested_at <= TIMESTAMP '{seen}'") if seen else history.limit(0)
    first_seen = distinct_events(history) - distinct_events(earlier)
    passed = counts.pop("passed", 0)
    counts_metadata, accounted = accounting.account(
        "silver.sessions",
        sum(counts.values()) + passed,
        events_added(before, lake.delta_table("silver", TABLE)),
        {r.name: counts.get(r.name, 0) for r in RULES},
        passed - first_seen,
    )
    return dg.MaterializeResult(
        metadata={**metadata, **counts_metadata, "bronze/version": snapshot.version()}, check_results=[accounted]
    )
