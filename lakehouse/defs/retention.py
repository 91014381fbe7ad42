"""Retention with delta-rs (no Spark engine needed): days older than a table's retention period expire.

The periods are in lakehouse/policies.py (`RETENTION` per layer, `RETENTION_OVERRIDES` per table; None keeps a
table forever). `retention` is a job (one op) with a daily schedule. For every table with a window column (the
catalog's Bronze and Silver tables and their quarantine tables, the Gold marts with a dbt `partition_by`) it
deletes the rows whose window day is before `as_of - period`, in ONE delta-rs commit (DELETE) per table, and
commits nothing for a table with nothing to expire. Each table's outcome is an AssetObservation on its asset (rows
and days removed, the cutoff, the run); the op's output metadata sums it up.

- A streaming Bronze table keeps the newest row of each Kafka partition (per topic and epoch), however old:
  Bronze's next offset is the one after it (defs/bronze/streaming.py), so without it the partition would be
  landed again from whatever Kafka still holds.
- A batch source's landing files for the days its Bronze table expires are deleted as well, after the commit:
  left there, the landing sensor (or a backfill) would bring the expired days back, and the raw copy would stay.
- The deleted rows' files stay on storage until `maintenance` vacuums them (168 hours by default): until then a
  restore to the version before the DELETE brings the days back.
- Dagster keeps listing an expired day as materialised (its event log is the record of what ran): the
  observation names the expired days.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from lakehouse import catalog, policies, settings
from lakehouse.lib.lake import DeltaLake, retry_on_commit_conflict

KAFKA_PARTITION = ["kafka_topic", "kafka_epoch", "kafka_partition"]
KAFKA_POSITION = [*KAFKA_PARTITION, "kafka_offset"]


class RetentionError(Exception):
    """A retention run that cannot do what it was asked; nothing of the table was deleted."""


@dataclass
class Expiry:
    """What retention removed from one table (in a dry run: what it would remove)."""

    table: str
    column: str
    period: timedelta
    cutoff: date  # days before it expire
    days: list[str] = field(default_factory=list)  # the window days (partition keys) that lost rows
    rows: int = 0
    kept_as_kafka_progress: int = 0  # rows older than the cutoff kept as their Kafka partition's newest
    landing_files: list[str] = field(default_factory=list)
    version: int | None = None  # the DELETE commit; None: nothing committed

    def metadata(self, dry_run: bool) -> dict:
        return {
            "rows_removed": self.rows,
            "partitions_removed": len(self.days),
            "expired_partitions": dg.MetadataValue.json(self.days),
            "window_column": self.column,
            "retention_days": self.period.days,
            "cutoff": dg.MetadataValue.text(self.cutoff.isoformat()),
            "rows_kept_as_kafka_progress": self.kept_as_kafka_progress,
            "landing_files_removed": dg.MetadataValue.json(self.landing_files),
            "dry_run": dry_run,
            **({"delta/version": self.version} if self.version is not None else {}),
        }


def windowed_tables() -> dict[str, str]:
    """{layer/table: window column} of every table that has one: the catalog's and the Gold marts'."""
    declared = {t.path: t.window for t in catalog.all_tables()} | {m.path: m.window for m in catalog.marts().values()}
    return {path: column for path, column in declared.items() if column}


def selected(windowed: dict[str, str], names: list[str]) -> dict[str, str]:
    unknown = sorted(set(names) - set(windowed))
    if unknown:
        raise RetentionError(
            f"retention: {', '.join(unknown)} has no window column to expire days by; "
            f"tables with one: {', '.join(sorted(windowed))}"
        )
    return {n: windowed[n] for n in names} if names else windowed


def sql_literal(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'" if isinstance(value, str) else str(value)


def delete_predicate(column: str, cutoff: date, keep: list[dict]) -> str:
    """The rows of days before `cutoff`, except the rows at the Kafka positions `keep`."""
    older = f"{column} < '{cutoff.isoformat()}'"
    if not keep:
        return older
    kept = " OR ".join("(" + " AND ".join(f"{c} = {sql_literal(r[c])}" for c in KAFKA_POSITION) + ")" for r in keep)
    return f"{older} AND NOT ({kept})"


def expired_rows(dt: DeltaTable, table: str, column: str, cutoff: date) -> pa.Table:
    """The window column (and, in a streaming Bronze table, the Kafka position) of the rows before `cutoff`."""
    names = [f.name for f in dt.schema().fields]
    if column not in names:
        raise RetentionError(
            f"{table}: window column {column!r} is not in the table (columns: {', '.join(names)}); nothing deleted"
        )
    kafka = KAFKA_POSITION if set(KAFKA_POSITION) <= set(names) else []
    return dt.to_pyarrow_dataset().to_table(columns=[column, *kafka], filter=ds.field(column) < cutoff)


def kafka_progress(dt: DeltaTable, expired: pa.Table) -> pa.Table:
    """The expired rows that are their Kafka partition's newest in the table (Bronze's next offset follows them)."""
    if "kafka_offset" not in expired.column_names:
        return expired.slice(0, 0)
    newest = (
        dt.to_pyarrow_dataset()
        .to_table(columns=KAFKA_POSITION)
        .group_by(KAFKA_PARTITION)
        .aggregate([("kafka_offset", "max")])
        .rename_columns([*KAFKA_PARTITION, "kafka_offset"])
    )
    return expired.join(newest, KAFKA_POSITION, join_type="inner")


def day_counts(rows: pa.Table, column: str) -> dict[str, int]:
    counts = pc.value_counts(rows.column(column)).to_pylist() if rows.num_rows else []
    return {str(c["values"]): c["counts"] for c in counts}


def expire(dt_factory, table: str, column: str, period: timedelta, as_of: date, dry_run: bool = False) -> Expiry:
    """Delete `table`'s rows whose `column` is before `as_of - period`, in one commit (none if nothing expires).
    `dt_factory()` opens the table afresh, so a retried DELETE (a concurrent writer committed first) works on
    the new snapshot."""
    cutoff = as_of - period
    dt = dt_factory()
    expired = expired_rows(dt, table, column, cutoff)
    keep = kafka_progress(dt, expired)
    days = day_counts(expired, column)
    for day, kept in day_counts(keep, column).items():
        days[day] -= kept
    report = Expiry(table, column, period, cutoff, sorted(d for d, n in days.items() if n > 0), sum(days.values()))
    report.kept_as_kafka_progress = keep.num_rows
    if report.rows == 0 or dry_run:
        return report
    predicate = delete_predicate(column, cutoff, keep.select(KAFKA_POSITION).to_pylist() if keep.num_rows else [])

    def delete() -> None:
        target = dt_factory()
        report.rows = int(target.delete(predicate)["num_deleted_rows"])
        report.version = target.version()

    retry_on_commit_conflict(delete)
    return report


def expired_landing_files(landing_dir: Path, source: str, file_format: str, cutoff: date) -> list[Path]:
    """A batch source's landing files of days before `cutoff`; files not named `<day>.<ext>` are no day's: kept."""
    found = []
    for path in sorted((landing_dir / source).glob(f"*.{file_format}")):
        try:
            day = date.fromisoformat(path.stem)
        except ValueError:
            continue
        if day < cutoff:
            found.append(path)
    return found


def expire_landing(source: catalog.Table, cutoff: date, dry_run: bool) -> list[str]:
    """Delete (in a dry run, only list) a batch source's landing files of the days before `cutoff`."""
    files = expired_landing_files(settings.landing_dir(), source.name, source.landing, cutoff)
    for path in [] if dry_run else files:
        path.unlink()
    return [f"{source.name}/{p.name}" for p in files]


