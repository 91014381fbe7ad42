"""Table maintenance (lakehouse/maintenance.py) with delta-rs: exact file counts before and after
compaction, rows unchanged, z-order on the configured columns, and vacuum deleting only the files
removed longer ago than the retention."""

import json
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from lakehouse.defs import maintenance
from lakehouse.lib.lake import DeltaLake

DAYS = ["2026-11-01", "2026-11-02"]
APPENDS_PER_DAY = 5
ROWS_PER_APPEND = 10


def small_appends(path: str) -> None:
    """APPENDS_PER_DAY small files in each of two date partitions, as streaming micro-batches leave them."""
    n = 0
    for _ in range(APPENDS_PER_DAY):
        for day in DAYS:
            batch = pa.table(
                {
                    "order_id": [f"O{n + i:05d}" for i in range(ROWS_PER_APPEND)],
                    "customer_id": [f"C{(n + i) % 7:03d}" for i in range(ROWS_PER_APPEND)],
                    "order_ts": [f"{day}T{i:02d}:00:00Z" for i in range(ROWS_PER_APPEND)],
                    "order_date": [day] * ROWS_PER_APPEND,
                }
            )
            write_deltalake(path, batch, mode="append", partition_by=["order_date"])
            n += ROWS_PER_APPEND


def files_on_disk(path: str) -> set[str]:
    return {str(p.relative_to(path)) for p in Path(path).rglob("*.parquet")}


def relative(path: str, files: list[str]) -> set[str]:
    """Vacuumed file names relative to the table (delta-rs reports some absolute, some relative)."""
    root = Path(path).resolve()
    return {(Path(f).relative_to(root) if Path(f).is_absolute() else Path(f)).as_posix() for f in files}


def age_removals(path: str, version: int, hours: float) -> None:
    """Make commit `version`'s remove actions `hours` old (as if that compaction ran then)."""
    log = Path(path) / "_delta_log" / f"{version:020d}.json"
    then = int((time.time() - hours * 3600) * 1000)
    actions = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    for action in actions:
        if "remove" in action:
            action["remove"]["deletionTimestamp"] = then
    log.write_text("\n".join(json.dumps(a) for a in actions) + "\n")


@pytest.fixture
def lake(tmp_path) -> DeltaLake:
    return DeltaLake(root=str(tmp_path / "lake"))


def test_compaction_exact_file_counts_rows_unchanged(lake):
    path = lake.path("silver", "orders")
    small_appends(path)
    dt = DeltaTable(path)
    assert maintenance.file_count(dt) == APPENDS_PER_DAY * len(DAYS) == 10
    rows = maintenance.row_count(dt)
    assert rows == APPENDS_PER_DAY * len(DAYS) * ROWS_PER_APPEND == 100
    before = dt.to_pyarrow_table().sort_by("order_id")

    report = maintenance.maintain(lambda: DeltaTable(path), "silver/orders", retention_hours=None)

    after = DeltaTable(path)
    assert (report.files_before, report.files_after) == (10, 2)  # one file per date partition
    assert maintenance.file_count(after) == 2
    assert report.compacted["numFilesRemoved"] == 10 and report.compacted["numFilesAdded"] == 2
    assert report.rows_before == report.rows_after == 100
    assert after.to_pyarrow_table().sort_by("order_id").equals(before)
    assert after.history(1)[0]["operation"] == "OPTIMIZE"
    # Nothing left to compact: a second pass changes nothing and commits nothing.
    version = after.version()
    again = maintenance.maintain(lambda: DeltaTable(path), "silver/orders", retention_hours=None)
    assert (again.files_before, again.files_after) == (2, 2)
    assert DeltaTable(path).version() == version


def test_zorder_on_main_filter_columns(lake):
    path = lake.path("silver", "orders")
    small_appends(path)
    report = maintenance.maintain(
        lambda: DeltaTable(path), "silver/orders", do_compact=False, do_zorder=True, retention_hours=None
    )
    # order_date is the partition column, so z-order clusters on the other configured columns.
    assert report.z_ordered == ["customer_id", "order_ts"]
    assert report.rows_after == 100
    assert report.files_after == 2
    assert DeltaTable(path).history(1)[0]["operation"] == "OPTIMIZE"


def test_vacuum_removes_only_files_older_than_retention(lake):
    path = lake.path("silver", "orders")
    small_appends(path)
    originals = files_on_disk(path)
    assert len(originals) == 10
    # First compaction: the 10 small files leave the table; pretend that was 48 h ago.
    maintenance.compact(DeltaTable(path))
    old_version = DeltaTable(path).version()
    age_removals(path, old_version, hours=48)
    compacted_once = files_on_disk(path) - originals
    assert len(compacted_once) == 2
    # More data and a second compaction now: the 2 compacted files and 2 new ones leave the table just now.
    small_appends(path)
    maintenance.compact(DeltaTable(path))
    live = {
        Path(u).relative_to(Path(path).resolve()).as_posix()
        for u in (Path(x.removeprefix("file://")) for x in DeltaTable(path).file_uris())
    }
    assert len(live) == 2
    young = files_on_disk(path) - originals - live  # removed by the second compaction, seconds ago
    assert len(young) == 2 + 10

    vacuumed = maintenance.vacuum(DeltaTable(path), retention_hours=24)

    assert relative(path, vacuumed) == originals  # only the files removed 48 h ago
    assert files_on_disk(path) == live | young
    assert maintenance.row_count(DeltaTable(path)) == 200
    # Retention 0: now the young removed files go too (delta-rs lists the old tombstones again, already gone);
    # the live ones never do.
    assert relative(path, maintenance.vacuum(DeltaTable(path), retention_hours=0)) - originals == young
    assert files_on_disk(path) == live
    assert DeltaTable(path).to_pyarrow_table().num_rows == 200


def test_maintenance_job_observes_every_table(lake):
    small_appends(lake.path("silver", "orders"))
    small_appends(lake.path("bronze", "orders"))
    result = maintenance.maintenance.execute_in_process(
        resources={"lake": lake},
        run_config={"ops": {"maintain_lake": {"config": {"z_order": True, "retention_hours": 0}}}},
    )
    assert result.success
    observations = {
        e.event_specific_data.asset_observation.asset_key.to_user_string(): {
            k: v.value for k, v in e.event_specific_data.asset_observation.metadata.items()
        }
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION
    }
    assert set(observations) == {"bronze/orders", "silver/orders"}
    for table in observations.values():
        assert (table["files_before"], table["files_after"], table["rows"]) == (10, 2, 100)
    assert observations["silver/orders"]["z_order_columns"] == "customer_id, order_ts"
    assert observations["bronze/orders"]["z_order_columns"] == "-"
    # Compaction removed 10 files, z-order then replaced the 2 compacted ones: all 12 vacuumed at retention 0.
    assert observations["silver/orders"]["files_vacuumed"] == 12
    assert observations["bronze/orders"]["files_vacuumed"] == 10
    assert result.output_for_node("maintain_lake") is None


def test_schedules_target_the_maintenance_job():
    from lakehouse_tests.helpers import DEFS

    job = DEFS.resolve_job_def("maintenance")
    assert job.name == "maintenance"
    schedules = {s.name: s for s in DEFS.schedules}
    assert schedules["maintenance_nightly"].job_name == "maintenance"
    assert schedules["maintenance_weekly"].job_name == "maintenance"
