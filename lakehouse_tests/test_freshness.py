"""Partition freshness: every day of every Bronze, Silver and Gold asset is due by its layer's deadline
(policies.PARTITION_DEADLINES), a late day fails its check and raises an alert, the freshness sensor is on
by default, and a sensor that keeps failing raises one alert per streak of failures."""

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.sensor import execute_sensor_iteration
from freezegun import freeze_time

from lakehouse import catalog, policies
from lakehouse.defs.sensors import alerts
from lakehouse.lib import partitions
from lakehouse_tests.helpers import DEFS

REVENUE = dg.AssetKey(["gold", "revenue_daily"])
REVENUE_CHECK = dg.AssetCheckKey(REVENUE, "partition_freshness")
# Gold is due by 04:00 UTC the next day: at 04:30 on 4 November, 3 November is half an hour late
LATE = datetime(2026, 11, 4, 4, 30, tzinfo=UTC)


def freshness_check_keys() -> list[dg.AssetCheckKey]:
    return [k for c in DEFS.asset_checks for k in c.check_keys if k.name == "partition_freshness"]


def evaluate(instance: dg.DagsterInstance, at: datetime) -> dg.AssetCheckEvaluation:
    """Gold revenue_daily's partition freshness check, run as the freshness sensor's runs run it, at `at`."""
    checks = next(c for c in DEFS.asset_checks if REVENUE_CHECK in c.check_keys)
    with freeze_time(at):
        result = dg.materialize([checks], instance=instance, selection=dg.AssetSelection.checks(REVENUE_CHECK))
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def materialised(instance: dg.DagsterInstance, *days: str) -> None:
    for day in days:
        instance.report_runless_asset_event(dg.AssetMaterialization(REVENUE, partition=day))


def values(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {k: v.value for k, v in evaluation.metadata.items()}


def test_every_daily_bronze_silver_and_gold_asset_has_one_partition_freshness_check():
    graph = DEFS.resolve_asset_graph()
    daily = {
        k
        for k in graph.get_all_asset_keys()
        if k.path[0] in ("bronze", "silver", "gold") and graph.get(k).partitions_def == partitions.daily
    }
    # the catalog's tables (with their quarantine tables) and the dbt marts: 5 + 10 + 6
    assert len(daily) == len(catalog.all_tables()) + len(catalog.marts()) == 21
    assert sorted(k.asset_key for k in freshness_check_keys()) == sorted(daily)


def test_the_freshness_sensor_is_on_by_default_and_requests_every_check_never_run():
    sensor = DEFS.resolve_sensor_def("partition_freshness")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.DagsterInstance.ephemeral() as instance:
        request = sensor(dg.build_sensor_context(instance=instance))
    assert sorted(request.asset_check_keys) == sorted(freshness_check_keys())


def test_the_freshness_sensors_run_needs_no_resource_and_finds_nothing_materialised_late():
    """The run the sensor requests, in the code location's own asset job, on an instance with nothing in it."""
    job = DEFS.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection=set(freshness_check_keys())
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance)
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 21 and not any(e.passed for e in evaluations)


def test_the_sensor_failure_watchdog_is_on_by_default():
    assert DEFS.resolve_sensor_def("sensor_failure_alerts").default_status == dg.DefaultSensorStatus.RUNNING


def test_a_late_partition_fails_its_freshness_check():
    with dg.DagsterInstance.ephemeral() as instance:
        materialised(instance, "2026-11-01", "2026-11-02")
        evaluation = evaluate(instance, LATE)
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.description == (
        "gold/revenue_daily: partition 2026-11-03 was due by 2026-11-04 04:00 UTC "
        "and has not been materialised (1800 s overdue)."
    )
    metadata = values(evaluation)
    assert (metadata["partition"], metadata["due_at"], metadata["overdue_seconds"]) == (
        "2026-11-03",
        datetime(2026, 11, 4, 4, tzinfo=UTC).timestamp(),
        1800,
    )


def test_the_same_partition_materialised_passes_until_the_next_is_due():
    with dg.DagsterInstance.ephemeral() as instance:
        materialised(instance, "2026-11-01", "2026-11-02", "2026-11-03")
        evaluation = evaluate(instance, LATE)
    assert evaluation.passed
    assert values(evaluation)["dagster/fresh_until_timestamp"] == datetime(2026, 11, 5, 4, tzinfo=UTC).timestamp()


