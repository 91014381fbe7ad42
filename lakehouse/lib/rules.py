"""Row rules for Silver: each row is checked against an ordered list of rules and either passes or
is quarantined with the first rule it breaks, the column, a readable reason and its original record."""

from dataclasses import dataclass
from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.lib.lake import DeltaLake

QUARANTINE_COLUMNS = ["_partition_date", "_rule", "_column", "_reason", "_record", "_source_file", "_quarantined_at"]


@dataclass(frozen=True)
class Rule:
    name: str
    column: str
    violated_when: str  # a Spark SQL predicate over the row, true when the rule is broken
    description: str


def _first_failing(rules: list[Rule], value) -> F.Column:
    """CASE WHEN rule1 broken THEN value(rule1) WHEN rule2 broken ... END (NULL when none is broken)."""
    expr = None
    for rule in rules:
        broken, result = F.expr(f"coalesce({rule.violated_when}, false)"), F.lit(value(rule))
        expr = F.when(broken, result) if expr is None else expr.when(broken, result)
    return expr


def classify(df: DataFrame, rules: list[Rule], table: str) -> DataFrame:
    """Add `_rule`, `_column` and `_reason` (null when the row passes every rule)."""
    return (
        df.withColumn("_rule", _first_failing(rules, lambda r: r.name))
        .withColumn("_column", _first_failing(rules, lambda r: r.column))
        .withColumn("_reason", _first_failing(rules, lambda r: f"{table}.{r.column} breaks {r.name}: {r.description}"))
    )


def passed(classified: DataFrame) -> DataFrame:
    return classified.where("_rule IS NULL").drop("_rule", "_column", "_reason")


def quarantined(classified: DataFrame, record_columns: list[str]) -> DataFrame:
    """The broken rows in the quarantine table's shape, original values kept as JSON."""
    return classified.where("_rule IS NOT NULL").select(
        "_partition_date",
        "_rule",
        "_column",
        "_reason",
        F.to_json(F.struct(*record_columns)).alias("_record"),
        "_source_file",
        F.current_timestamp().alias("_quarantined_at"),
    )


def rule_counts(classified: DataFrame) -> dict[str, int]:
    """Rows per outcome in one pass: {'passed': n, '<rule>': n, ...}."""
    rows = classified.groupBy("_rule").count().collect()
    return {(r["_rule"] or "passed"): r["count"] for r in rows}


def keep_latest(df: DataFrame, keys: list[str], *order_by: Column) -> DataFrame:
    """One row per key: the first by `order_by` (e.g. F.desc("updated_at"))."""
    w = Window.partitionBy(*keys).orderBy(*order_by)
    return df.withColumn("_rank", F.row_number().over(w)).where("_rank = 1").drop("_rank")


def quarantine(
    lake: DeltaLake, classified: DataFrame, record_columns: list[str], table: str, start: date, end: date
) -> None:
    """Replace the window's rows of `<table>_quarantine` with the rows that broke a rule."""
    lake.overwrite_window(
        quarantined(classified, record_columns), "silver", f"{table}_quarantine", "_partition_date", start, end
    )
