"""The clickstream_worker job: one long-lived run that lands Kafka micro-batches into Bronze and Silver
sessions, each batch an in-process run of its own with both materialisations."""

import dagster as dg

from lakehouse.defs import streaming_worker
from lakehouse_tests.helpers import DAYS, SCALE, SEED, START, total
from lakehouse_tests.kafka_fixtures import (  # noqa: F401 - fixtures
    broker,
    kafka,
    produce_days,
    stream_lake,
    stream_resources,
)

BATCH = 3000
BRONZE, SILVER = dg.AssetKey(["bronze", "clickstream_events"]), dg.AssetKey(["silver", "sessions"])


def work(resources: dict, instance: dg.DagsterInstance, **config) -> dg.ExecuteInProcessResult:
    return streaming_worker.clickstream_worker.execute_in_process(
        run_config={"ops": {"land_clickstream": {"config": config}}}, resources=resources, instance=instance
    )


def test_the_worker_lands_each_message_once_and_records_every_batch_as_a_run_of_bronze_and_silver(
    manifest, stream_resources
):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    sent = produce_days(kafka, "clickstream", START, DAYS, SCALE, SEED)
    instance = dg.DagsterInstance.ephemeral()
    worker = work(stream_resources, instance, max_batch=BATCH, stop_when_idle=True)
    assert worker.success

    landed = lake.delta_table("bronze", "clickstream_events").to_pyarrow_table(
        columns=["kafka_partition", "kafka_offset"]
    )
    assert landed.num_rows == len(set(zip(*landed.to_pydict().values(), strict=True))) == sent
    batch_runs = {r.run_id for r in instance.get_runs(dg.RunsFilter(tags={"lakehouse/worker_run": worker.run_id}))}
    assert len(batch_runs) >= sent // BATCH
    for key in (BRONZE, SILVER):
        assert {r.run_id for r in instance.fetch_materializations(key, limit=1000).records} == batch_runs
    sessions = lake.delta_table("silver", "sessions").to_pyarrow_table(columns=["session_id"])
    assert sessions.num_rows == total(manifest, "clickstream", "sessions")
    # tagged as the sensor's runs are, so the sensor counts the worker in flight (test_streaming) and waits
    assert instance.get_run_by_id(worker.run_id).tags["kafka/topic"] == kafka.topic("clickstream")