def test_before_the_deadline_the_day_before_is_judged():
    with dg.DagsterInstance.ephemeral() as instance:
        materialised(instance, "2026-11-01", "2026-11-02")
        evaluation = evaluate(instance, datetime(2026, 11, 4, 3, 59, tzinfo=UTC))
    assert evaluation.passed and values(evaluation)["partition"] == "2026-11-02"


def alert_lines(home) -> list[dict]:
    log = home / "alerts.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def tick(sensor, instance: dg.DagsterInstance, cursor: str | None) -> str | None:
    """One tick of `sensor`, given the cursor of the last; the new cursor."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    sensor(context)
    return context.cursor


def test_a_late_partition_raises_one_check_failure_alert_however_often_it_is_evaluated(tmp_path, monkeypatch):
    """The freshness sensor, and every run of the asset, evaluate the check again while the day is late."""
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    with dg.DagsterInstance.ephemeral() as instance:
        materialised(instance, "2026-11-01", "2026-11-02")
        evaluation = evaluate(instance, LATE)
        cursor = tick(alerts.check_failure_alerts, instance, None)
        evaluate(instance, LATE + timedelta(hours=1))
        tick(alerts.check_failure_alerts, instance, cursor)
    [alert] = alert_lines(tmp_path)
    assert {k: v for k, v in alert.items() if k not in ("at", "run_id")} == {
        "kind": "check_failure",
        "asset": "gold/revenue_daily",
        "check": "partition_freshness",
        "severity": "ERROR",
        "partition": "2026-11-03",
        "description": evaluation.description,
    }


def test_the_next_late_day_raises_its_own_alert(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    with dg.DagsterInstance.ephemeral() as instance:
        materialised(instance, "2026-11-01", "2026-11-02")
        evaluate(instance, LATE)
        cursor = tick(alerts.check_failure_alerts, instance, None)
        evaluate(instance, LATE + timedelta(days=1))
        tick(alerts.check_failure_alerts, instance, cursor)
    assert [a["partition"] for a in alert_lines(tmp_path)] == ["2026-11-03", "2026-11-04"]


def test_check_failure_alerts_resumes_from_a_cursor_of_the_earlier_format(tmp_path, monkeypatch):
    """Before, the cursor was the bare storage id of the last evaluation read."""
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    with dg.DagsterInstance.ephemeral() as instance:
        materialised(instance, "2026-11-01", "2026-11-02")
        evaluate(instance, LATE)
        [read] = instance.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        )
        evaluate(instance, LATE + timedelta(days=1))
        tick(alerts.check_failure_alerts, instance, str(read.storage_id))
    assert [a["partition"] for a in alert_lines(tmp_path)] == ["2026-11-04"]


# -- a sensor that keeps failing ---------------------------------------------------------------------------


@dg.sensor(minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def unreachable_source(context: dg.SensorEvaluationContext):
    raise ConnectionError("the source is unreachable")


FAILING = dg.Definitions(sensors=[unreachable_source])


def test_a_sensor_that_keeps_failing_raises_one_alert_once_its_streak_is_long_enough(tmp_path, monkeypatch):
    """Dagster's sensor daemon ticks the failing sensor; the watchdog runs after each tick."""
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    target = InProcessWorkspaceLoadTarget(
        InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name=__name__, attribute="FAILING"))
    )
    streak = policies.SENSOR_FAILURE_STREAK
    alerts_after_tick, cursor = [], None
    with dg.instance_for_test() as instance, create_test_daemon_workspace_context(target, instance) as workspace:
        for _ in range(streak + 2):
            list(execute_sensor_iteration(workspace, logging.getLogger("daemon"), None, None))
            cursor = tick(alerts.sensor_failure_alerts, instance, cursor)
            alerts_after_tick.append(len(alert_lines(tmp_path)))
            time.sleep(1.1)  # the sensor's minimum interval
        failed = [t for t in instance.get_ticks(*origin(instance, "unreachable_source"))]
    assert [t.status.value for t in failed] == ["FAILURE"] * (streak + 2)
    assert alerts_after_tick == [0] * (streak - 1) + [1, 1, 1]
    [alert] = alert_lines(tmp_path)
    assert (alert["kind"], alert["sensor"], alert["consecutive_failed_ticks"]) == (
        "sensor_failing",
        "unreachable_source",
        streak,
    )
    assert alert["error"] == "ConnectionError: the source is unreachable"


def origin(instance: dg.DagsterInstance, name: str) -> tuple[str, str]:
    state = next(s for s in instance.all_instigator_state() if s.instigator_name == name)
    return state.instigator_origin_id, state.selector_id
