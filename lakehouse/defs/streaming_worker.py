"""A long-lived streaming worker for the clickstream: one run that lands micro-batches back to back, for a
rate the Kafka sensor's run per batch cannot reach on a small machine.

Under the default run launcher every micro-batch is a new process that loads the code location (5-20 s
on two loaded cores) before its 1-2 s of work, and Silver waits for its own run after that. This job's run
loads the code location and starts the engine once, then loops: the Kafka sensor's own batch decision
(`kafka.evaluate`, same policy and run keys), and for each batch one in-process run of Bronze and Silver
sessions together, recorded in the instance like any other run, each micro-batch a materialisation of
both assets with their checks. Silver is in the same run so that `streaming_automation` sees it in
progress, never behind, and launches no Silver run of its own. With `silver: false` the worker lands
Bronze only, faster, and Silver is left to `streaming_automation`'s runs, which wait for a pause between
batches (the automation condition starts no run while a parent is in progress): under sustained load Silver falls
behind, so it suits catching up a backlog rather than keeping latency low.

The worker tags its run with the topic's `kafka/topic`, so while it runs the `kafka_clickstream` sensor
counts it in flight and requests nothing. The trade-off: the batches run inside the worker's process, so
one failure ends the worker (the run fails and shows why; nothing lands twice, as Bronze's offsets are
the progress), run isolation and launcher retries do not apply to them, and the worker holds one of the
instance's concurrent-run slots for as long as it runs. Launch it from the UI's launchpad or with
`dagster job launch -j clickstream_worker`; it stops after `stop_after_seconds` (0: when terminated)."""

import time

import dagster as dg
from pydantic import Field

from lakehouse.defs.bronze import streaming as bronze
from lakehouse.defs.sensors import kafka as kafka_sensors
from lakehouse.defs.silver import sessions as silver_sessions
from lakehouse.lib.kafka import KafkaResource
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.spark import SparkEngine

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class WorkerConfig(dg.Config):
    max_batch: int = Field(default=100_000, description="Most messages per micro-batch")
    idle_seconds: float = Field(default=1.0, description="Pause when the topic has nothing new")
    stop_after_seconds: float = Field(default=3600, description="Stop after this long (0: run until terminated)")
    stop_when_idle: bool = Field(default=False, description="Stop once the topic has nothing new (a catch-up run)")
    silver: bool = Field(
        default=True,
        description="Silver sessions in each micro-batch's run; off: Bronze only (more events/s), Silver left "
        "to streaming_automation, which waits for a pause between batches",
    )


@dg.op(description="Lands clickstream micro-batches into Bronze and Silver sessions, back to back.")
def land_clickstream(
    context: dg.OpExecutionContext, config: WorkerConfig, spark: SparkEngine, lake: DeltaLake, kafka: KafkaResource
) -> None:
    policy = kafka_sensors.BatchPolicy(max_batch=config.max_batch, max_wait_seconds=0)
    # Tagged with its topic as the sensor's runs are, so that the sensor counts it in flight and waits.
    context.instance.add_run_tags(context.run_id, {"kafka/topic": kafka.topic(bronze.CLICKSTREAM.topic)})
    resources = {"spark": spark, "lake": lake, "kafka": kafka}
    cursor, started, batches = kafka_sensors.Cursor(), time.time(), 0
    while not config.stop_after_seconds or time.time() - started < config.stop_after_seconds:
        outcome, cursor = kafka_sensors.evaluate(
            bronze.CLICKSTREAM, bronze.clickstream_events.key, kafka, lake, cursor, time.time(), policy
        )
        if isinstance(outcome, dg.SkipReason):
            if config.stop_when_idle:
                break
            time.sleep(config.idle_seconds)
            continue
        result = dg.materialize(
            [bronze.clickstream_events, silver_sessions.sessions] if config.silver else [bronze.clickstream_events],
            resources=resources,
            instance=context.instance,
            partition_key=outcome.partition_key,
            run_config={**outcome.run_config, **QUIET},
            tags={**outcome.tags, "lakehouse/worker_run": context.run_id},
            raise_on_error=False,
        )
        if not result.success:
            raise dg.Failure(f"micro-batch run {result.run_id} failed: see that run's logs")
        batches += 1
        context.log.info(f"batch {batches}: {outcome.tags['kafka/messages']} message(s) in run {result.run_id}")


@dg.job(
    description="Lands clickstream micro-batches into Bronze and Silver sessions in one long-lived run "
    "(instead of the kafka_clickstream sensor's run per batch)."
)
def clickstream_worker():
    land_clickstream()
