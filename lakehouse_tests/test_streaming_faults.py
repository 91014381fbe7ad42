"""Streaming under faults: a topic recreated or reset, offsets deleted by retention before they landed,
partitions added, events landing in an earlier partition, messages Silver must quarantine.

Tests run on tansu and on Apache Kafka, except where tansu lacks the admin call (DeleteRecords,
CreatePartitions): those run on Apache Kafka only. Expected figures are the messages each test sends."""

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import NewPartitions

from lakehouse.defs.bronze import streaming as bronze
from lakehouse.defs.sensors import kafka as sensors
from lakehouse.defs.silver import sessions as silver_sessions
from lakehouse.lib.kafka import KafkaResource
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.spark import SparkEngine
from lakehouse_tests.helpers import SCALE, SEED, START, read_rows, total
from lakehouse_tests.kafka_fixtures import (  # noqa: F401 - fixtures
    PARTITIONS,
    broker,
    kafka,
    materialization,
    produce_day,
    run,
    session_broker,
    stream_lake,
    stream_resources,
)

TODAY = datetime.now(UTC).date()
YESTERDAY = TODAY - timedelta(days=1)
CLICKS, TABLE = bronze.clickstream_events, "clickstream_events"


def event(n: int, user: str = "u1", minute: int | None = None) -> bytes:
    ts = datetime(2026, 11, 1, 10, tzinfo=UTC) + timedelta(minutes=n if minute is None else minute)
    return json.dumps(
        {"event_id": f"E{n}", "user_id": user, "event_type": "page_view", "page": "/", "event_ts": ts.isoformat()}
    ).encode()


def produce(kafka: KafkaResource, values: list[bytes | None], partition: int = 0) -> None:
    producer = kafka.producer()
    for value in values:
        producer.produce(kafka.topic("clickstream"), value=value, partition=partition)
    assert producer.flush(30) == 0


def land(resources: dict, partition: date = TODAY, instance=None, **config) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [CLICKS],
        resources=resources,
        partition_key=partition.isoformat(),
        raise_on_error=False,
        instance=instance,
        run_config=dg.RunConfig(ops={CLICKS.op.name: bronze.KafkaBatch(**config)}),
    )


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def recreate_topic(kafka: KafkaResource) -> None:
    """Delete the topic and create it again under the same name (Kafka deletes asynchronously)."""
    admin, topic = kafka.admin(), kafka.topic("clickstream")
    admin.delete_topics([topic])[topic].result(30)
    deadline = time.monotonic() + 60
    while True:
        try:
            kafka.create_topic("clickstream", PARTITIONS)
            if kafka.offsets("clickstream").end == {p: 0 for p in range(PARTITIONS)}:
                return
        except KafkaException:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def test_a_recreated_topic_fails_the_run_naming_topic_partition_and_offsets_until_a_new_epoch_is_started(
    stream_resources,
):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    produce(kafka, [event(n) for n in range(6)])
    assert materialization(land(stream_resources), CLICKS)["rows_written"] == 6
    recreate_topic(kafka)
    produce(kafka, [event(n) for n in range(100, 102)])
    version = lake.delta_table("bronze", TABLE).version()

    failed = land(stream_resources)
    assert not failed.success
    error = str(failed.failure_data_for_node(CLICKS.op.name).error.cause.message)
    topic = kafka.topic("clickstream")
    assert f"bronze.{TABLE}: Kafka topic {topic} does not continue epoch 0 of Bronze" in error
    assert "partition 0 ends at offset 2, below offset 5 already landed" in error
    assert f"run `lakehouse kafka-epoch {TABLE}`: epoch 1 then lands it from its first offset" in error
    assert lake.delta_table("bronze", TABLE).version() == version  # nothing landed
    # The sensor says so on every tick instead of reporting lag 0.
    tick = sensors.kafka_sensor(bronze.CLICKSTREAM, CLICKS)(
        dg.build_sensor_context(resources={"kafka": kafka, "lake": lake})
    )
    assert "reset or recreated" in tick.skip_reason.skip_message and "lag 2 unlanded" in tick.skip_reason.skip_message

    assert bronze.start_new_epoch(lake, TABLE) == 1
    meta = materialization(land(stream_resources), CLICKS)
    assert (meta["rows_written"], meta["kafka/epoch"], meta["kafka/lag"]) == (2, 1, 0)
    rows = read_rows(lake, "bronze", TABLE)
    assert sorted((r["kafka_epoch"], r["kafka_offset"]) for r in rows) == [(0, n) for n in range(6)] + [(1, 0), (1, 1)]
    assert len({r["kafka_topic_id"] for r in rows}) == 2
    assert materialization(land(stream_resources), CLICKS)["rows_written"] == 0  # progress is per epoch


