"""One contract, three uses: the column schema the UI shows, the schema gate inside an asset, and
the rule-by-rule verdict of an asset check (with failing-row counts and sample keys)."""

from dataclasses import dataclass

import dagster as dg
from pandera.api.checks import Check
from pandera.config import ValidationDepth, config_context
from pandera.pyspark import DataFrameModel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

SAMPLE_SIZE = 5


class ContractError(Exception):
    """Data that does not have the contract's shape; nothing was written."""


@dataclass(frozen=True)
class Violation:
    rule: str  # a pandera check ("greater_than_or_equal_to(0)", "not_nullable", ...) or "unique_key"
    column: str
    rows: int  # failing rows; -1 for a schema-level failure (wrong type, missing column)
    sample_keys: tuple[str, ...] = ()

    def describe(self, table: str) -> str:
        rows = "the column" if self.rows < 0 else f"{self.rows} row(s)"
        sample = f", e.g. {', '.join(self.sample_keys)}" if self.sample_keys else ""
        return f"{table}.{self.column} breaks {self.rule}: {rows}{sample}"


def table_name(model: type[DataFrameModel]) -> str:
    return model.Config.name


def key_columns(model: type[DataFrameModel]) -> list[str]:
    return model.Config.metadata["key"]


def sample_columns(model: type[DataFrameModel]) -> list[str]:
    """Columns that identify a row in a sample of offenders: the key, or the contract's `id`."""
    return model.Config.metadata.get("id") or key_columns(model)


def window_column(model: type[DataFrameModel]) -> str | None:
    """The column a run's partition window filters on (None: the check covers the whole table)."""
    return model.Config.metadata["window"]


def column_schema(model: type[DataFrameModel]) -> dg.TableSchema:
    """The contract as Dagster table-schema metadata: types, nullability, rules and descriptions."""
    keys = key_columns(model)
    columns = [
        dg.TableColumn(
            name=name,
            type=column.dtype.type.simpleString(),
            description=column.description,
            constraints=dg.TableColumnConstraints(
                nullable=column.nullable, unique=keys == [name], other=[check.error for check in column.checks]
            ),
        )
        for name, column in model.to_schema().columns.items()
    ]
    constraints = dg.TableConstraints(other=[f"unique key: ({', '.join(keys)})"] if keys else [])
    return dg.TableSchema(columns=columns, constraints=constraints)


def column_sources(model: type[DataFrameModel], reads: str) -> dict[str, list[tuple[str, str]]]:
    """Each column's upstream (table, column) pairs: those its Field's `computed_from` names ("column" of the
    table it `reads`, "layer/table.column" of another), else the column of the same name in `reads`."""

    def source(ref: str) -> tuple[str, str]:
        table, _, column = ref.rpartition(".")
        return table or reads, column

    return {
        name: [source(ref) for ref in (column.metadata or {}).get("from", [name])]
        for name, column in model.to_schema().columns.items()
    }


def enforce_schema(model: type[DataFrameModel], df: DataFrame) -> DataFrame:
    """Raise before writing if `df` lacks a contract column, has an undeclared one or a wrong type.

    Validates a zero-row frame of the same schema: pandera analyses the plan once per column, which is slow
    on a real plan (joins, window dedupe; docs/benchmarks.md, "Measurements behind the code")."""
    twin = df.sparkSession.createDataFrame([], df.schema)
    with config_context(validation_depth=ValidationDepth.SCHEMA_ONLY):
        errors = model.validate(twin).pandera.errors
    if errors:
        found = [f"{e['column']}: {e['error']}" for kinds in errors.values() for items in kinds.values() for e in items]
        raise ContractError(f"{table_name(model)} does not match its contract; nothing written: {'; '.join(found)}")
    return df


# Spark predicates that are true for a value failing the pandera check of the same name.
_FAILS = {
    "greater_than_or_equal_to": lambda c, s: c < s["min_value"],
    "greater_than": lambda c, s: c <= s["min_value"],
    "less_than_or_equal_to": lambda c, s: c > s["max_value"],
    "less_than": lambda c, s: c >= s["max_value"],
    "in_range": lambda c, s: ~c.between(s["min_value"], s["max_value"]),
    "isin": lambda c, s: ~c.isin(list(s["allowed_values"])),
    "notin": lambda c, s: c.isin(list(s["forbidden_values"])),
    "str_matches": lambda c, s: ~c.rlike(s["pattern"]),
}


def failing(check: Check, column: str) -> Column:
    if check.name not in _FAILS:
        raise NotImplementedError(f"no row-level predicate for pandera check {check.name}")
    return F.coalesce(_FAILS[check.name](F.col(column), check.statistics), F.lit(False))


def violations(model: type[DataFrameModel], df: DataFrame) -> list[Violation]:
    """Every contract rule `df` breaks: pandera's verdict, then the failing rows and sample keys of each."""
    schema, keys = model.to_schema(), sample_columns(model)
    found = []
    for kinds in model.validate(df).pandera.errors.values():
        for kind, errors in kinds.items():
            for error in errors:
                column, rule = error["column"], error["check"]
                if kind == "SERIES_CONTAINS_NULLS":
                    found.append(sample(df, F.col(column).isNull(), "not_nullable", column, keys))
                elif kind == "DATAFRAME_CHECK":
                    check = next(c for c in schema.columns[column].checks if c.error == rule)
                    found.append(sample(df, failing(check, column), rule, column, keys))
                else:  # wrong type, missing or undeclared column: the whole column is at fault
                    found.append(Violation(rule, str(column), -1))
    if key_columns(model):
        found += duplicate_keys(df, key_columns(model))
    return found


def sample(df: DataFrame, predicate: Column, rule: str, column: str, keys: list[str]) -> Violation:
    bad = df.where(predicate)
    key = F.concat_ws("|", *[F.coalesce(F.col(k).cast("string"), F.lit("<null>")) for k in keys])
    rows = bad.select(key.alias("k")).limit(SAMPLE_SIZE).collect()
    return Violation(rule, column, bad.count(), tuple(r["k"] for r in rows))


def duplicate_keys(df: DataFrame, keys: list[str]) -> list[Violation]:
    dupes = df.groupBy(*keys).count().where("count > 1")
    rows = dupes.count()
    if not rows:
        return []
    sample_rows = dupes.select(F.concat_ws("|", *[F.col(k).cast("string") for k in keys]).alias("k")).limit(SAMPLE_SIZE)
    return [Violation("unique_key", ", ".join(keys), rows, tuple(r["k"] for r in sample_rows.collect()))]
