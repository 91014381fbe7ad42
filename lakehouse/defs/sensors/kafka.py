"""Kafka sensors: one per topic, requesting a Bronze micro-batch run when the topic has new messages.

Each tick compares the topic's end offsets with what the Bronze table already holds (the source of
truth for progress) and requests one run for the offset range in between, with topic, partition and
offset range in the run key - so the same batch is never requested twice, and batches of different
partitions never collide. Nothing is committed to Kafka. A small batch waits up to `max_wait_seconds`
for more messages; a large backlog is split into runs of at most `max_batch` messages; while a run of
the topic is queued or running (`max_in_flight`), new messages wait for the next, bigger batch. The cursor only
remembers the last request, so a tick does not re-request a batch whose run is still in flight; if
that run never lands, the request is repeated after `retry_after_seconds` from Bronze's offsets, with
`~retry<n>` appended to the run key (Dagster never launches a run key twice).
Consumer lag (end offsets minus Bronze's next offsets) is logged on every tick and tagged on runs.
"""

import json
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import dagster as dg

from lakehouse import settings
from lakehouse.defs.bronze import streaming as bronze
from lakehouse.lib.kafka import KafkaResource
from lakehouse.lib.lake import DeltaLake


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def default_status() -> dg.DefaultSensorStatus:
    """On when a Kafka cluster is configured for this deployment (settings.configured_targets), off
    otherwise (turn on in the UI)."""
    configured = "kafka" in settings.configured_targets()
    return dg.DefaultSensorStatus.RUNNING if configured else dg.DefaultSensorStatus.STOPPED


def batch_ranges(start: dict[int, int], ends: dict[int, int], max_batch: int) -> dict[int, tuple[int, int]]:
    """Offset ranges per partition with new messages, at most `max_batch` messages in all."""
    pending = {p: (start.get(p, 0), end) for p, end in sorted(ends.items()) if end > start.get(p, 0)}
    if not pending:
        return {}
    share = max(1, max_batch // len(pending))
    return {p: (s, min(e, s + share)) for p, (s, e) in pending.items()}


def run_key(topic: str, ranges: dict[int, tuple[int, int]]) -> str:
    return f"{topic}:" + ",".join(f"p{p}:{s}-{e}" for p, (s, e) in sorted(ranges.items()))


@dataclass(frozen=True)
class BatchPolicy:
    """How a topic's sensor cuts its backlog into Bronze runs (see the module docstring)."""

    min_batch: int = 1  # fewer new messages than this wait ...
    max_batch: int = 50_000  # messages per run at most
    max_wait_seconds: float = 10.0  # ... up to this long for more
    max_in_flight: int = 1  # queued or running runs of the topic before new messages wait for the next batch
    retry_after_seconds: float = 300.0  # a requested batch that has not landed by then is requested again


@dataclass(frozen=True)
class Cursor:
    """What a sensor remembers between ticks: its last request (a hint; Bronze's offsets are the truth)."""

    requested: dict[int, int] = field(default_factory=dict)  # per partition, the end offset last requested
    requested_at: float = 0  # when the last batch was requested
    waiting_since: float | None = None  # when a batch smaller than `min_batch` started waiting
    last_key: str | None = None  # the last request's run key, without its `~retry<n>` suffix
    attempt: int = 0  # how many times that range was requested again

    @classmethod
    def from_json(cls, text: str | None) -> "Cursor":
        """The cursor a sensor stored (partition numbers are JSON object keys, so strings); None or "" = none."""
        stored = json.loads(text) if text else {}
        return cls(
            requested={int(p): int(e) for p, e in (stored.get("requested") or {}).items()},
            requested_at=stored.get("requested_at", 0),
            waiting_since=stored.get("waiting_since"),
            last_key=stored.get("last_key"),
            attempt=stored.get("attempt", 0),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "requested": {str(p): e for p, e in self.requested.items()},
                "requested_at": self.requested_at,
                "waiting_since": self.waiting_since,
                "last_key": self.last_key,
                "attempt": self.attempt,
            }
        )