def test_lag_counts_every_unlanded_message_even_inside_one_record_batch(stream_resources):
    """tansu's watermark trails by a record batch: ten messages in one flush are one batch."""
    produce(stream_resources["kafka"], [event(n) for n in range(10)])
    result = land(stream_resources, end_offsets={"0": 4})
    meta = materialization(result, CLICKS)
    assert (meta["rows_written"], meta["kafka/lag"], meta["kafka/lag_by_partition"]) == (4, 6, {"0": 6, "1": 0, "2": 0})
    assert {name: e.passed for name, e in checks(result).items()} == {
        "rows_accounted_for": True,
        "offsets_unique": True,
        "no_offsets_skipped": True,
    }


@pytest.fixture
def apache_kafka(request, tmp_path_factory, stream_lake, sail_url) -> dict:
    """Resources on Apache Kafka only: tansu has no DeleteRecords or CreatePartitions."""
    broker = session_broker(request.config, "kafka", tmp_path_factory)
    kafka = KafkaResource(bootstrap_servers=broker.bootstrap, topic_prefix=f"{request.node.name}.")
    kafka.create_topic("clickstream", PARTITIONS)
    return {"spark": SparkEngine(remote=sail_url), "lake": stream_lake, "kafka": kafka}


def test_offsets_deleted_by_retention_before_landing_are_recorded_and_fail_a_check(apache_kafka):
    kafka = apache_kafka["kafka"]
    produce(kafka, [event(n) for n in range(10)])
    land(apache_kafka, end_offsets={"0": 4})
    admin, before_7 = kafka.admin(), TopicPartition(kafka.topic("clickstream"), 0, 7)
    admin.delete_records([before_7])[before_7].result(30)  # as retention would: 4, 5 and 6 gone unlanded

    result = land(apache_kafka)
    meta, check = materialization(result, CLICKS), checks(result)["no_offsets_skipped"]
    assert result.success and meta["rows_written"] == 3 and meta["kafka/retention_gaps"] == {"0": [4, 7]}
    assert not check.passed and check.metadata["offsets_skipped"].value == 3
    assert f"{kafka.topic('clickstream')}: retention deleted 3 offset(s) before Bronze landed them" in check.description
    rows = read_rows(apache_kafka["lake"], "bronze", TABLE)
    assert sorted(r["kafka_offset"] for r in rows) == [0, 1, 2, 3, 7, 8, 9]


def test_a_partition_added_to_the_topic_is_landed_from_its_first_offset(apache_kafka):
    kafka, instance = apache_kafka["kafka"], dg.DagsterInstance.ephemeral()  # keeps the previous batch's metadata
    produce(kafka, [event(n) for n in range(3)])
    land(apache_kafka, instance=instance)
    admin = kafka.admin()
    admin.create_partitions([NewPartitions(kafka.topic("clickstream"), PARTITIONS + 1)])[
        kafka.topic("clickstream")
    ].result(30)
    produce(kafka, [event(n) for n in range(10, 14)], partition=PARTITIONS)

    meta = materialization(land(apache_kafka, instance=instance), CLICKS)
    assert (meta["rows_written"], meta["kafka/new_partitions"], meta["kafka/lag"]) == (4, [PARTITIONS], 0)
    rows = read_rows(apache_kafka["lake"], "bronze", TABLE)
    assert sorted(r["kafka_offset"] for r in rows if r["kafka_partition"] == PARTITIONS) == [0, 1, 2, 3]


