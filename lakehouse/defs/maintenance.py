"""Table maintenance with delta-rs (no Spark engine needed): compaction, z-order, vacuum.

- compaction (`optimize.compact`) rewrites the small files a partition has collected (streaming
  micro-batches, daily replaces, MERGE rewrites) into files of about `target_size_mb`, one commit per table;
- z-order (`optimize.z_order`) clusters rows on the columns queries filter on (the catalog's `zorder`), so file
  statistics prune more; it rewrites the whole table, so it is off unless the run config asks for it
  (the weekly schedule does);
- vacuum deletes data files that the log removed (by a compaction, a replace or a MERGE) more than
  `retention_hours` ago; younger ones stay, so time travel and running readers keep working within the
  retention window. Files still in the table are never touched.

`maintenance` is a job (one op that walks every Delta table of the lake) with a nightly schedule
(compact + vacuum) and a weekly one (also z-order). Each table's outcome is an AssetObservation on the
table's asset, so it shows on the asset's page in the UI; the op's output metadata sums it up.
"""

from dataclasses import dataclass

import dagster as dg
from deltalake import DeltaTable

from lakehouse import catalog
from lakehouse.lib.lake import DeltaLake, retry_on_commit_conflict

DEFAULT_RETENTION_HOURS = 168  # Delta's own default (deletedFileRetentionDuration = 7 days)


@dataclass
class TableReport:
    table: str
    files_before: int
    files_after: int
    rows_before: int
    rows_after: int
    compacted: dict
    z_ordered: list[str]
    vacuumed: int

    def metadata(self) -> dict:
        return {
            "files_before": self.files_before,
            "files_after": self.files_after,
            "rows": self.rows_after,
            "files_removed_by_compaction": int(self.compacted.get("numFilesRemoved", 0)),
            "files_added_by_compaction": int(self.compacted.get("numFilesAdded", 0)),
            "z_order_columns": ", ".join(self.z_ordered) or "-",
            "files_vacuumed": self.vacuumed,
        }


def file_count(dt: DeltaTable) -> int:
    return len(dt.file_uris())


def row_count(dt: DeltaTable) -> int:
    actions = dt.get_add_actions(flatten=True)
    return int(sum(v for v in actions.column("num_records").to_pylist() if v is not None))


def zorder_columns(table: str, dt: DeltaTable) -> list[str]:
    """The declared z-order columns for `table` that the table has and does not partition on."""
    present = {f.name for f in dt.schema().fields}
    partitions = set(dt.metadata().partition_columns)
    declared = {t.path: t.zorder for t in [*catalog.all_tables(), *catalog.marts().values()]}
    return [c for c in declared.get(table, []) if c in present and c not in partitions]


def compact(dt: DeltaTable, target_size_mb: int | None = None) -> dict:
    """Rewrite small files into bigger ones, one commit; a table with nothing to compact gets no commit."""
    target = target_size_mb * 2**20 if target_size_mb else None
    return dt.optimize.compact(target_size=target)


def vacuum(dt: DeltaTable, retention_hours: int = DEFAULT_RETENTION_HOURS) -> list[str]:
    """Delete files the log removed more than `retention_hours` ago; returns them. A retention shorter than
    the table's own (7 days by default) is allowed: the run config is the decision."""
    return dt.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False)


def maintain(
    dt_factory,
    table: str,
    *,
    do_compact: bool = True,
    do_zorder: bool = False,
    retention_hours: int | None = DEFAULT_RETENTION_HOURS,
    target_size_mb: int | None = None,
) -> TableReport:
    """Compact, z-order and vacuum one table (each step its own commit). `dt_factory()` opens the table
    afresh, so a retried step (a concurrent writer committed first) works on the new snapshot."""
    dt = dt_factory()
    files_before, rows_before = file_count(dt), row_count(dt)
    compacted: dict = {}
    if do_compact:

        def run_compact():
            compacted.clear()
            compacted.update(compact(dt_factory(), target_size_mb))

        retry_on_commit_conflict(run_compact)
    z_ordered: list[str] = []
    if do_zorder:
        columns = zorder_columns(table, dt_factory())
        if columns:
            retry_on_commit_conflict(lambda: dt_factory().optimize.z_order(columns))
            z_ordered = columns
    vacuumed = vacuum(dt_factory(), retention_hours) if retention_hours is not None else []
    dt = dt_factory()
    report = TableReport(
        table, files_before, file_count(dt), rows_before, row_count(dt), compacted, z_ordered, len(vacuumed)
    )
    if report.rows_after != report.rows_before:  # a concurrent writer, not maintenance: say so, don't fail
        report.compacted = {**compacted, "note": "rows changed during maintenance (a concurrent write)"}
    return report


class MaintenanceConfig(dg.Config):
    compact: bool = True
    z_order: bool = False
    vacuum: bool = True
    retention_hours: int = DEFAULT_RETENTION_HOURS
    target_size_mb: int | None = None  # None: delta-rs's default (100 MiB)
    tables: list[str] = []  # "layer/table"; empty = every Delta table in the lake


@dg.op(description="Compact, optionally z-order, and vacuum every Delta table of the lake (delta-rs).")
def maintain_lake(context: dg.OpExecutionContext, config: MaintenanceConfig, lake: DeltaLake) -> dg.Output:
    names = config.tables or [f"{t['layer']}/{t['name']}" for t in lake.tables()]
    totals = {"tables": 0, "files_before": 0, "files_after": 0, "files_vacuumed": 0}
    for name in names:
        layer, table = name.split("/", 1)
        if not lake.exists(layer, table):
            context.log.info(f"{name}: no Delta table yet, skipped")
            continue
        report = maintain(
            lambda layer=layer, table=table: lake.delta_table(layer, table),
            name,
            do_compact=config.compact,
            do_zorder=config.z_order,
            retention_hours=config.retention_hours if config.vacuum else None,
            target_size_mb=config.target_size_mb,
        )
        context.log_event(
            dg.AssetObservation(
                asset_key=dg.AssetKey([layer, table]),
                metadata={**report.metadata(), "maintenance/run": dg.MetadataValue.text(context.run_id)},
            )
        )
        context.log.info(f"{name}: {report.files_before} -> {report.files_after} files, {report.vacuumed} vacuumed")
        totals["tables"] += 1
        totals["files_before"] += report.files_before
        totals["files_after"] += report.files_after
        totals["files_vacuumed"] += report.vacuumed
    return dg.Output(None, metadata=totals)


@dg.job(
    description="Delta table maintenance (delta-rs): compaction, z-order on the main filter columns, vacuum.",
    tags={"lakehouse/kind": "maintenance"},
)
def maintenance():
    maintain_lake()


# Nightly after Gold (02:00): compact + vacuum. Weekly (Sunday): also z-order, which rewrites whole tables.
maintenance_nightly = dg.ScheduleDefinition(
    name="maintenance_nightly",
    job=maintenance,
    cron_schedule="0 3 * * 1-6",
    execution_timezone="UTC",
    run_config={"ops": {"maintain_lake": {"config": {"compact": True, "z_order": False, "vacuum": True}}}},
)
maintenance_weekly = dg.ScheduleDefinition(
    name="maintenance_weekly",
    job=maintenance,
    cron_schedule="0 3 * * 0",
    execution_timezone="UTC",
    run_config={"ops": {"maintain_lake": {"config": {"compact": True, "z_order": True, "vacuum": True}}}},
)
MAINTENANCE_SCHEDULES = [maintenance_nightly, maintenance_weekly]