def evaluate(
    stream: bronze.Stream,
    asset_key: dg.AssetKey,
    kafka: KafkaResource,
    lake: DeltaLake,
    cursor: Cursor,
    now: float,
    policy: BatchPolicy,
    log=None,
    in_flight: int = 0,
) -> tuple[dg.RunRequest | dg.SkipReason, Cursor]:
    """One tick, as a pure function of (topic offsets, Bronze offsets, cursor, time): (request or skip, new cursor).

    `in_flight` is how many Bronze runs of the topic are queued or running now."""
    topic = kafka.topic(stream.topic)
    try:
        now_at = bronze.progress(stream, kafka, lake)
    except Exception as e:  # noqa: BLE001 - a broker outage must not fail the tick forever
        return dg.SkipReason(f"{topic}: broker unavailable ({e})"), cursor
    ends = now_at.topic_now.end
    if not ends:
        return dg.SkipReason(f"{topic}: topic does not exist (yet)"), cursor
    if resets := now_at.resets():
        # Requesting runs would only fail them: say it on every tick until someone starts a new epoch.
        unlanded = sum(e - now_at.topic_now.start[p] for p, e in ends.items())
        message = (
            f"{topic} was reset or recreated ({'; '.join(resets)}); lag {unlanded} unlanded. "
            f"Run `lakehouse kafka-epoch {stream.table}` to land it as epoch {now_at.epoch + 1}"
        )
        if log:
            log.error(message)
        return dg.SkipReason(message), cursor
    if log and (gaps := now_at.gaps()):
        log.warning(f"{topic}: retention deleted offsets {gaps} before Bronze landed them")
    start, lag = now_at.start, now_at.lag()
    if cursor.requested and now - cursor.requested_at < policy.retry_after_seconds:
        # A batch is in flight: new work starts after it (the cursor is a hint; the run checks Bronze).
        for p, end in cursor.requested.items():
            start[p] = max(start.get(p, 0), end)
    new = sum(max(0, end - start.get(p, 0)) for p, end in ends.items())
    total_lag = sum(lag.values())
    if log:
        log.info(
            f"{topic}: lag {total_lag} ({json.dumps({str(p): v for p, v in lag.items()})}), {new} not yet requested"
        )
    if new == 0:
        if total_lag:
            return dg.SkipReason(
                f"{topic}: every message is in a requested batch that has not landed yet (lag {total_lag})"
            ), cursor
        return dg.SkipReason(f"{topic}: no new messages (lag 0)"), cursor
    if in_flight >= policy.max_in_flight:
        # Backpressure: while Bronze is busy, new messages wait and go into the next (bigger) batch.
        return dg.SkipReason(
            f"{topic}: {in_flight} batch run(s) in flight, {new} new message(s) wait "
            f"for the next batch (lag {total_lag})"
        ), cursor
    waiting_since = cursor.waiting_since or now
    if new < policy.min_batch and now - waiting_since < policy.max_wait_seconds:
        return (
            dg.SkipReason(
                f"{topic}: {new} new message(s) < batch size {policy.min_batch}, waiting up to "
                f"{policy.max_wait_seconds:.0f}s (lag {total_lag})"
            ),
            replace(cursor, waiting_since=waiting_since),
        )
    ranges = batch_ranges(start, ends, policy.max_batch)
    key, attempt = run_key(topic, ranges), 0
    if key == cursor.last_key:
        # The same range again: its run failed or never ran. Dagster skips a run key it has seen, so the
        # retry gets its own (the run still starts from Bronze's offsets, so a late first run adds nothing).
        attempt = cursor.attempt + 1
        key = f"{key}~retry{attempt}"
    request = dg.RunRequest(
        run_key=key,
        partition_key=today(),
        asset_selection=[asset_key],
        run_config=dg.RunConfig(
            ops={
                asset_key.to_python_identifier(): bronze.KafkaBatch(
                    end_offsets={str(p): e for p, (_, e) in ranges.items()}
                )
            }
        ),
        tags={
            "kafka/topic": topic,
            "kafka/lag": str(total_lag),
            "kafka/messages": str(sum(e - s for s, e in ranges.values())),
        },
    )
    requested = cursor.requested | {p: e for p, (_, e) in ranges.items()}
    return request, Cursor(
        requested=requested, requested_at=now, waiting_since=None, last_key=run_key(topic, ranges), attempt=attempt
    )


def runs_in_flight(context: dg.SensorEvaluationContext, topic: str) -> int:
    """Queued or running Bronze runs of this topic (0 when evaluated without an instance, e.g. in a test)."""
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:
        return 0
    return instance.get_runs_count(dg.RunsFilter(tags={"kafka/topic": topic}, statuses=list(IN_FLIGHT)))


IN_FLIGHT = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)


def kafka_sensor(
    stream: bronze.Stream,
    asset: dg.AssetsDefinition,
    min_batch: int = 1,
    max_batch: int = 50_000,
    max_wait_seconds: float = 10.0,
    retry_after_seconds: float = 300.0,
    interval_seconds: int = 5,
    max_in_flight: int = 1,
) -> dg.SensorDefinition:
    """The sensor of `stream`'s topic, requesting runs of `asset` as a `BatchPolicy` of these knobs says."""
    policy = BatchPolicy(
        min_batch=min_batch,
        max_batch=max_batch,
        max_wait_seconds=max_wait_seconds,
        max_in_flight=max_in_flight,
        retry_after_seconds=retry_after_seconds,
    )

    @dg.sensor(
        name=f"kafka_{stream.topic}",
        description=f"Requests bronze/{stream.table} micro-batches for new messages on Kafka topic `{stream.topic}`.",
        asset_selection=[asset.key],
        minimum_interval_seconds=interval_seconds,
        default_status=default_status(),
    )
    def _sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource, lake: DeltaLake):
        outcome, cursor = evaluate(
            stream,
            asset.key,
            kafka,
            lake,
            Cursor.from_json(context.cursor),
            time.time(),
            policy,
            context.log,
            runs_in_flight(context, kafka.topic(stream.topic)),
        )
        if isinstance(outcome, dg.SkipReason):
            return dg.SensorResult(skip_reason=outcome, cursor=cursor.to_json())
        return dg.SensorResult(run_requests=[outcome], cursor=cursor.to_json())

    return _sensor


clickstream_sensor = kafka_sensor(bronze.CLICKSTREAM, bronze.clickstream_events)
support_tickets_sensor = kafka_sensor(bronze.SUPPORT_TICKETS, bronze.support_ticket_changes)

# Declarative automation for what streaming Bronze feeds, in its own sensor so that it runs without
# anyone toggling the default automation sensor, ticks often, and can be switched off on its own.
streaming_automation_sensor = dg.AutomationConditionSensorDefinition(
    "streaming_automation",
    target=dg.AssetSelection.assets(bronze.clickstream_events, bronze.support_ticket_changes).downstream(
        depth=1, include_self=False
    ),
    minimum_interval_seconds=5,
    default_status=default_status(),
    description="Materialises Silver sessions / support tickets when streaming Bronze changes "
    "(their automation conditions).",
)
SENSORS = [clickstream_sensor, support_tickets_sensor, streaming_automation_sensor]