def test_events_landed_in_an_earlier_partition_still_reach_silver(manifest, stream_resources, spark):
    """Day 2 lands in yesterday's partition after today's was sessionised (a by-hand run of yesterday,
    a batch requested before midnight): Silver must take it all the same."""
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    produce_day(kafka, "clickstream", START, 0, SCALE, SEED)
    land(stream_resources, TODAY)
    run(stream_resources, silver_sessions.sessions, TODAY.isoformat())
    produce_day(kafka, "clickstream", START, 1, SCALE, SEED)
    produce_day(kafka, "clickstream", START, 2, SCALE, SEED)
    land(stream_resources, YESTERDAY)
    run(stream_resources, silver_sessions.sessions, TODAY.isoformat())

    landed = read_rows(lake, "bronze", TABLE)
    assert {r["_ingest_date"] for r in landed} == {TODAY, YESTERDAY}
    valid = {
        r["event_id"] for r in landed if not r["_parse_error"] and r["event_id"] and r["user_id"] and r["event_ts"]
    }  # the generator's malformed events are the unparseable messages
    sessions = read_rows(lake, "silver", "sessions")
    assert sum(s["page_count"] for s in sessions) == len(valid) > total(manifest, "clickstream", "events") * 0.9
    full = silver_sessions.sessionise(silver_sessions.valid_events(lake.read(spark, "bronze", TABLE)))
    assert len(sessions) == full.count()
    assert lake.read(spark, "silver", "sessions").select(*full.columns).exceptAll(full).count() == 0


