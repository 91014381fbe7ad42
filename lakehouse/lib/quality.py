"""Partition-aware asset checks. Each reads the partition window its run wrote and reports numbers
(so their history plots in the UI). Blocking checks stop downstream assets in the same run when they
fail with ERROR: bad data does not flow on. Thresholds live here, in one place."""

from datetime import date, timedelta

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse import catalog
from lakehouse.lib import partitions
from lakehouse.lib.contracts.evaluate import table_name, violations
from lakehouse.lib.lake import DeltaLake, window_predicate
from lakehouse.lib.spark import SparkEngine

VOLUME_TOLERANCE = 0.5  # a day's rows may differ from the trailing mean by 50% before we warn
VOLUME_TRAILING_DAYS = 7
QUARANTINE_WARN_SHARE = 0.10  # more than 10% of a window's rows quarantined is worth a look


def key(asset: str) -> dg.AssetKey:
    return dg.AssetKey.from_user_string(asset)


def layer_and_table(asset: str) -> tuple[str, str]:
    layer, table = asset.split("/")
    return layer, table


def window_rows(spark, lake: DeltaLake, asset: str, start: date, end: date) -> DataFrame:
    table = catalog.table(asset)
    rows = lake.read(spark, table.layer, table.name)
    return rows.where(window_predicate(table.window, start, end)) if table.window else rows


