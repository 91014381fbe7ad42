"""The Delta table store every asset writes through.

Tables live at `<root>/<layer>/<table>`. Each write is exactly one Delta commit (a partition-window
overwrite with `replaceWhere`, or a SQL `MERGE INTO`), so readers never see half a write. Reads of
table state (version, row counts, commit metrics) go through delta-rs, which needs no engine.
"""

import uuid
from datetime import date

import dagster as dg
from deltalake import DeltaTable
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession


LAYERS = ("bronze", "silver", "gold")


class TableWriteError(Exception):
    """A write that would break the table's contract; nothing was committed."""


class DeltaLake(dg.ConfigurableResource):
    """Delta tables under one root: a local folder, or s3://bucket/prefix."""

    root: str = Field(description="Lake root folder or URI (s3://bucket/prefix)")
    storage_options: dict[str, str] = Field(default={}, description="delta-rs storage options")

    def path(self, layer: str, table: str) -> str:
        return f"{self.root.rstrip('/')}/{layer}/{table}"

    def exists(self, layer: str, table: str) -> bool:
        return DeltaTable.is_deltatable(self.path(layer, table), self.storage_options)

    def delta_table(self, layer: str, table: str) -> DeltaTable:
        return DeltaTable(self.path(layer, table), storage_options=self.storage_options)

    def read(self, spark: SparkSession, layer: str, table: str) -> DataFrame:
        return spark.read.format("delta").load(self.path(layer, table))

    def read_window(self, spark: SparkSession, layer: str, table: str, column: str, start: date, end: date) -> DataFrame:
        return self.read(spark, layer, table).where(window_predicate(column, start, end))

    def overwrite_window(
        self, df: DataFrame, layer: str, table: str, column: str, start: date, end: date
    ) -> dict:
        """Replace the rows whose `column` lies in [start, end) with `df`, in one commit."""
        predicate = window_predicate(column, start, end)
        # Delta Spark rejects rows outside replaceWhere; Sail writes them, so we check first.
        outside = df.where(f"NOT ({predicate}) OR {column} IS NULL").limit(1).count()
        if outside:
            raise TableWriteError(
                f"{layer}.{table}: rows with {column} outside [{start}, {end}) would be written; nothing committed"
            )
        writer = df.write.format("delta").mode("overwrite").partitionBy(column)
        if self.exists(layer, table):
            writer = writer.option("replaceWhere", predicate)
        writer.save(self.path(layer, table))
        return self.write_metadata(layer, table)

    def merge(self, df: DataFrame, layer: str, table: str, keys: list[str], clauses: str | None = None) -> dict:
        """Upsert `df` on `keys` with SQL MERGE INTO (created on first write).

        `clauses` replaces the default `WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *`
        for tables that need conditional updates or soft deletes; the source is aliased `s`, the target `t`.
        """
        if not self.exists(layer, table):
            df.write.format("delta").mode("overwrite").save(self.path(layer, table))
            return self.write_metadata(layer, table)
        view = f"merge_source_{uuid.uuid4().hex}"
        df.createOrReplaceTempView(view)
        on = " AND ".join(f"t.{k} <=> s.{k}" for k in keys)
        clauses = clauses or "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
        df.sparkSession.sql(f"MERGE INTO delta.`{self.path(layer, table)}` t USING {view} s ON {on} {clauses}")
        df.sparkSession.catalog.dropTempView(view)
        return self.write_metadata(layer, table)

    def write_metadata(self, layer: str, table: str) -> dict:
        """What the UI shows for a materialisation: the commit's row counts, version, path and schema."""
        dt = self.delta_table(layer, table)
        commit = dt.history(1)[0]
        metrics = commit.get("operationMetrics") or {}
        metadata = {
            "dagster/row_count": table_row_count(dt),
            "dagster/uri": dg.MetadataValue.path(self.path(layer, table)),
            "delta/schema": column_schema(dt),  # as written; the UI's column schema is the contract's
            "delta/version": dt.version(),
            "delta/operation": commit.get("operation", ""),
        }
        counts = {
            "rows_written": metrics.get("numOutputRows"),
            "rows_inserted": metrics.get("numTargetRowsInserted"),
            "rows_updated": metrics.get("numTargetRowsUpdated"),
            "rows_deleted": metrics.get("numTargetRowsDeleted"),
        }
        metadata.update({k: int(v) for k, v in counts.items() if v is not None})
        return metadata

    def tables(self) -> list[dict]:
        """Every Delta table in the lake, read with delta-rs (no engine needed)."""
        found = []
        for layer in LAYERS:
            for name in self._table_names(layer):
                dt = self.delta_table(layer, name)
                found.append(
                    {"layer": layer, "name": name, "rows": table_row_count(dt), "version": dt.version(),
                     "path": self.path(layer, name)}
                )
        return found

    def _table_names(self, layer: str) -> list[str]:
        import pyarrow.fs as pafs

        fs, base = pafs.FileSystem.from_uri(self.path(layer, "_"))
        base = base.rsplit("/", 1)[0]
        entries = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        names = sorted(e.base_name for e in entries if e.type == pafs.FileType.Directory)
        return [n for n in names if self.exists(layer, n)]


def window_predicate(column: str, start: date, end: date) -> str:
    return f"{column} >= '{start.isoformat()}' AND {column} < '{end.isoformat()}'"


def table_row_count(dt: DeltaTable) -> int:
    """Rows in the current snapshot, from the per-file statistics in the Delta log (no data read)."""
    actions = dt.get_add_actions(flatten=True)
    column = actions.column("num_records")
    return int(sum(v for v in column.to_pylist() if v is not None))


def column_schema(dt: DeltaTable) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=f.name, type=f.type.type, constraints=dg.TableColumnConstraints(nullable=f.nullable))
                 for f in dt.schema().fields]
    )
