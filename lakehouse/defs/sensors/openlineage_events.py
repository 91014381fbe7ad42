"""OpenLineage: every run's start, success, failure or cancellation becomes an OpenLineage run event, sent to
the transport settings.openlineage_transport() configures (Marquez over HTTP, a file, ...); none by default.
The cursor is the event storage id, so every run is reported once and in order, whatever launched it; a tick
whose transport fails raises and is retried from the same cursor (Marquez ignores an event it already has)."""

import dagster as dg

from lakehouse import settings
from lakehouse.lib import openlineage_events

BATCH = 100  # run status events per tick: each costs one read of its run's events and one send


def run_status_records(instance: dg.DagsterInstance, after: int | None) -> list[dg.EventLogRecord]:
    """The next BATCH run status events after the storage id `after`, in the order they were stored."""
    records = [
        record
        for event_type in openlineage_events.STATES
        for record in instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type, after_storage_id=after), limit=BATCH, ascending=True
        ).records
    ]
    return sorted(records, key=lambda r: r.storage_id)[:BATCH]


@dg.sensor(name="openlineage_events", default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
def openlineage_run_events(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    records = run_status_records(context.instance, int(context.cursor) if context.cursor else None)
    config = settings.openlineage_transport()
    if config and records:
        transport = openlineage_events.transport(config)
        naming = openlineage_events.Naming(settings.openlineage_namespace(), settings.lake_root())
        graph = context.repository_def.asset_graph
        for record in records:
            transport.emit(openlineage_events.run_event(record, context.instance, graph, naming))
        transport.close()
    if records:
        context.update_cursor(str(records[-1].storage_id))
    sent = f"sent {len(records)}" if config else f"no OpenLineage transport configured: skipped {len(records)}"
    return dg.SkipReason(f"{sent} run event(s)")
