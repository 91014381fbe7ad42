"""The Dagster instance `lakehouse` makes (the repo's dagster.yaml and one entry more): Dagster's SQLite event
log in Dagster's own layout, with each file's connection kept open (lakehouse/lib/sqlite_event_log.py)."""

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
from dagster._core.events.log import EventLogEntry

from lakehouse.cli import write_instance_config
from lakehouse.lib.sqlite_event_log import OPEN_FILES, KeptOpenSqliteEventLogStorage

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    write_instance_config(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    return tmp_path


def dagsters_default(home: Path) -> dg.DagsterInstance:
    """The same directory as an instance with Dagster's default SQLite storage."""
    default = home / "default"
    default.mkdir(exist_ok=True)
    (default / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {home}\n")
    return dg.DagsterInstance.from_config(str(default))


def engine_event(run_id: str, message: str) -> EventLogEntry:
    return EventLogEntry(
        error_info=None,
        level=20,
        user_message=message,
        run_id=run_id,
        timestamp=time.time(),
        dagster_event=DagsterEvent(DagsterEventType.ENGINE_EVENT.value, "job", event_specific_data=EngineEventData()),
    )


def messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def open_db_files(home: Path) -> set[str]:
    fds = Path("/proc/self/fd")
    targets = {os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink()}
    return {t for t in targets if t.startswith(str(home)) and t.endswith(".db")}


@dg.asset
def one() -> int:
    return 1


def test_the_repo_dagster_yaml_alone_keeps_dagsters_own_storage(tmp_path):
    """`dagster dev` in the repo without DAGSTER_HOME reads it for a temporary instance it cannot name."""
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"


def test_the_instance_writes_in_its_own_directory_whatever_DAGSTER_HOME_says(home, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("another_home")))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_id = dg.materialize([one], instance=instance).run_id
    assert (home / "history" / "runs" / f"{run_id}.db").exists()


def test_lakehouses_instance_keeps_dagsters_layout_so_either_storage_reads_the_others_runs(home):
    with dg.DagsterInstance.get() as ours:
        assert type(ours.event_log_storage) is KeptOpenSqliteEventLogStorage
        run_id = dg.materialize([one], instance=ours).run_id
        types = [e.dagster_event.event_type for e in ours.all_logs(run_id) if e.dagster_event]
    assert (home / "history" / "runs" / f"{run_id}.db").exists()
    assert DagsterEventType.ASSET_MATERIALIZATION in types and types[-1] == DagsterEventType.RUN_SUCCESS

    with dagsters_default(home) as default:
        assert [e.dagster_event.event_type for e in default.all_logs(run_id) if e.dagster_event] == types
        assert default.get_latest_materialization_event(dg.AssetKey("one")).run_id == run_id
        second = dg.materialize([one], instance=default).run_id
    with dg.DagsterInstance.get() as ours:
        assert ours.get_latest_materialization_event(dg.AssetKey("one")).run_id == second
        assert messages(ours, second)[-1].startswith("Finished execution of run")


def test_what_another_process_writes_is_read_through_the_open_connection(home):
    with dg.DagsterInstance.get() as ours:
        ours.event_log_storage.store_event(engine_event("r1", "ours, before"))
        assert messages(ours, "r1") == ["ours, before"]  # both files' connections are open now
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import dagster as dg; from lakehouse_tests.test_instance import engine_event\n"
                "with dg.DagsterInstance.get() as other:\n"
                "    other.event_log_storage.store_event(engine_event('r1', 'the other process'))\n"
                "    other.report_runless_asset_event(dg.AssetMaterialization('written_elsewhere'))\n",
            ],
            check=True,
            cwd=REPO,
        )
        ours.event_log_storage.store_event(engine_event("r1", "ours, after"))
        assert messages(ours, "r1") == ["ours, before", "the other process", "ours, after"]
        assert ours.get_latest_materialization_event(dg.AssetKey("written_elsewhere")) is not None


def test_at_most_OPEN_FILES_event_log_files_stay_open_and_none_after_dispose(home):
    instance = dg.DagsterInstance.get()
    for n in range(3 * OPEN_FILES):
        instance.event_log_storage.store_event(engine_event(f"run-{n}", "hello"))
    open_now = open_db_files(home)
    assert len(open_now) == OPEN_FILES
    assert str(home / "history" / "runs" / f"run-{3 * OPEN_FILES - 1}.db") in open_now  # the latest stays open
    assert messages(instance, "run-0") == ["hello"]  # a closed run's file reopens when read
    instance.dispose()
    assert open_db_files(home) == set()


def test_wipe_closes_the_files_it_deletes_so_later_events_land_in_the_new_ones(home):
    with dg.DagsterInstance.get() as ours:
        ours.event_log_storage.store_event(engine_event("r1", "before the wipe"))
        ours.event_log_storage.wipe()
        ours.event_log_storage.store_event(engine_event("r1", "after the wipe"))
    with dagsters_default(home) as default:
        assert messages(default, "r1") == ["after the wipe"]


def store_in_child(storage: KeptOpenSqliteEventLogStorage) -> None:
    storage.store_event(engine_event("r1", "the forked child"))


def test_a_forked_child_and_its_parent_both_write_and_the_file_stays_intact(home):
    with dg.DagsterInstance.get() as ours:
        storage = ours.event_log_storage
        storage.store_event(engine_event("r1", "parent, before"))
        child = multiprocessing.get_context("fork").Process(target=store_in_child, args=(storage,))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        storage.store_event(engine_event("r1", "parent, after"))
        assert messages(ours, "r1") == ["parent, before", "the forked child", "parent, after"]
    with sqlite3.connect(home / "history" / "runs" / "r1.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
