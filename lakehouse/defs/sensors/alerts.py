"""Alerts: a failed run, a failed asset check (the partition freshness checks too) or a sensor that keeps
failing becomes one JSON line in $LAKEHOUSE_HOME/alerts.jsonl and, when LAKEHOUSE_ALERT_WEBHOOK is set, a
POST of the same JSON to that URL."""

import json
import urllib.request
from datetime import UTC, datetime

import dagster as dg

# Dagster has no public API for sensor ticks: these are its scheduler's own enums
from dagster._core.scheduler.instigation import InstigatorState, InstigatorType, TickStatus

from lakehouse import policies, settings
from lakehouse.lib import freshness


def alert_log():
    return settings.home() / "alerts.jsonl"


def send_alert(alert: dict) -> None:
    alert = {"at": datetime.now(UTC).isoformat(), **alert}
    alert_log().parent.mkdir(parents=True, exist_ok=True)
    with alert_log().open("a") as log:
        log.write(json.dumps(alert) + "\n")
    webhook = settings.alert_webhook()
    if webhook:
        request = urllib.request.Request(webhook, json.dumps(alert).encode(), {"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()


@dg.run_failure_sensor(name="run_failure_alerts", default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_alerts(context: dg.RunFailureSensorContext) -> None:
    send_alert(
        {
            "kind": "run_failure",
            "run_id": context.dagster_run.run_id,
            "job": context.dagster_run.job_name,
            "error": context.failure_event.message,
        }
    )


def repeats_a_late_partition(late: dict[str, str], evaluation: dg.AssetCheckEvaluation) -> bool:
    """Whether a failed partition freshness result names a partition already alerted on: every run of its
    asset (a Kafka micro-batch, say) evaluates it again, and a late day stays late until the next one is
    due. `late` (asset -> the late partition alerted) follows the results."""
    if evaluation.check_name != freshness.CHECK_NAME:
        return False
    asset, partition = evaluation.asset_key.to_user_string(), values(evaluation)["partition"]
    if evaluation.passed:
        late.pop(asset, None)
        return False
    repeated, late[asset] = late.get(asset) == partition, partition
    return repeated


@dg.sensor(name="check_failure_alerts", default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
def check_failure_alerts(context: dg.SensorEvaluationContext) -> dg.SkipReason | None:
    """Every failed asset check evaluation since the last tick, a late partition once. The cursor holds the
    last event storage id read and the late partitions alerted on."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    cursor = {"after": cursor} if isinstance(cursor, int) else cursor  # before: the bare storage id
    late = cursor.get("late", {})
    records = context.instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=cursor.get("after")),
        ascending=True,
    )
    failed = 0
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not repeats_a_late_partition(late, evaluation) and not evaluation.passed:
            failed += 1
            send_alert(
                {
                    "kind": "check_failure",
                    "asset": evaluation.asset_key.to_user_string(),
                    "check": evaluation.check_name,
                    "severity": evaluation.severity.value,
                    "run_id": record.run_id,
                    # a freshness check judges one partition, named in its metadata
                    "partition": evaluation.partition or values(evaluation).get("partition"),
                    "description": evaluation.description,
                }
            )
    after = records[-1].storage_id if records else cursor.get("after")
    context.update_cursor(json.dumps({"after": after, "late": late}))
    return None if failed else dg.SkipReason(f"no new failed checks in {len(records)} new evaluation(s)")


def values(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {k: v.value for k, v in evaluation.metadata.items()}


def failure_streak(instance: dg.DagsterInstance, state: InstigatorState) -> tuple[int, list]:
    """A sensor's failed ticks since its last good (successful or skipped) one, newest first, and that good
    tick's id (0: none), which names the streak."""
    origin, selector = state.instigator_origin_id, state.selector_id
    good = instance.get_ticks(origin, selector, limit=1, statuses=[TickStatus.SUCCESS, TickStatus.SKIPPED])
    after = good[0].timestamp if good else None
    failed = instance.get_ticks(origin, selector, after=after, limit=1000, statuses=[TickStatus.FAILURE])
    return (good[0].tick_id if good else 0), list(failed)


def root_cause(error) -> str | None:
    """What raised, without Dagster's wrapping "Error occurred during the execution of evaluation_fn"."""
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip() if error is not None else None


@dg.sensor(name="sensor_failure_alerts", default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=60)
def sensor_failure_alerts(context: dg.SensorEvaluationContext) -> dg.SkipReason | None:
    """One alert when a sensor has failed policies.SENSOR_FAILURE_STREAK ticks in a row, not one per tick: the
    cursor holds the streaks already alerted on (sensor selector id -> the last good tick before the streak)."""
    alerted = json.loads(context.cursor) if context.cursor else {}
    streaks, sent = {}, 0
    for state in context.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        streak, failed = failure_streak(context.instance, state)
        if len(failed) < policies.SENSOR_FAILURE_STREAK:
            continue
        streaks[state.selector_id] = streak
        if alerted.get(state.selector_id) != streak:
            sent += 1
            send_alert(
                {
                    "kind": "sensor_failing",
                    "sensor": state.instigator_name,
                    "consecutive_failed_ticks": len(failed),
                    "error": root_cause(failed[0].error),
                }
            )
    context.update_cursor(json.dumps(streaks))
    return None if sent else dg.SkipReason(f"{len(streaks)} sensor(s) failing, none newly")
