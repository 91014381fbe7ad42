"""Dagster as a service: the instance of deploy/dagster.yaml (Postgres run, event-log and schedule storage,
queued runs with tag concurrency limits) against a real PostgreSQL server, in a throwaway database created
for this test session and dropped after it, on the session's server (postgres_fixtures.py)."""

import logging
import shutil
import uuid
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.spark import SparkEngine
from lakehouse_tests.helpers import BRONZE, DAY_KEYS, day_counts
from lakehouse_tests.postgres_fixtures import PostgresServer, postgres_server  # noqa: F401 - fixture

DEPLOY_INSTANCE = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"


def connect(server: PostgresServer, database: str):
    return psycopg2.connect(
        dbname=database,
        connect_timeout=3,
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
    )


@pytest.fixture(scope="module")
def pg_database(postgres_server):
    admin = connect(postgres_server, "postgres")
    admin.autocommit = True
    name = f"lakehouse_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def pg_env(pg_database, postgres_server) -> dict[str, str]:
    """The variables deploy/dagster.yaml reads, as docker-compose and the Helm values set them."""
    return {
        "DAGSTER_PG_HOST": postgres_server.host,
        "DAGSTER_PG_PORT": str(postgres_server.port),
        "DAGSTER_PG_USERNAME": postgres_server.user,
        "DAGSTER_PG_PASSWORD": postgres_server.password,
        "DAGSTER_PG_DB": pg_database,
    }


@pytest.fixture(scope="module")
def instance(pg_env, tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(DEPLOY_INSTANCE, home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as env:
        for name, value in {**pg_env, "DAGSTER_HOME": str(home)}.items():
            env.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as created:
            yield created


def query(server: PostgresServer, database: str, sql: str) -> list[tuple]:
    connection = connect(server, database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()
    finally:
        connection.close()


def test_the_deploy_instance_is_postgres_backed_with_queued_runs_and_tag_limits(instance):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    coordinator = instance.run_coordinator
    assert isinstance(coordinator, QueuedRunCoordinator)
    settings = instance.get_concurrency_config().run_queue_config
    assert settings.max_concurrent_runs == 4
    limits = {limit["key"]: limit for limit in settings.tag_concurrency_limits}
    assert limits["kafka/topic"] == {"key": "kafka/topic", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1  # one streaming batch per table


def test_materialisations_are_recorded_in_postgres(
    instance, postgres_server, pg_database, manifest, sail_url, tmp_path
):
    lake = DeltaLake(root=str(tmp_path / "lake"))
    resources = {"spark": SparkEngine(remote=sail_url), "lake": lake}
    day = DAY_KEYS[0]
    result = dg.materialize(
        [BRONZE["fx_rates"], BRONZE["orders"]], resources=resources, partition_key=day, instance=instance
    )
    assert result.success
    for source in ("fx_rates", "orders"):
        event = instance.get_latest_materialization_event(dg.AssetKey(["bronze", source]))
        assert event.asset_materialization.partition == day
        assert (
            event.asset_materialization.metadata["dagster/row_count"].value
            == day_counts(manifest, source, "records")[day]
        )
    # read back from the database itself, not through Dagster's caches
    assert query(postgres_server, pg_database, f"SELECT status FROM runs WHERE run_id = '{result.run_id}'") == [
        ("SUCCESS",)
    ]
    [(count,)] = query(
        postgres_server,
        pg_database,
        "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'",
    )
    assert count == 2


def test_a_sensor_tick_is_stored_in_postgres_and_its_runs_are_queued(instance, postgres_server, pg_database, manifest):
    """The daemon's sensor loop, against the code location served from its own process (as in deploy/)."""
    from dagster._core.scheduler.instigation import InstigatorStatus, TickStatus
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.sensor import execute_sensor_iteration

    target = ModuleTarget(
        module_name="lakehouse.definitions",
        attribute="defs",
        working_directory=str(Path(__file__).resolve().parents[1]),
        location_name="lakehouse",
    )
    with create_test_daemon_workspace_context(target, instance) as workspace_context:
        location = next(iter(workspace_context.create_request_context().get_code_location_entries().values()))
        repo = next(iter(location.code_location.get_repositories().values()))
        sensor = repo.get_sensor("landing_files")
        instance.start_sensor(sensor)
        list(execute_sensor_iteration(workspace_context, logging.getLogger("sensor-test"), None, None))
        [tick] = instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id)
        assert tick.status == TickStatus.SUCCESS, tick.error
        expected = {f"{s}/{d}" for s in ("crm_customers", "orders", "fx_rates") for d in DAY_KEYS}
        assert {key.split("@")[0] for key in tick.run_keys} == expected
        # the landing sensor's runs (the partition_freshness sensor, also on by default, queues its own)
        queued = instance.get_runs(
            dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED], tags={"dagster/sensor_name": "landing_files"})
        )
        assert len(queued) == len(expected)  # waiting for the daemon's run coordinator, in Postgres
        assert instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id).status == (
            InstigatorStatus.RUNNING
        )
    # (the sensors that are on by default - alerts, automation - ticked too: count this sensor's)
    [(ticks,)] = query(
        postgres_server, pg_database, f"SELECT count(*) FROM job_ticks WHERE selector_id = '{sensor.selector_id}'"
    )
    runs_of_the_sensor = (
        "SELECT count(*) FROM runs JOIN run_tags ON run_tags.run_id = runs.run_id WHERE status = 'QUEUED' "
        "AND run_tags.key = 'dagster/sensor_name' AND run_tags.value = 'landing_files'"
    )
    [(runs,)] = query(postgres_server, pg_database, runs_of_the_sensor)
    assert (ticks, runs) == (1, len(expected))
