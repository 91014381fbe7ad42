"""The Delta table store every asset writes through.

Tables live at `<root>/<layer>/<table>`. Each write is exactly one Delta commit (a partition-window
overwrite with `replaceWhere`, or a SQL `MERGE INTO`), so readers never see half a write. Reads of
table state (version, row counts, commit metrics) go through delta-rs, which needs no engine.
"""

import fcntl
import hashlib
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TypeVar

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from deltalake import DeltaTable
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession

from lakehouse import settings

LAYERS = ("bronze", "silver", "gold")
# Another writer committed the version this write was about to take: Sail (delta-rs) reports it as
# "Failed to commit transaction", delta-spark as Concurrent*Exception; or another writer created the table
# first ("already exists": the first write creates with mode "error", never a blind overwrite). The write is
# re-run against the new snapshot: partition replaces and MERGEs are idempotent, so a retry gives the table
# a serial order would.
COMMIT_CONFLICTS = (
    "Failed to commit transaction",
    "ConcurrentAppend",
    "ConcurrentWrite",
    "ConcurrentDelete",
    "ConcurrentTransaction",
    "MetadataChanged",
    "ProtocolChanged",
    "version already exists",
    "Delta table already exists",
    "A table already exists",  # delta-rs, a write with mode "error"
    "PATH_ALREADY_EXISTS",
    "DELTA_PATH_EXISTS",
)
COMMIT_ATTEMPTS = 5
T = TypeVar("T")


class TableWriteError(Exception):
    """A write that would break the table's contract; nothing was committed."""