def contract_check(asset: str) -> dg.AssetChecksDefinition:
    model = catalog.table(asset).contract

    @dg.asset_check(
        asset=key(asset),
        name="contract",
        blocking=True,
        partitions_def=partitions.daily,
        description=f"{table_name(model)} keeps its pandera contract: types, nulls, ranges, unique key.",
    )
    def _contract(context: dg.AssetCheckExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.AssetCheckResult:
        start, end = partitions.check_window(context)
        rows = window_rows(spark.spark_session, lake, asset, start, end)
        found = violations(model, rows)
        return dg.AssetCheckResult(
            passed=not found,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(v.describe(table_name(model)) for v in found) or None,
            metadata={
                "rows_checked": rows.count(),
                "failing_rows": sum(max(v.rows, 0) for v in found),
                "rules_broken": len(found),
                **{f"{v.column}.{v.rule}": v.rows for v in found},
                **(
                    {"sample_keys": dg.MetadataValue.json({v.rule: list(v.sample_keys) for v in found})}
                    if found
                    else {}
                ),
            },
        )

    return _contract


def volume_check(asset: str, date_column: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=key(asset),
        name="volume_anomaly",
        partitions_def=partitions.daily,
        description=f"Rows per day within {VOLUME_TOLERANCE:.0%} of the trailing {VOLUME_TRAILING_DAYS}-day mean.",
    )
    def _volume(context: dg.AssetCheckExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.AssetCheckResult:
        start, end = partitions.check_window(context)
        layer, table = layer_and_table(asset)
        history_start = start - timedelta(days=VOLUME_TRAILING_DAYS)
        per_day = dict(
            lake.read(spark.spark_session, layer, table)
            .where(window_predicate(date_column, history_start, end))
            .groupBy(date_column)
            .count()
            .collect()
        )
        trailing = [per_day[d] for d in per_day if d < start]
        mean = sum(trailing) / len(trailing) if trailing else None
        window = {d.isoformat(): n for d, n in sorted(per_day.items()) if d >= start}
        outliers = {d: n for d, n in window.items() if mean and abs(n - mean) > VOLUME_TOLERANCE * mean}
        return dg.AssetCheckResult(
            passed=not outliers,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"{len(outliers)} day(s) off the trailing mean of {mean:.0f} rows: {outliers}"
                if outliers
                else None
                if mean
                else "no trailing history yet: nothing to compare"
            ),
            metadata={
                "rows_per_day_min": min(window.values(), default=0),
                "rows_per_day_max": max(window.values(), default=0),
                "trailing_mean": round(mean or 0, 1),
                "days_off": len(outliers),
            },
        )

    return _volume


def quarantine_share_check(asset: str, bronze_asset: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=key(asset),
        name="quarantine_share",
        partitions_def=partitions.daily,
        additional_deps=[key(bronze_asset)],
        description=f"At most {QUARANTINE_WARN_SHARE:.0%} of the landed rows quarantined.",
    )
    def _share(context: dg.AssetCheckExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.AssetCheckResult:
        start, end = partitions.check_window(context)
        _, table = layer_and_table(asset)
        session, predicate = spark.spark_session, window_predicate("_partition_date", start, end)
        landed = lake.read(session, *layer_and_table(bronze_asset)).where(predicate).count()
        quarantined = lake.read(session, "silver", f"{table}_quarantine").where(predicate)
        by_rule = dict(quarantined.groupBy("_rule").count().collect())
        share = sum(by_rule.values()) / landed if landed else 0.0
        return dg.AssetCheckResult(
            passed=share <= QUARANTINE_WARN_SHARE,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{share:.1%} of {landed} landed rows quarantined",
            metadata={
                "quarantine_share": round(share, 4),
                "rows_landed": landed,
                "rows_quarantined": sum(by_rule.values()),
                **{f"quarantined/{r}": n for r, n in by_rule.items()},
            },
        )

    return _share


def schema_drift_check(asset: str) -> dg.AssetChecksDefinition:
    model = catalog.table(asset).contract

    @dg.asset_check(
        asset=key(asset),
        name="schema_drift",
        partitions_def=partitions.daily,
        description="The source sent exactly the contract's columns: none unknown (rescued), none missing.",
    )
    def _drift(context: dg.AssetCheckExecutionContext, spark: SparkEngine, lake: DeltaLake) -> dg.AssetCheckResult:
        start, end = partitions.check_window(context)
        rows = window_rows(spark.spark_session, lake, asset, start, end)
        source = [c for c in model.to_schema().columns if not c.startswith("_")]
        present = rows.select(*[F.count(c).alias(c) for c in source], F.count("_rescued_data").alias("_rescued"))
        counts = present.first().asDict()
        rescued = counts.pop("_rescued")
        missing = sorted(c for c, n in counts.items() if n == 0) if rows.limit(1).count() else []
        # A rescued JSON line with a key twice is an object too: its contract keys are not unknown columns.
        unknown = sorted(
            r["key"]
            for r in rows.where("_rescued_data LIKE '{%'")
            .select(F.explode(F.json_object_keys("_rescued_data")).alias("key"))
            .distinct()
            .collect()
            if r["key"] not in source
        )
        return dg.AssetCheckResult(
            passed=not (unknown or missing),
            severity=dg.AssetCheckSeverity.WARN,
            description=f"unknown columns (kept in _rescued_data): {unknown}; missing columns: {missing}",
            metadata={
                "rows_with_rescued_data": rescued,
                "unknown_columns": dg.MetadataValue.json(unknown),
                "missing_columns": dg.MetadataValue.json(missing),
            },
        )

    return _drift


def customers_exist_check() -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=key("silver/orders"),
        name="customers_exist",
        blocking=True,
        partitions_def=partitions.daily,
        additional_deps=[key("silver/customers")],
        description="Referential integrity: every order's customer_id is in silver.customers.",
    )
    def _customers_exist(context: dg.AssetCheckExecutionContext, spark: SparkEngine, lake: DeltaLake):
        start, end = partitions.check_window(context)
        session = spark.spark_session
        orders = lake.read(session, "silver", "orders").where(window_predicate("order_date", start, end))
        orphans = orders.join(lake.read(session, "silver", "customers"), "customer_id", "left_anti")
        sample = [r["order_id"] for r in orphans.select("order_id").limit(5).collect()]
        count = orphans.count()
        return dg.AssetCheckResult(
            passed=count == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"silver.orders.customer_id breaks customers_exist: {count} row(s), e.g. {sample}"
            if count
            else None,
            metadata={"orphan_orders": count, "orders_checked": orders.count()},
        )

    return _customers_exist


def one_current_version_check() -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=key("silver/customers"),
        name="one_current_version",
        blocking=True,
        partitions_def=partitions.daily,
        description="SCD2: exactly one current version per customer.",
    )
    def _one_current(context: dg.AssetCheckExecutionContext, spark: SparkEngine, lake: DeltaLake):
        customers = lake.read(spark.spark_session, "silver", "customers")
        wrong = customers.groupBy("customer_id").agg(F.sum(F.col("is_current").cast("int")).alias("n")).where("n != 1")
        sample = [r["customer_id"] for r in wrong.limit(5).collect()]
        count = wrong.count()
        return dg.AssetCheckResult(
            passed=count == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"silver.customers.is_current breaks one_current_version: {count} customer(s), e.g. {sample}"
            if count
            else None,
            metadata={"customers_not_exactly_one_current": count},
        )

    return _one_current


CHECKS = {
    "schema_drift": lambda t: schema_drift_check(t.path),
    "volume": lambda t: volume_check(t.path, t.window),
    "quarantine_share": lambda t: quarantine_share_check(t.path, t.reads),
    "customers_exist": lambda t: customers_exist_check(),
    "one_current_version": lambda t: one_current_version_check(),
}


def quality_checks() -> list[dg.AssetChecksDefinition]:
    """Every table's contract check, and the checks its catalog declaration names."""
    tables = catalog.all_tables()
    return [*(contract_check(t.path) for t in tables), *(CHECKS[name](t) for t in tables for name in t.checks)]