def parse_as_of(value: str | None) -> date:
    if not value:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise RetentionError(f"retention: as_of {value!r} is not a date (YYYY-MM-DD)") from None


class RetentionConfig(dg.Config):
    as_of: str | None = None  # YYYY-MM-DD; None = today (UTC). A table keeps the days from as_of - period on
    tables: list[str] = []  # "layer/table"; empty = every table with a window column
    dry_run: bool = False  # report what would expire, delete nothing
    landing: bool = True  # also delete the landing files of the days a batch source's Bronze table expires


@dg.op(description="Delete the days older than each table's retention period, one delta-rs commit per table.")
def expire_partitions(context: dg.OpExecutionContext, config: RetentionConfig, lake: DeltaLake) -> dg.Output:
    as_of = parse_as_of(config.as_of)
    landing = {t.path: t for t in catalog.landed()}
    totals = {"tables": 0, "tables_with_expired_rows": 0, "rows_removed": 0, "partitions_removed": 0}
    totals |= {"landing_files_removed": 0, "as_of": as_of.isoformat(), "dry_run": config.dry_run}
    for table, column in selected(windowed_tables(), config.tables).items():
        period = policies.retention(table)
        layer, name = table.split("/", 1)
        if period is None or not lake.exists(layer, name):
            context.log.info(f"{table}: {'kept forever' if period is None else 'no Delta table yet'}, skipped")
            continue
        report = expire(
            lambda layer=layer, name=name: lake.delta_table(layer, name), table, column, period, as_of, config.dry_run
        )
        if config.landing and table in landing:
            report.landing_files = expire_landing(landing[table], report.cutoff, config.dry_run)
        context.log_event(
            dg.AssetObservation(
                asset_key=dg.AssetKey([layer, name]),
                metadata={**report.metadata(config.dry_run), "retention/run": dg.MetadataValue.text(context.run_id)},
            )
        )
        verb = "would go" if config.dry_run else "removed"
        context.log.info(f"{table}: {report.rows} row(s) of {len(report.days)} day(s) before {report.cutoff} {verb}")
        totals["tables"] += 1
        totals["tables_with_expired_rows"] += int(report.rows > 0)
        totals["rows_removed"] += report.rows
        totals["partitions_removed"] += len(report.days)
        totals["landing_files_removed"] += len(report.landing_files)
    return dg.Output(None, metadata=totals)


@dg.job(
    description="Retention (delta-rs): delete each table's days older than its period (lakehouse/policies.py).",
    tags={"lakehouse/kind": "retention"},
)
def retention():
    expire_partitions()


# Daily at 01:30 UTC: before Gold's nightly build (02:00) and maintenance (03:00), so compaction does not rewrite
# rows that expire the same night. The tick's own date is `as_of`, so a late tick expires what its day would.
@dg.schedule(
    name="retention_daily",
    job=retention,
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",
    description="Expire the days older than each table's retention period.",
)
def retention_daily(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = (context.scheduled_execution_time or datetime.now(UTC)).date().isoformat()
    return dg.RunRequest(run_key=day, run_config={"ops": {"expire_partitions": {"config": {"as_of": day}}}})
