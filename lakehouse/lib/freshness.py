"""Per-partition freshness: a time partition is due a fixed time after its window ends, and its check fails
while the latest due partition has no materialisation.

This is Dagster's `build_time_partition_freshness_checks` with one difference. Dagster's expects "the last
partition window" at the deadline, which for partitions with `end_offset=1` (ours: streaming Bronze ingests
into today) is the day still in progress, so a batch layer would fail every day. Here the due partition is
the one whose window ended `deadline` or more ago. The results carry the metadata Dagster's freshness sensor
(`build_sensor_for_freshness_checks`) reads, so that sensor evaluates these checks: on a pass,
`dagster/fresh_until_timestamp`, when the next partition falls due."""

import warnings
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg

CHECK_NAME = "partition_freshness"
FRESH_UNTIL = "dagster/fresh_until_timestamp"  # what build_sensor_for_freshness_checks schedules on
LAST_UPDATED = "dagster/last_updated_timestamp"


def due_partition(
    partitions_def: dg.TimeWindowPartitionsDefinition, deadline: timedelta, now: datetime
) -> tuple[str, datetime, datetime]:
    """The latest partition due at `now` (its window ended `deadline` or more ago), when it fell due, and when
    the next one falls due."""
    current = partitions_def.time_window_for_partition_key(
        partitions_def.get_partition_key_for_timestamp((now - deadline).timestamp())
    )
    due = partitions_def.get_prev_partition_window(current.start)
    key = partitions_def.get_partition_key_range_for_time_window(due).start
    return key, due.end + deadline, current.end + deadline


def partition_freshness_check(
    name: str, specs: Iterable[dg.AssetSpec], deadline: timedelta, severity: dg.AssetCheckSeverity
) -> dg.AssetChecksDefinition:
    """One `partition_freshness` check per asset of `specs` (time-partitioned), all due `deadline` after
    their window ends."""
    partitions_defs = {spec.key: spec.partitions_def for spec in specs}
    description = f"The latest partition due (its window ended {deadline} h:m:s ago or more) has been materialised."

    @dg.multi_asset_check(
        name=name,
        specs=[dg.AssetCheckSpec(CHECK_NAME, asset=key, description=description) for key in partitions_defs],
        can_subset=True,
    )
    def _check(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        now = datetime.now(UTC)
        for check_key in context.selected_asset_check_keys:
            key = check_key.asset_key
            yield evaluate(context.instance, key, due_partition(partitions_defs[key], deadline, now), now, severity)

    return _check


def last_materialization(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None) -> float | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    return records[0].timestamp if records else None


def evaluate(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    due: tuple[str, datetime, datetime],
    now: datetime,
    severity: dg.AssetCheckSeverity,
) -> dg.AssetCheckResult:
    """Passed if the due partition (`due_partition`'s answer) has a materialisation."""
    partition, due_at, next_due = due
    overdue = int((now - due_at).total_seconds())
    metadata = {"partition": partition, "due_at": dg.MetadataValue.timestamp(due_at)}
    materialized = last_materialization(instance, key, partition)
    if materialized is not None:
        description = f"Partition {partition} was materialised; the next is due by {next_due:%Y-%m-%d %H:%M} UTC."
        metadata[FRESH_UNTIL] = dg.MetadataValue.timestamp(next_due)
    else:
        description = (
            f"{key.to_user_string()}: partition {partition} was due by {due_at:%Y-%m-%d %H:%M} UTC "
            f"and has not been materialised ({overdue} s overdue)."
        )
        metadata["overdue_seconds"] = overdue
        latest = last_materialization(instance, key, None)
        if latest is not None:
            metadata[LAST_UPDATED] = dg.MetadataValue.timestamp(latest)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=CHECK_NAME,
        passed=materialized is not None,
        severity=severity,
        description=description,
        metadata=metadata,
    )


def partition_freshness(
    specs: Iterable[dg.AssetSpec],
    deadlines: dict[str, timedelta],
    severity: dg.AssetCheckSeverity,
    sensor_name: str = "partition_freshness",
) -> dg.Definitions:
    """A check per layer of `deadlines` over the layer's time-partitioned assets, and Dagster's freshness
    sensor evaluating them, on by default."""
    by_layer: dict[str, list[dg.AssetSpec]] = {}
    for spec in specs:
        if spec.key.path[0] in deadlines and isinstance(spec.partitions_def, dg.TimeWindowPartitionsDefinition):
            by_layer.setdefault(spec.key.path[0], []).append(spec)
    checks = [
        partition_freshness_check(f"partition_freshness_{layer}", layer_specs, deadlines[layer], severity)
        for layer, layer_specs in sorted(by_layer.items())
    ]
    with warnings.catch_warnings():  # superseded by FreshnessPolicy, which judges assets, not partitions
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        sensor = dg.build_sensor_for_freshness_checks(
            freshness_checks=checks, name=sensor_name, default_status=dg.DefaultSensorStatus.RUNNING
        )
    return dg.Definitions(asset_checks=checks, sensors=[sensor])
