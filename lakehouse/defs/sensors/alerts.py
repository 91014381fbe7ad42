"""Alerts: a failed run or a failed asset check becomes one JSON line in $LAKEHOUSE_HOME/alerts.jsonl
and, when LAKEHOUSE_ALERT_WEBHOOK is set, a POST of the same JSON to that URL."""

import json
import urllib.request
from datetime import UTC, datetime

import dagster as dg

from lakehouse import settings


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


@dg.sensor(name="check_failure_alerts", default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
def check_failure_alerts(context: dg.SensorEvaluationContext) -> dg.SkipReason | None:
    """Every failed asset check evaluation since the last tick (the cursor is the event storage id)."""
    records = context.instance.get_event_records(
        dg.EventRecordsFilter(
            event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
            after_cursor=int(context.cursor) if context.cursor else None,
        ),
        ascending=True,
    )
    failed = 0
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not evaluation.passed:
            failed += 1
            send_alert(
                {
                    "kind": "check_failure",
                    "asset": evaluation.asset_key.to_user_string(),
                    "check": evaluation.check_name,
                    "severity": evaluation.severity.value,
                    "run_id": record.run_id,
                    "partition": evaluation.partition,
                    "description": evaluation.description,
                }
            )
    if records:
        context.update_cursor(str(records[-1].storage_id))
    return None if failed else dg.SkipReason(f"no failed checks in {len(records)} new evaluation(s)")
