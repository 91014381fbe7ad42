"""The event log of the Dagster instances `lakehouse` makes: Dagster's own SQLite event log storage, in
Dagster's files and layout, with each file's connection kept open.

Dagster's SqliteEventLogStorage creates an engine, opens a SQLite connection and disposes of both for every
statement batch. A daily run of the `batch` job writes its 311 events through 910 of them, 1.7-1.8 s of a
12-14 s run; a 61-day backfill, with an event per partition and asset, took 40 s instead of 25 s
(docs/benchmarks.md). The storage's own lock already serialises every use of a connection (one thread at a
time, never nested), which is what makes one connection per file, shared by the process's threads, safe."""

import json
import os
from collections import OrderedDict
from contextlib import contextmanager

from dagster._config import StringSource
from dagster._core.instance.ref import _event_logs_directory
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

OPEN_FILES = 8  # the index and the runs being written or watched; an older run's file reopens when read

_inherited: list[Engine] = []  # a forked child's copies of its parent's connections: never used, never closed


def instance_config(home) -> str:
    """The dagster.yaml entry for an instance in `home`. A storage class is not told which instance directory
    it serves, so the directory is written out (an env var would follow DAGSTER_HOME, not the instance)."""
    return (
        f"\nevent_log_storage:  # Dagster's SQLite event log, its files kept open (lakehouse/lib/sqlite_event_log.py)\n"
        f"  module: {__name__}\n  class: {KeptOpenSqliteEventLogStorage.__name__}\n"
        f"  config:\n    base_dir: {json.dumps(str(home))}\n"
    )


class KeptOpenSqliteEventLogStorage(SqliteEventLogStorage):
    """`base_dir` is the instance's directory, as in `storage: sqlite: base_dir`; the event log lives in its
    `history/runs`, where Dagster's default puts it, so an instance can switch to or from this class."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()  # before Dagster's set-up, which connects
        self._pid = os.getpid()
        super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls):
        return {"base_dir": StringSource}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(_event_logs_directory(config_value["base_dir"]), inst_data)  # where Dagster's default puts it

    @contextmanager
    def _connect(self, shard: str):
        with self._db_lock, self._engine(shard).connect() as conn, conn.begin():
            yield conn

    def _engine(self, shard: str) -> Engine:
        if self._pid != os.getpid():
            # SQLite connections must not cross a fork; closing them here could checkpoint the parent's WAL
            _inherited.extend(self._engines.values())
            self._engines.clear()
            self._pid = os.getpid()
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=StaticPool,  # one connection, used under the storage's lock by one thread at a time
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
        self._engines[shard] = engine  # most recently used last
        while len(self._engines) > OPEN_FILES:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    def _close_all(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._close_all()  # before the run files are deleted under open connections
        super().wipe()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()