class DeltaLake(dg.ConfigurableResource):
    """Delta tables under one root: a local folder, or s3://bucket/prefix."""

    root: str = Field(description="Lake root folder or URI (s3://bucket/prefix)")
    storage_options: dict[str, str] = Field(
        default={}, description="delta-rs storage options; empty = derived from the AWS_* variables for s3:// roots"
    )

    def path(self, layer: str, table: str) -> str:
        return f"{self.root.rstrip('/')}/{layer}/{table}"

    def options(self) -> dict[str, str]:
        return self.storage_options or settings.lake_storage_options(self.root)

    def exists(self, layer: str, table: str) -> bool:
        return DeltaTable.is_deltatable(self.path(layer, table), self.options())

    def erasure_register(self):
        """The register of erased customers (lib/erasure.py), beside the layers."""
        from lakehouse.lib.erasure import Register

        return Register(self.root, self.options())

    def delta_table(self, layer: str, table: str, version: int | None = None) -> DeltaTable:
        return DeltaTable(self.path(layer, table), version=version, storage_options=self.options())

    def read(self, spark: SparkSession, layer: str, table: str) -> DataFrame:
        return spark.read.format("delta").load(self.path(layer, table))

    def read_window(
        self, spark: SparkSession, layer: str, table: str, column: str, start: date, end: date
    ) -> DataFrame:
        return self.read(spark, layer, table).where(window_predicate(column, start, end))

    def overwrite_window(self, df: DataFrame, layer: str, table: str, column: str, start: date, end: date) -> dict:
        """Replace the rows whose `column` lies in [start, end) with `df`, in one commit."""
        return self.overwrite_where(
            df, layer, table, column, window_predicate(column, start, end), f"outside [{start}, {end})"
        )

    def overwrite_days(self, df: DataFrame, layer: str, table: str, column: str, days: list[date]) -> dict:
        """Replace the rows whose `column` is one of `days` with `df`, in one commit."""
        listed = ", ".join(f"'{d.isoformat()}'" for d in sorted(days))
        return self.overwrite_where(df, layer, table, column, f"{column} IN ({listed})", f"not in ({listed})")

    def overwrite_where(self, df: DataFrame, layer: str, table: str, column: str, predicate: str, outside: str) -> dict:
        """Replace the rows matching `predicate` (over the partition column) with `df`, in one commit."""
        # Delta Spark rejects rows outside replaceWhere; Sail writes them, so we check first.
        if df.where(f"NOT ({predicate}) OR {column} IS NULL").limit(1).count():
            raise TableWriteError(f"{layer}.{table}: rows with {column} {outside} would be written; nothing committed")

        def write() -> None:
            writer = df.write.format("delta").partitionBy(column)
            if self.exists(layer, table):
                writer = writer.mode("overwrite").option("replaceWhere", predicate)
            else:  # create; if another writer just did, fail and retry with replaceWhere
                writer = writer.mode("error")
            writer.save(self.path(layer, table))

        retry_on_commit_conflict(write)
        return self.write_metadata(layer, table)

    def merge(
        self,
        df: DataFrame,
        layer: str,
        table: str,
        keys: list[str],
        clauses: str | None = None,
        partition_by: str | None = None,
        pruned_by: str | None = None,
    ) -> dict:
        """Upsert `df` on `keys` with SQL MERGE INTO (created on first write, partitioned by `partition_by`).

        `clauses` replaces the default `WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *`
        for tables that need conditional updates or soft deletes; the source is aliased `s`, the target `t`.
        `pruned_by`, a date partition column that `keys` determine (rows with equal keys have equal dates),
        limits the target to the dates the source has: the MERGE then reads those partitions only.
        """
        on = " AND ".join(f"t.{k} <=> s.{k}" for k in keys)
        clauses = clauses or "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"

        def write() -> None:
            if not self.exists(layer, table):  # create; if another writer just did, fail and retry as a MERGE
                writer = df.write.format("delta").mode("error")
                (writer.partitionBy(partition_by) if partition_by else writer).save(self.path(layer, table))
                return
            with self.staged(df, f"{layer}.{table}") as source:
                view = f"merge_source_{uuid.uuid4().hex}"
                source.createOrReplaceTempView(view)
                within = f" AND {dates_of(source, pruned_by)}" if pruned_by else ""
                try:
                    df.sparkSession.sql(
                        f"MERGE INTO delta.`{self.path(layer, table)}` t USING {view} s ON {on}{within} {clauses}"
                    )
                finally:
                    df.sparkSession.catalog.dropTempView(view)

        retry_on_commit_conflict(write)
        return self.write_metadata(layer, table)

    @contextmanager
    def lock(self, layer: str, table: str) -> Iterator[None]:
        """Serialise a read -> compute -> commit section on one table across the processes of this host.

        Delta's optimistic concurrency does not cover what a writer read: two appends of the same Kafka
        range, or two SCD2 MERGEs each computing validity from a history without the other's versions,
        would both commit. Runs on other hosts are serialised by the asset's Dagster pool instead (and Bronze's
        streaming commit by Delta's conflict check on its offsets, should both fail)."""
        locks = Path(tempfile.gettempdir()) / "lakehouse-locks"
        locks.mkdir(exist_ok=True)
        name = hashlib.sha1(self.path(layer, table).encode()).hexdigest()[:16]
        with open(locks / f"{layer}-{table}-{name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def staged(self, df: DataFrame, name: str) -> Iterator[DataFrame]:
        """`df` computed once into Parquet files under `<root>/_staging`, read back; removed afterwards.

        A MERGE passes over its source several times, and Sail recomputes a lazy source on each pass (`cache()`
        does nothing there): docs/benchmarks.md, "Measurements behind the code"."""
        fs, root = self.filesystem()
        folder = f"_staging/{name}-{uuid.uuid4().hex}"
        uri = f"{self.root.rstrip('/')}/{folder}"
        df.write.parquet(uri)
        if fs.get_file_info(f"{root}/{folder}").type == pafs.FileType.NotFound:  # Sail writes no folder for no rows
            yield df.sparkSession.createDataFrame([], df.schema)
            return
        try:
            yield df.sparkSession.read.parquet(uri)
        finally:
            fs.delete_dir(f"{root}/{folder}")

    def data_files(self, layer: str, table: str, column: str) -> dict[str, str]:
        """{data file: its value of partition `column`} in the current snapshot (read from the Delta log)."""
        actions = pa.table(self.delta_table(layer, table).get_add_actions(flatten=True))
        return dict(
            zip(
                actions.column("path").to_pylist(),
                map(str, actions.column(f"partition.{column}").to_pylist()),
                strict=True,
            )
        )

    def partitions_written(self, layer: str, table: str, column: str, files_before: dict[str, str]) -> set[str]:
        """The values of partition `column` that have files the snapshot `files_before` did not."""
        return {value for path, value in self.data_files(layer, table, column).items() if path not in files_before}

    def window_rows(
        self, layer: str, table: str, column: str | None, start: date, end: date, columns: list[str] | None = None
    ) -> pa.Table:
        """A table's rows in [start, end) of `column` (all rows without one), read with delta-rs: no engine."""
        dataset = self.delta_table(layer, table).to_pyarrow_dataset()
        if column is None:
            return dataset.to_table(columns=columns)
        field = ds.field(column)
        return dataset.to_table(columns=columns, filter=(field >= start) & (field < end))

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
            for name in self.table_names(layer):
                dt = self.delta_table(layer, name)
                found.append(
                    {
                        "layer": layer,
                        "name": name,
                        "rows": table_row_count(dt),
                        "version": dt.version(),
                        "path": self.path(layer, name),
                    }
                )
        return found

    def table_names(self, layer: str) -> list[str]:
        fs, root = self.filesystem()
        entries = fs.get_file_info(pafs.FileSelector(f"{root}/{layer}", allow_not_found=True))
        names = sorted(e.base_name for e in entries if e.type == pafs.FileType.Directory)
        return [n for n in names if self.exists(layer, n)]

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem for the lake (delta-rs's endpoint and credentials), and the root's path in it."""
        root = self.root.rstrip("/")
        if not root.startswith(("s3://", "s3a://")):
            return pafs.FileSystem.from_uri(root)
        o = self.options()
        endpoint = o.get("AWS_ENDPOINT_URL", "")
        fs = pafs.S3FileSystem(
            access_key=o.get("AWS_ACCESS_KEY_ID"),
            secret_key=o.get("AWS_SECRET_ACCESS_KEY"),
            session_token=o.get("AWS_SESSION_TOKEN"),
            region=o.get("AWS_REGION"),
            endpoint_override=endpoint.split("://", 1)[-1] or None,
            scheme=endpoint.split("://", 1)[0] or "https",
        )
        return fs, root.split("://", 1)[1]


def retry_on_commit_conflict(write: Callable[[], T], attempts: int = COMMIT_ATTEMPTS) -> T:
    """Run `write` (one Delta commit); on a commit conflict with a concurrent writer, back off and re-run it."""
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except Exception as error:
            if attempt == attempts or not any(marker in str(error) for marker in COMMIT_CONFLICTS):
                raise
            time.sleep(random.uniform(0.05, 0.3) * attempt)


def dates_of(source: DataFrame, column: str) -> str:
    """`t.<column> IN (<the source's dates>)` as literals: Sail prunes a MERGE's target partitions by a literal
    filter in ON, not by the join with the source."""
    dates = sorted(r[0] for r in source.select(column).distinct().collect() if r[0] is not None)
    listed = ", ".join(f"DATE '{d.isoformat()}'" for d in dates)
    return f"t.{column} IN ({listed})" if dates else "FALSE"


def window_predicate(column: str | None, start: date, end: date) -> str:
    """[start, end) on `column` as SQL that Spark, Postgres and Snowflake all read; TRUE without a column (a table
    rebuilt in full is one window)."""
    if column is None:
        return "TRUE"
    return f"{column} >= '{start.isoformat()}' AND {column} < '{end.isoformat()}'"


def table_row_count(dt: DeltaTable) -> int:
    """Rows in the current snapshot, from the per-file statistics in the Delta log (no data read)."""
    actions = dt.get_add_actions(flatten=True)
    column = actions.column("num_records")
    return int(sum(v for v in column.to_pylist() if v is not None))


def column_schema(dt: DeltaTable) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=f.name, type=f.type.type, constraints=dg.TableColumnConstraints(nullable=f.nullable))
            for f in dt.schema().fields
        ]
    )