def test_silver_quarantines_the_events_it_rejects_with_the_rule_and_accounts_for_every_row(stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    no_time = json.dumps({"event_id": "E9", "user_id": "u1", "event_ts": "yesterday"}).encode()
    no_user = json.dumps({"event_id": "E8", "event_ts": "2026-11-01T10:00:00Z"}).encode()
    produce(kafka, [event(1), event(2), event(1), b"{not json", None, no_time, no_user, b"[1,2]"])
    land(stream_resources)

    result = run(stream_resources, silver_sessions.sessions, TODAY.isoformat())
    meta = materialization(result, silver_sessions.sessions)
    assert (meta["rows_read"], meta["rows_written"], meta["rows_superseded"], meta["rows_quarantined"]) == (8, 2, 1, 5)
    assert (
        meta["quarantined/message_is_json_object"],
        meta["quarantined/user_id_not_null"],
        meta["quarantined/event_ts_is_timestamp"],
    ) == (3, 1, 1)
    [accounted] = result.get_asset_check_evaluations()
    assert accounted.check_name == "rows_accounted_for" and accounted.passed
    quarantine = read_rows(lake, "silver", "sessions_quarantine")
    assert sorted(q["_rule"] for q in quarantine) == [
        "event_ts_is_timestamp",
        "message_is_json_object",
        "message_is_json_object",
        "message_is_json_object",
        "user_id_not_null",
    ]
    assert all(q["_source_file"].startswith(f"kafka:/{kafka.topic('clickstream')}/epoch0/0/") for q in quarantine)
    assert "silver.sessions.event_ts breaks event_ts_is_timestamp: must be an ISO-8601 timestamp" in {
        q["_reason"] for q in quarantine
    }
    # Re-running finds nothing new and quarantines nothing twice.
    again = materialization(
        run(stream_resources, silver_sessions.sessions, TODAY.isoformat()), silver_sessions.sessions
    )
    assert again["rows_read"] == 0 and len(read_rows(lake, "silver", "sessions_quarantine")) == 5


def test_two_processes_with_their_own_temp_folders_land_each_message_once(broker, sail_url, tmp_path):
    """Two `dagster asset materialize` processes at once, each with its own TMPDIR (so the file lock of
    one host cannot serialise them, as on two hosts): the instance's pool does, and each offset lands once."""
    kafka = KafkaResource(bootstrap_servers=broker.bootstrap, topic_prefix="")  # the code location's topics
    kafka.create_topic("clickstream", PARTITIONS)
    for partition in range(PARTITIONS):
        produce(kafka, [event(n) for n in range(100)], partition)
    (tmp_path / "dagster").mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "dagster.yaml", tmp_path / "dagster")
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:  # its SQLite databases, made once
        instance.get_runs_count()
        instance.event_log_storage.get_concurrency_keys()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "LAKEHOUSE_HOME": str(tmp_path / "home"),
        "LAKEHOUSE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "LAKEHOUSE_SPARK_REMOTE": sail_url,
    }
    runs = []
    for name in ("host-a", "host-b"):
        (tmp_path / name).mkdir()
        runs.append(
            subprocess.Popen(
                [
                    "dagster",
                    "asset",
                    "materialize",
                    "-m",
                    "lakehouse.definitions",
                    "--select",
                    f"bronze/{TABLE}",
                    "--partition",
                    TODAY.isoformat(),
                ],
                env={**env, "TMPDIR": str(tmp_path / name)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for process in runs:
        assert process.wait(300) == 0, process.stderr.read()[-3000:]
    rows = read_rows(DeltaLake(root=str(tmp_path / "home" / "lake")), "bronze", TABLE)
    landed = [(r["kafka_partition"], r["kafka_offset"]) for r in rows]
    assert len(landed) == len(set(landed)) == 100 * PARTITIONS


def test_two_hosts_first_batches_written_at_the_same_moment_land_each_message_once(kafka, stream_lake, monkeypatch):
    """Both hosts read an absent table and start their writes together, with neither the file lock nor the pool
    between them (in one CI run the pool did not keep two first batches apart). delta-rs would retry the create
    that loses the race as an append, unchecked, and land every message twice; without commit retries it fails,
    and that host's batch is read again and lands nothing."""
    for partition in range(PARTITIONS):
        produce(kafka, [event(n) for n in range(100)], partition)
    monkeypatch.setattr(DeltaLake, "lock", lambda self, layer, table: contextlib.nullcontext())
    write, together = bronze.write_deltalake, threading.Barrier(2)

    def write_together(*args, **kwargs):
        with contextlib.suppress(threading.BrokenBarrierError):  # a batch read again writes alone
            together.wait(timeout=10)
        return write(*args, **kwargs)

    monkeypatch.setattr(bronze, "write_deltalake", write_together)
    with ThreadPoolExecutor(2) as hosts:
        batches = list(hosts.map(lambda host: bronze.ingest(bronze.CLICKSTREAM, kafka, stream_lake, TODAY, host), "ab"))
    assert sorted(batch.rows for batch in batches) == [0, 100 * PARTITIONS]
    landed = [(r["kafka_partition"], r["kafka_offset"]) for r in read_rows(stream_lake, "bronze", TABLE)]
    assert len(landed) == len(set(landed)) == 100 * PARTITIONS


@pytest.mark.parametrize("history", [0, 10], ids=["first-batch", "after-history"])
def test_a_batch_another_host_landed_while_it_read_is_read_again_and_lands_nothing_twice(
    kafka, stream_lake, monkeypatch, history
):
    """Two hosts' batches of the same offsets, with neither the file lock nor the pool between them: host b
    commits while host a is between reading progress and committing. Delta's conflict check (on the offsets'
    txn actions, or on the table host a saw absent) rejects host a's commit; read again, it lands nothing."""
    for partition in range(PARTITIONS):
        produce(kafka, [event(n) for n in range(history)], partition)
    if history:
        bronze.ingest(bronze.CLICKSTREAM, kafka, stream_lake, TODAY, "earlier")
    for partition in range(PARTITIONS):
        produce(kafka, [event(n) for n in range(history, history + 100)], partition)
    monkeypatch.setattr(DeltaLake, "lock", lambda self, layer, table: contextlib.nullcontext())
    read_range, host_b = KafkaResource.read_range, []

    def read_while_host_b_commits(self, topic, ranges):
        messages = read_range(self, topic, ranges)
        if not host_b:  # host a's first read: host b's whole batch runs now
            monkeypatch.setattr(KafkaResource, "read_range", read_range)
            host_b.append(bronze.ingest(bronze.CLICKSTREAM, kafka, stream_lake, TODAY, "host-b"))
        return messages

    monkeypatch.setattr(KafkaResource, "read_range", read_while_host_b_commits)
    host_a = bronze.ingest(bronze.CLICKSTREAM, kafka, stream_lake, TODAY, "host-a")
    assert (host_b[0].rows, host_a.rows) == (100 * PARTITIONS, 0)
    rows = read_rows(stream_lake, "bronze", TABLE)
    landed = [(r["kafka_partition"], r["kafka_offset"]) for r in rows]
    assert len(landed) == len(set(landed)) == (history + 100) * PARTITIONS
    assert {r["_run_id"] for r in rows} == ({"earlier", "host-b"} if history else {"host-b"})
