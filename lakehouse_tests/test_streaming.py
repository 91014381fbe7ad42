"""Streaming: Kafka -> sensor -> Bronze micro-batches (exactly once) -> Silver sessions and tickets.

Every test runs twice, against a real tansu broker (`[tansu]`) and a real Apache Kafka (`[kafka]`), each
one process for the session; every test has its own topics and lake. Expected figures come from the
generator's manifest (the producer publishes exactly the landing files' lines)."""

import json
import shutil
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from deltalake import write_deltalake

from lakehouse.defs.bronze import streaming as bronze
from lakehouse.defs.sensors import kafka as sensors
from lakehouse.defs.silver import sessions as silver_sessions
from lakehouse.defs.silver import support_tickets as silver_tickets
from lakehouse.dev.broker import KafkaBroker
from lakehouse.lib.kafka import KafkaResource, Messages
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.spark import SparkEngine
from lakehouse_tests.helpers import DAYS, SCALE, SEED, START, read_rows, total
from lakehouse_tests.kafka_fixtures import (  # noqa: F401 - fixtures
    PARTITIONS,
    broker,
    kafka,
    materialization,
    produce_day,
    produce_days,
    produce_json,
    run,
    stream_lake,
    stream_resources,
)

TODAY = datetime.now(UTC).date().isoformat()
CLICKS, TICKETS = bronze.clickstream_events, bronze.support_ticket_changes
PAGE_VIEW = {
    "event_id": "E1",
    "user_id": "u1",
    "event_type": "page_view",
    "page": "/",
    "event_ts": "2026-11-01T10:00:00Z",
}


def tick(sensor: dg.SensorDefinition, resources: dict, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(cursor=cursor, resources={"kafka": resources["kafka"], "lake": resources["lake"]})
    return sensor(context)


def run_requested(resources: dict, asset, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    return run(resources, asset, request.partition_key, request.run_config, request.tags)


def bronze_rows(lake, table: str) -> list[dict]:
    return read_rows(lake, "bronze", table) if lake.exists("bronze", table) else []


def offsets(rows: list[dict]) -> list[tuple]:
    return sorted((r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]) for r in rows)


def final_day(manifest: dict, source: str) -> dict:
    return manifest["sources"][source][max(manifest["sources"][source])]


def day1_events_sent_late(manifest: dict) -> int:
    """Day 1's clickstream events that the generator sends with day 2 (the manifest counts them there)."""
    days = manifest["sources"]["clickstream"]
    return days[sorted(days)[1]]["anomalies"]["late_events"]


def partition_zero(values: list, keys: list | None = None, stamps: list | None = None) -> Messages:
    """Messages at offsets 0, 1, ... of partition 0 of topic t, as read_range returns them."""
    n = len(values)
    return Messages("t", [0] * n, list(range(n)), keys or [None] * n, values, stamps or [1] * n)


def test_every_message_becomes_one_bronze_row_and_malformed_ones_say_why():
    values = [
        b'{"event_id":"E1","user_id":"u1","page":"/caf\xc3\xa9","product_id":null}',
        b'{"event_id":"E2","user_id":7,"page":{"a":1},"coupon":"X"}',  # non-strings kept as JSON text
        b'{"event_id":NaN}',  # refused by orjson, read by json
        b"[1,2]",
        None,
        b'{"event_id":"E3", oops',
        b'\xff{"event_id":"E4"}',
    ]
    messages = partition_zero(values, ["k"] * len(values), [1_700_000_000_000 + i for i in range(len(values))])
    rows = bronze.to_rows(bronze.CLICKSTREAM, messages, datetime(2026, 11, 1).date(), "run-1").to_pylist()

    assert [r["kafka_offset"] for r in rows] == list(range(7))
    assert [(r["event_id"], r["user_id"], r["page"]) for r in rows[:3]] == [
        ("E1", "u1", "/café"),
        ("E2", "7", '{"a": 1}'),
        ("NaN", None, None),
    ]
    assert [r["_rescued_data"] for r in rows] == [None, '{"coupon":"X"}', None, None, None, None, None]
    errors = [r["_parse_error"] for r in rows]
    assert errors[:5] == [None, None, None, "not a JSON object: list", "empty message (null payload)"]
    assert errors[5].startswith("invalid JSON: ") and errors[6].startswith("invalid JSON: ")
    assert rows[4]["_raw"] is None and rows[6]["_raw"] == '\ufffd{"event_id":"E4"}'
    assert all(r["event_id"] is None for r in rows[3:])
    assert {(r["_run_id"], r["_ingest_date"].isoformat()) for r in rows} == {("run-1", "2026-11-01")}


POISON = [  # (key, value): every kind of message a producer can send that is not a clean JSON object
    (b"k1", b'{"event_id":"deep","page":' + b"[" * 50_000 + b"]" * 50_000 + b"}"),  # deeper than Python recurses
    (b"k3", None),  # a tombstone
    (b"k4", b""),  # an empty value
    (b"\xff\xfe", b'{"event_id":"binary-key"}'),  # a key that is not text
    (b"k6", b"\xc3\x28 not UTF-8"),  # invalid UTF-8
    (b"k7", b'{"event_id":"big","page":"' + b"x" * 900_000 + b'"}'),  # near Kafka's default 1 MB message limit
]


def test_no_message_stops_a_batch_each_lands_with_its_raw_payload_and_reason():
    # Parses, but is nested too deeply for Python to write the field back as JSON text.
    depth = sys.getrecursionlimit() - 5
    edge = (b"k2", b'{"event_id":"edge","page":' + b"[" * depth + b"]" * depth + b"}")
    poison = [POISON[0], edge, *POISON[1:]]
    messages = partition_zero([value for _, value in poison], [key.decode("utf-8", "replace") for key, _ in poison])
    rows = bronze.to_rows(bronze.CLICKSTREAM, messages, datetime(2026, 11, 1).date(), "run-1").to_pylist()

    assert [r["kafka_offset"] for r in rows] == list(range(7))
    assert [r["event_id"] for r in rows] == [None, None, None, None, "binary-key", None, "big"]
    errors = [r["_parse_error"] or "" for r in rows]
    assert errors[0].startswith(("invalid JSON", "unreadable JSON: RecursionError"))
    assert errors[1].startswith(("invalid JSON", "unreadable JSON: RecursionError"))
    assert errors[2:4] == ["empty message (null payload)", "invalid JSON: Expecting value: line 1 column 1 (char 0)"]
    assert errors[4] == "" and errors[5].startswith("invalid JSON") and errors[6] == ""
    assert rows[0]["_raw"] == POISON[0][1].decode() and rows[2]["_raw"] is None and len(rows[6]["page"]) == 900_000
    assert rows[4]["kafka_key"] == "\ufffd\ufffd"


def test_a_field_holding_a_lone_surrogate_lands_as_a_parse_error_and_the_batch_goes_on():
    # orjson refuses the escape; `json` reads it into a str that UTF-8 (and so Parquet) cannot hold.
    values = [b'{"event_id":"E1","user_id":"\\ud800"}', b'{"event_id":"E2","user_id":"u2"}']
    rows = bronze.to_rows(bronze.CLICKSTREAM, partition_zero(values), datetime(2026, 11, 1).date(), "run-1").to_pylist()

    assert [(r["event_id"], r["user_id"], r["_raw"]) for r in rows] == [
        (None, None, values[0].decode()),
        ("E2", "u2", values[1].decode()),
    ]
    assert rows[0]["_parse_error"].startswith("unreadable JSON: UnicodeEncodeError") and rows[1]["_parse_error"] is None


def test_a_poison_message_neither_fails_the_run_nor_holds_back_the_messages_after_it(stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    producer = kafka.producer()
    for key, value in [(b"u1", b'{"event_id":"before"}'), *POISON, (b"u1", b'{"event_id":"after"}')]:
        producer.produce(kafka.topic("clickstream"), key=key, value=value, partition=0)
    assert producer.flush(30) == 0

    meta = materialization(run(stream_resources, CLICKS, TODAY), CLICKS)
    rows = sorted(bronze_rows(lake, CLICKS.key.path[-1]), key=lambda r: r["kafka_offset"])
    assert meta["rows_written"] == len(rows) == 8 and meta["kafka/lag"] == 0 and meta["malformed"] == 4
    assert [r["kafka_offset"] for r in rows] == list(range(8))
    assert (rows[0]["event_id"], rows[-1]["event_id"]) == ("before", "after")


def test_end_offsets_are_the_high_watermarks_on_kafka_and_probed_past_them_on_tansu_only(broker, kafka, monkeypatch):
    """Apache Kafka's high watermark is the next offset: taken as is, no probe. tansu's is the last record
    batch's base offset + 1 (one flush = one batch per partition, so 1 here): there the tail is read."""
    producer = kafka.producer()
    for partition, count in ((0, 5), (1, 3)):
        for _ in range(count):
            producer.produce(kafka.topic("clickstream"), value=b"{}", partition=partition)
    assert producer.flush(30) == 0
    probed, probe = [], KafkaResource._probe_tail
    monkeypatch.setattr(
        KafkaResource, "_probe_tail", lambda self, topic, marks: probed.append(dict(marks)) or probe(self, topic, marks)
    )

    assert kafka.end_offsets("clickstream") == {0: 5, 1: 3, 2: 0}
    assert probed == ([] if isinstance(broker, KafkaBroker) else [{0: 1, 1: 1, 2: 0}])


@pytest.fixture(scope="module")
def flowed(broker, manifest, sail_url, tmp_path_factory) -> dict:
    """The generator's days produced to both topics, then what a user's deployment does: one sensor tick per
    topic, the runs it requests, a tick once caught up, and the Silver runs. What each step gave, for the tests
    below (one scenario per broker)."""
    kafka = KafkaResource(bootstrap_servers=broker.bootstrap, topic_prefix=f"flow-{type(broker).__name__.lower()}.")
    for topic in ("clickstream", "support_tickets_cdc"):
        kafka.create_topic(topic, PARTITIONS)
    lake = DeltaLake(root=str(tmp_path_factory.mktemp("flow") / "lake"))
    resources = {"spark": SparkEngine(remote=sail_url), "lake": lake, "kafka": kafka}
    sent = {
        topic: produce_days(kafka, topic, START, DAYS, SCALE, SEED) for topic in ("clickstream", "support_tickets_cdc")
    }
    batches = {}
    for sensor, asset, topic in [
        (sensors.clickstream_sensor, CLICKS, "clickstream"),
        (sensors.support_tickets_sensor, TICKETS, "support_tickets_cdc"),
    ]:
        first = tick(sensor, resources)
        [request] = first.run_requests
        landed = materialization(run_requested(resources, asset, request), asset)
        batches[topic] = {"request": request, "landed": landed, "next_tick": tick(sensor, resources, first.cursor)}
    sessions = materialization(run(resources, silver_sessions.sessions, TODAY), silver_sessions.sessions)
    run(resources, silver_tickets.support_tickets, TODAY)
    return {
        "kafka": kafka,
        "lake": lake,
        "sent": sent,
        "batches": batches,
        "sessions_run": sessions,
        "clicks": bronze_rows(lake, CLICKS.key.path[-1]),
    }


def test_the_producer_sends_every_line_of_the_generated_days(flowed, manifest):
    assert flowed["sent"] == {
        topic: total(manifest, topic, "records") for topic in ("clickstream", "support_tickets_cdc")
    }


@pytest.mark.parametrize("topic", ["clickstream", "support_tickets_cdc"])
def test_one_tick_requests_one_run_named_by_topic_partition_and_range(flowed, topic):
    request = flowed["batches"][topic]["request"]
    assert request.partition_key == TODAY
    assert request.run_key.startswith(f"{flowed['kafka'].topic(topic)}:p0:0-")
    assert request.tags["kafka/lag"] == str(flowed["sent"][topic])


@pytest.mark.parametrize("topic", ["clickstream", "support_tickets_cdc"])
def test_the_requested_run_lands_every_message_and_the_next_tick_skips_with_lag_0(flowed, topic):
    batch = flowed["batches"][topic]
    assert batch["landed"]["rows_written"] == flowed["sent"][topic] and batch["landed"]["kafka/lag"] == 0
    assert "no new messages (lag 0)" in batch["next_tick"].skip_reason.skip_message


def test_bronze_holds_each_offset_once_in_todays_partition(flowed):
    clicks = flowed["clicks"]
    assert len(clicks) == len(set(offsets(clicks))) == flowed["sent"]["clickstream"]
    assert {r["_ingest_date"].isoformat() for r in clicks} == {TODAY}


def test_malformed_messages_land_with_their_raw_payload_and_reason(flowed, manifest):
    malformed = [r for r in flowed["clicks"] if r["_parse_error"]]
    assert len(malformed) == total(manifest, "clickstream", "malformed")
    assert all(r["_raw"] and r["event_id"] is None for r in malformed)
    assert (
        sorted(r["_parse_error"].split(":")[0] for r in malformed)
        == ["invalid JSON"] * (len(malformed) - DAYS) + ["unreadable JSON"] * DAYS
    )  # cut-off lines, and one poison message a day


def test_unknown_fields_are_rescued(flowed, manifest):
    rescued = sum(r["_rescued_data"] is not None for r in flowed["clicks"])
    assert rescued == total(manifest, "clickstream", "unknown_columns")


def test_silver_sessions_hold_every_event_exactly_once(flowed, manifest):
    sessions = read_rows(flowed["lake"], "silver", "sessions")
    assert len(sessions) == total(manifest, "clickstream", "sessions") == flowed["sessions_run"]["dagster/row_count"]
    assert sum(s["is_bounce"] for s in sessions) == total(manifest, "clickstream", "bounces")
    # Every event exactly once: produced minus re-sent duplicates minus malformed records.
    events = flowed["sent"]["clickstream"] - total(manifest, "clickstream", "duplicates", "malformed")
    assert sum(s["page_count"] for s in sessions) == events == total(manifest, "clickstream", "events")


def test_silver_support_tickets_hold_each_tickets_final_state(flowed, manifest):
    tickets = read_rows(flowed["lake"], "silver", "support_tickets")
    expected = final_day(manifest, "support_tickets_cdc")
    assert len(tickets) == expected["tickets"]
    assert sum(t["is_deleted"] for t in tickets) == expected["deleted"]
    for status in ("open", "pending", "closed"):
        assert sum(t["status"] == status and not t["is_deleted"] for t in tickets) == expected[status]


def test_replayed_batch_and_repeated_silver_runs_add_nothing(manifest, stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    sent = produce_days(kafka, "clickstream", START, DAYS, SCALE, SEED)
    [request] = tick(sensors.clickstream_sensor, stream_resources).run_requests
    run_requested(stream_resources, CLICKS, request)
    version = lake.delta_table("bronze", "clickstream_events").version()

    # The same offsets again (a retried run), and a hand-launched run with no config: nothing new.
    assert materialization(run_requested(stream_resources, CLICKS, request), CLICKS)["rows_written"] == 0
    assert materialization(run(stream_resources, CLICKS, TODAY), CLICKS)["rows_written"] == 0
    assert lake.delta_table("bronze", "clickstream_events").version() == version
    assert len(bronze_rows(lake, "clickstream_events")) == sent

    first = materialization(run(stream_resources, silver_sessions.sessions, TODAY), silver_sessions.sessions)
    again = materialization(run(stream_resources, silver_sessions.sessions, TODAY), silver_sessions.sessions)
    assert again["dagster/row_count"] == first["dagster/row_count"] == total(manifest, "clickstream", "sessions")
    assert again.get("rows_inserted", 0) == again.get("rows_updated", 0) == again.get("rows_deleted", 0) == 0


def test_concurrently_launched_batches_land_each_message_once(stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    sent = produce_days(kafka, "clickstream", START, 1, SCALE, SEED)
    [request] = tick(sensors.clickstream_sensor, stream_resources).run_requests
    results, barrier = [], threading.Barrier(3)

    def launch():
        barrier.wait()
        results.append(materialization(run_requested(stream_resources, CLICKS, request), CLICKS)["rows_written"])

    threads = [threading.Thread(target=launch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 0, sent]
    rows = bronze_rows(lake, "clickstream_events")
    assert len(rows) == len(set(offsets(rows))) == sent


def test_a_batch_that_dies_before_its_commit_leaves_nothing_and_the_next_run_takes_it_all(
    stream_resources, monkeypatch
):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    sent = produce_days(kafka, "clickstream", START, 1, SCALE, SEED)
    sensor = sensors.kafka_sensor(bronze.CLICKSTREAM, CLICKS, retry_after_seconds=0)
    first = tick(sensor, stream_resources)
    [request] = first.run_requests

    def killed(*_args, **_kwargs):
        raise RuntimeError("worker killed while writing")

    with monkeypatch.context() as patch:
        patch.setattr(bronze, "write_deltalake", killed)
        failed = dg.materialize(
            [CLICKS],
            resources=stream_resources,
            partition_key=request.partition_key,
            run_config=request.run_config,
            raise_on_error=False,
        )
    assert not failed.success
    assert not lake.exists("bronze", "clickstream_events")
    # The sensor asks again for the same range (progress is Bronze's, not the failed request's), under a
    # new run key: Dagster never launches a run key twice.
    [retry] = tick(sensor, stream_resources, first.cursor).run_requests
    assert retry.run_key == f"{request.run_key}~retry1" and retry.run_config == request.run_config
    assert materialization(run_requested(stream_resources, CLICKS, retry), CLICKS)["rows_written"] == sent


def test_sensor_splits_a_backlog_into_batches_that_cover_every_offset_once(stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    sent = produce_days(kafka, "clickstream", START, 1, SCALE, SEED)
    sensor = sensors.kafka_sensor(bronze.CLICKSTREAM, CLICKS, max_batch=600)
    cursor, keys = None, []
    while True:
        result = tick(sensor, stream_resources, cursor)
        cursor = result.cursor
        if not result.run_requests:
            break
        [request] = result.run_requests
        keys.append(request.run_key)
        assert sum(int(v) for v in [request.tags["kafka/messages"]]) <= 600
        run_requested(stream_resources, CLICKS, request)
    assert len(keys) == len(set(keys)) >= sent // 600
    rows = bronze_rows(lake, "clickstream_events")
    assert len(rows) == len(set(offsets(rows))) == sent
    partitions = {r["kafka_partition"] for r in rows}
    for p in partitions:  # contiguous from 0: no gap, no overlap
        assert sorted(r["kafka_offset"] for r in rows if r["kafka_partition"] == p) == list(
            range(sum(r["kafka_partition"] == p for r in rows))
        )


def test_silver_sessions_built_batch_by_batch_equal_a_full_recompute(manifest, stream_resources, spark):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    produce_days(kafka, "clickstream", START, DAYS, SCALE, SEED)
    sensor, cursor, batches = sensors.kafka_sensor(bronze.CLICKSTREAM, CLICKS, max_batch=1000), None, 0
    while (result := tick(sensor, stream_resources, cursor)).run_requests:
        cursor, batches = result.cursor, batches + 1
        run_requested(stream_resources, CLICKS, result.run_requests[0])
        run(stream_resources, silver_sessions.sessions, TODAY)
    assert batches >= 4
    full = silver_sessions.sessionise(silver_sessions.valid_events(lake.read(spark, "bronze", "clickstream_events")))
    incremental = lake.read(spark, "silver", "sessions")
    assert incremental.count() == full.count() == total(manifest, "clickstream", "sessions")
    assert incremental.select(*full.columns).exceptAll(full).count() == 0


def test_sensor_holds_new_messages_while_a_batch_of_the_topic_is_in_flight(stream_resources):
    from dagster._core.storage.dagster_run import DagsterRun

    kafka = stream_resources["kafka"]
    produce_days(kafka, "clickstream", START, 1, SCALE, SEED)
    instance = dg.DagsterInstance.ephemeral()
    context = lambda: dg.build_sensor_context(  # noqa: E731
        instance=instance, resources={"kafka": kafka, "lake": stream_resources["lake"]}
    )
    [request] = sensors.clickstream_sensor(context()).run_requests
    running = instance.add_run(
        DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED, tags=request.tags)
    )
    held = sensors.clickstream_sensor(context())
    assert not held.run_requests and "1 batch run(s) in flight" in held.skip_reason.skip_message
    instance.report_run_failed(running)  # it ended: the next tick requests again
    assert len(sensors.clickstream_sensor(context()).run_requests) == 1


def test_sensor_waits_for_a_full_batch_up_to_max_wait(stream_resources):
    kafka = stream_resources["kafka"]
    produce_json(
        kafka,
        "clickstream",
        [PAGE_VIEW],
        key=lambda r: r["user_id"],
    )
    patient = sensors.kafka_sensor(bronze.CLICKSTREAM, CLICKS, min_batch=100, max_wait_seconds=3600)
    result = tick(patient, stream_resources)
    assert not result.run_requests and "< batch size 100" in result.skip_reason.skip_message
    impatient = sensors.kafka_sensor(bronze.CLICKSTREAM, CLICKS, min_batch=100, max_wait_seconds=0)
    assert len(tick(impatient, stream_resources).run_requests) == 1


def test_late_events_reopen_their_sessions(manifest, stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    day1 = manifest["sources"]["clickstream"][START.isoformat()]
    late = day1_events_sent_late(manifest)

    produce_day(kafka, "clickstream", START, 0, SCALE, SEED)  # day 1, its late events held back
    run(stream_resources, CLICKS, TODAY)  # by hand, no sensor: everything up to the end offsets
    run(stream_resources, silver_sessions.sessions, TODAY)
    before = {s["session_id"]: s for s in read_rows(lake, "silver", "sessions")}
    assert len(before) == day1["sessions"]
    assert sum(s["page_count"] for s in before.values()) == day1["events"] - late

    produce_day(kafka, "clickstream", START, 1, SCALE, SEED)  # day 2 brings day 1's late events
    run(stream_resources, CLICKS, TODAY)
    meta = materialization(run(stream_resources, silver_sessions.sessions, TODAY), silver_sessions.sessions)
    after = {s["session_id"]: s for s in read_rows(lake, "silver", "sessions")}
    reopened = [k for k in before if after[k]["page_count"] > before[k]["page_count"]]
    day1_sessions = [s for s in after.values() if s["session_date"] == START]
    assert len(day1_sessions) == day1["sessions"]
    assert sum(s["page_count"] for s in day1_sessions) == day1["events"]
    assert 0 < len(reopened) <= late and meta["rows_updated"] == len(reopened)
    assert all(after[k]["session_end"] >= before[k]["session_end"] and not after[k]["is_bounce"] for k in reopened)


def click(event_id: str, at: str, user: str = "u1") -> dict:
    return {
        "event_id": event_id,
        "user_id": user,
        "event_type": "page_view",
        "page": "/",
        "event_ts": f"2026-11-01T{at}:00Z",
    }


def test_an_event_bridging_two_sessions_merges_them_and_leaves_older_sessions_alone(stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    produce_json(
        kafka,
        "clickstream",
        [
            click("E0", "08:00"),
            click("E1", "10:00"),
            click("E2", "10:10"),
            click("E3", "11:00"),
            click("E4", "11:05"),
            click("F1", "10:20", "u2"),
        ],
    )
    run(stream_resources, CLICKS, TODAY)
    run(stream_resources, silver_sessions.sessions, TODAY)
    assert len(read_rows(lake, "silver", "sessions")) == 4

    # 10:40 is 30 minutes after 10:10 and 20 before 11:00: the 10:00 and 11:00 sessions become one.
    produce_json(kafka, "clickstream", [click("E5", "10:40")])
    run(stream_resources, CLICKS, TODAY)
    meta = materialization(run(stream_resources, silver_sessions.sessions, TODAY), silver_sessions.sessions)
    after = {
        s["session_id"]: (s["page_count"], s["session_end"].strftime("%H:%M"))
        for s in read_rows(lake, "silver", "sessions")
    }
    assert after == {
        "u1-20261101T080000": (1, "08:00"),
        "u1-20261101T100000": (5, "11:05"),
        "u2-20261101T102000": (1, "10:20"),
    }
    assert (meta["rows_updated"], meta["rows_deleted"], meta["rows_inserted"]) == (1, 1, 0)


def test_silver_sessions_read_one_bronze_snapshot_so_a_batch_landing_meanwhile_waits(manifest, stream_resources, spark):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    day1 = manifest["sources"]["clickstream"][START.isoformat()]
    late = day1_events_sent_late(manifest)
    produce_day(kafka, "clickstream", START, 0, SCALE, SEED)
    run(stream_resources, CLICKS, TODAY)
    first = lake.delta_table("bronze", "clickstream_events")
    produce_day(kafka, "clickstream", START, 1, SCALE, SEED)
    run(stream_resources, CLICKS, TODAY)  # lands while a Silver run that pinned `first` is still working

    upto = silver_sessions.newest(first, "_ingested_at")
    new = silver_sessions.new_events(lake, spark, upto)
    days = silver_sessions.event_days(lake, spark, new, upto)
    recomputed, existing, _ = silver_sessions.affected_sessions(lake, spark, new, upto, days)
    assert existing is None  # nothing in Silver yet
    assert recomputed.count() == day1["sessions"]
    assert recomputed.agg({"page_count": "sum"}).first()[0] == day1["events"] - late

    meta = materialization(run(stream_resources, silver_sessions.sessions, TODAY), silver_sessions.sessions)
    assert meta["bronze/version"] == first.version() + 1


def ticket(ticket_id, seq, op, status="open", priority="normal"):
    return {
        "op": op,
        "ticket_id": ticket_id,
        "seq": seq,
        "customer_id": "C0000001",
        "status": status,
        "priority": priority,
        "subject": f"about {ticket_id}",
        "changed_at": f"2026-11-01T10:00:{seq:02d}Z",
    }


def test_cdc_changes_apply_by_sequence_number_not_arrival_order(stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    key = lambda r: r["ticket_id"]  # noqa: E731
    produce_json(
        kafka,
        "support_tickets_cdc",
        [
            ticket("T1", 2, "u", "pending"),
            ticket("T1", 1, "c"),  # update before its create, same batch
            ticket("T2", 1, "c"),
            ticket("T2", 3, "u", "closed"),  # seq 2 arrives in the next batch
            ticket("T3", 1, "c"),
            ticket("T3", 3, "d", "pending"),  # deleted; seq 2 arrives late
            ticket("T4", 1, "c", priority="low"),
            ticket("T4", 1, "c", priority="low"),  # re-sent duplicate
            '{"op":"u","ticket_id":"T5","se',  # cut off by a crashed producer
        ],
        key=key,
    )
    run(stream_resources, TICKETS, TODAY)
    first = materialization(
        run(stream_resources, silver_tickets.support_tickets, TODAY), silver_tickets.support_tickets
    )
    assert (first["rows_read"], first["rows_quarantined"], first["quarantined/message_is_json_object"]) == (9, 1, 1)

    produce_json(
        kafka,
        "support_tickets_cdc",
        [
            ticket("T2", 2, "u", "pending"),
            ticket("T3", 2, "u", "pending"),
            ticket("T4", 2, "u", priority="urgent"),
            ticket("T4", 1, "c", priority="low"),
        ],
        key=key,
    )
    run(stream_resources, TICKETS, (datetime.fromisoformat(TODAY) - timedelta(days=1)).date().isoformat())
    second = materialization(
        run(stream_resources, silver_tickets.support_tickets, TODAY), silver_tickets.support_tickets
    )
    # Landed in yesterday's partition after today's was applied: taken all the same; 3 of the 4 were stale.
    assert (second["rows_read"], second["rows_written"], second["rows_superseded"]) == (4, 1, 3)

    state = {t["ticket_id"]: t for t in read_rows(lake, "silver", "support_tickets")}
    assert sorted(state) == ["T1", "T2", "T3", "T4"]
    assert (state["T1"]["seq"], state["T1"]["status"], state["T1"]["is_deleted"]) == (2, "pending", False)
    assert (state["T2"]["seq"], state["T2"]["status"]) == (3, "closed")
    assert (state["T3"]["seq"], state["T3"]["op"], state["T3"]["is_deleted"]) == (3, "d", True)
    assert (state["T4"]["seq"], state["T4"]["priority"]) == (2, "urgent")

    malformed = [r for r in bronze_rows(lake, "support_ticket_changes") if r["_parse_error"]]
    assert [r["_raw"] for r in malformed] == ['{"op":"u","ticket_id":"T5","se']
    assert len(bronze_rows(lake, "support_ticket_changes")) == 13


def test_streaming_assets_are_in_the_code_location_with_sensors_and_automation():
    from lakehouse_tests.helpers import DEFS

    for key in [
        "bronze/clickstream_events",
        "bronze/support_ticket_changes",
        "silver/sessions",
        "silver/support_tickets",
    ]:
        assert DEFS.resolve_assets_def(dg.AssetKey.from_user_string(key))
    assert {s.name for s in DEFS.sensors} >= {"kafka_clickstream", "kafka_support_tickets_cdc", "streaming_automation"}
    automation = next(s for s in DEFS.sensors if s.name == "streaming_automation")
    silver = {
        dg.AssetKey(["silver", name])
        for name in ("sessions", "sessions_quarantine", "support_tickets", "support_tickets_quarantine")
    }
    assert automation.asset_selection.resolve(DEFS.resolve_asset_graph()) == silver
    for asset in (silver_sessions.sessions, silver_tickets.support_tickets):
        assert all(condition is not None for condition in asset.automation_conditions_by_key.values())
    assert "kafka" in DEFS.resources


def test_silver_follows_bronze_through_automation_without_a_click(stream_resources):
    kafka = stream_resources["kafka"]
    defs = dg.Definitions(assets=[CLICKS, silver_sessions.sessions], resources=stream_resources)
    instance = dg.DagsterInstance.ephemeral()
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0  # nothing in Bronze yet

    produce_json(
        kafka,
        "clickstream",
        [PAGE_VIEW],
        key=lambda r: r["user_id"],
    )
    [request] = tick(sensors.clickstream_sensor, stream_resources).run_requests
    result = dg.materialize(
        [CLICKS],
        resources=stream_resources,
        instance=instance,
        partition_key=request.partition_key,
        run_config=request.run_config,
    )
    assert result.success
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert after.get_requested_partitions(dg.AssetKey(["silver", "sessions"])) == {TODAY}
    assert after.get_requested_partitions(CLICKS.key) == set()


# -- Cost against history: progress from the Delta log, Silver from the partitions its history can reach --------


def remove_data_files(lake: DeltaLake, table: str, partition: str = "") -> None:
    """Delete a Bronze table's data files (of one `_ingest_date` partition): reading them now fails."""
    folder = Path(lake.path("bronze", table)) / (f"_ingest_date={partition}" if partition else "")
    removed = [path.unlink() for path in folder.rglob("*.parquet")]
    assert removed


def user_key(record: dict) -> str:
    return record["user_id"]


def events(prefix: str, count: int = 30) -> list[dict]:
    return [PAGE_VIEW | {"event_id": f"{prefix}{n}", "user_id": f"u{n}"} for n in range(count)]


def test_the_offset_lookup_and_the_tick_read_only_the_newest_bronze_rows(stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    produce_json(kafka, "clickstream", events("E"), user_key)
    run(stream_resources, CLICKS, "2026-11-01")
    produce_json(kafka, "clickstream", events("F"), user_key)  # the same keys: every partition advances
    run(stream_resources, CLICKS, "2026-11-03")
    ends = kafka.offsets("clickstream").end  # the topic's end: every offset below it landed
    assert sum(ends.values()) == 60 and all(ends.values())
    remove_data_files(lake, "clickstream_events", "2026-11-01")  # the first batch's files

    topic = kafka.topic("clickstream")
    assert bronze.landed(lake, "clickstream_events", topic, 0).next == ends
    dt = lake.delta_table("bronze", "clickstream_events")
    assert {p: dt.transaction_version(f"lakehouse.kafka/{topic}/epoch0/{p}") for p in ends} == ends
    assert dt.transaction_version(f"lakehouse.kafka/{topic}/epoch0/partitions") == PARTITIONS
    result = tick(sensors.kafka_sensor(bronze.CLICKSTREAM, CLICKS), stream_resources)
    assert result.skip_reason.skip_message == f"{topic}: no new messages (lag 0)"


def test_rows_deleted_from_bronze_are_landed_again_once_though_the_log_recorded_them(stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    produce_json(kafka, "clickstream", events("E"), user_key)
    run(stream_resources, CLICKS, TODAY)
    ends = kafka.offsets("clickstream").end
    lake.delta_table("bronze", "clickstream_events").delete("kafka_partition = 0 AND kafka_offset >= 2")  # a replay

    meta = materialization(run(stream_resources, CLICKS, TODAY), CLICKS)
    assert (meta["rows_written"], meta["kafka/offsets"]) == (ends[0] - 2, {"0": [2, ends[0]]})
    assert offsets(bronze_rows(lake, "clickstream_events")) == sorted(
        (kafka.topic("clickstream"), p, o) for p, end in ends.items() for o in range(end)
    )


def test_a_bronze_table_landed_before_progress_was_in_the_log_is_continued_exactly_once(stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    produce_json(
        kafka, "clickstream", [PAGE_VIEW | {"event_id": f"E{n}", "user_id": f"u{n}"} for n in range(30)], user_key
    )
    before = kafka.offsets("clickstream")
    # As a batch landed it before: rows only, no txn actions.
    landed = kafka.read_range("clickstream", {p: (0, end) for p, end in before.end.items()})
    rows = bronze.to_rows(bronze.CLICKSTREAM, landed, START, "earlier-run", 0, before.topic_id)
    write_deltalake(lake.path("bronze", "clickstream_events"), rows, mode="append", partition_by=["_ingest_date"])
    produce_json(kafka, "clickstream", [PAGE_VIEW | {"event_id": f"F{n}"} for n in range(5)], user_key)  # one partition

    assert materialization(run(stream_resources, CLICKS, TODAY), CLICKS)["rows_written"] == 5
    ends, topic = kafka.offsets("clickstream").end, kafka.topic("clickstream")
    assert sum(ends.values()) == 35
    # Every partition is recorded, those the batch did not advance included.
    dt = lake.delta_table("bronze", "clickstream_events")
    assert {p: dt.transaction_version(f"lakehouse.kafka/{topic}/epoch0/{p}") for p in ends} == ends
    assert bronze.landed(lake, "clickstream_events", topic, 0).next == ends


def test_a_sessions_run_reads_only_the_bronze_partitions_its_new_events_history_can_reach(stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    for day, events_of_day in [
        ("2026-11-01", [click("E1", "08:00"), click("F1", "09:00", "u2")]),
        ("2026-11-02", [click("G1", "08:00", "u3") | {"event_ts": "2026-11-02T08:00:00Z"}]),
    ]:
        produce_json(kafka, "clickstream", events_of_day)
        run(stream_resources, CLICKS, day)
        run(stream_resources, silver_sessions.sessions, TODAY)
    produce_json(kafka, "clickstream", [click("E2", "08:00") | {"event_ts": "2026-11-03T08:00:00Z"}])
    run(stream_resources, CLICKS, "2026-11-03")
    remove_data_files(lake, "clickstream_events", "2026-11-01")  # u1's new event is two days after its last

    meta = materialization(run(stream_resources, silver_sessions.sessions, TODAY), silver_sessions.sessions)
    assert (meta["rows_read"], meta["rows_inserted"], meta["rows_updated"]) == (1, 1, 0)
    assert sorted((s["session_id"], s["page_count"]) for s in read_rows(lake, "silver", "sessions")) == [
        ("u1-20261101T080000", 1),
        ("u1-20261103T080000", 1),
        ("u2-20261101T090000", 1),
        ("u3-20261102T080000", 1),
    ]
    # Days since 1970-01-01: 2026-11-01 is day 20758.
    stored = lake.delta_table("silver", "sessions").metadata().configuration[silver_sessions.LATEST_EVENT_DAYS]
    assert json.loads(stored) == {"2026-11-01": 20758, "2026-11-02": 20759, "2026-11-03": 20760}


def test_a_late_event_reads_the_partition_of_the_session_it_joins(stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    produce_json(kafka, "clickstream", [click("E1", "08:00"), click("E2", "08:20")])
    run(stream_resources, CLICKS, "2026-11-01")
    run(stream_resources, silver_sessions.sessions, TODAY)
    produce_json(kafka, "clickstream", [click("E3", "08:45")])  # 25 minutes after E2, landed two days later
    run(stream_resources, CLICKS, "2026-11-03")

    run(stream_resources, silver_sessions.sessions, TODAY)
    assert [(s["session_id"], s["page_count"]) for s in read_rows(lake, "silver", "sessions")] == [
        ("u1-20261101T080000", 3)
    ]
    stored = lake.delta_table("silver", "sessions").metadata().configuration[silver_sessions.LATEST_EVENT_DAYS]
    assert json.loads(stored) == {"2026-11-01": 20758, "2026-11-03": 20758}


def session_files(lake: DeltaLake) -> dict[str, set[str]]:
    """{session_date: its data files} of Silver sessions, from the Delta log."""
    files: dict[str, set[str]] = {}
    for path, day in lake.data_files("silver", "sessions", "session_date").items():
        files.setdefault(day, set()).add(path)
    return files


def on(day: str, event: dict) -> dict:
    return event | {"event_ts": event["event_ts"].replace("2026-11-01", day)}


@pytest.mark.parametrize("engine", ["sail", "local"])
def test_a_late_event_rewrites_only_the_date_of_the_session_it_joins(stream_resources, engine):
    """On Sail and on Apache Spark with Delta (`local`): the MERGE's literal partition filter is standard SQL."""
    if engine == "local":
        stream_resources = {**stream_resources, "spark": SparkEngine(remote="local")}
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    produce_json(
        kafka,
        "clickstream",
        [
            click("E1", "08:00"),
            click("E2", "08:20"),
            on("2026-11-02", click("F1", "09:00", "u2")),
            on("2026-11-03", click("G1", "10:00", "u3")),
        ],
    )
    run(stream_resources, CLICKS, "2026-11-03")
    run(stream_resources, silver_sessions.sessions, TODAY)
    before = session_files(lake)
    produce_json(kafka, "clickstream", [click("E3", "08:45")])  # 25 minutes after E2, landed a day later
    run(stream_resources, CLICKS, "2026-11-04")

    result = run(stream_resources, silver_sessions.sessions, TODAY)
    assert sorted((s["session_id"], s["page_count"]) for s in read_rows(lake, "silver", "sessions")) == [
        ("u1-20261101T080000", 3),
        ("u2-20261102T090000", 1),
        ("u3-20261103T100000", 1),
    ]
    assert lake.delta_table("silver", "sessions").metadata().partition_columns == ["session_date"]
    after = session_files(lake)
    assert after["2026-11-01"] != before["2026-11-01"]
    assert {d: after[d] for d in ("2026-11-02", "2026-11-03")} == {d: before[d] for d in ("2026-11-02", "2026-11-03")}
    assert all(check.passed for check in result.get_asset_check_evaluations())


def test_a_run_of_new_days_only_adds_their_files(stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    produce_json(kafka, "clickstream", [click("E1", "08:00"), click("F1", "09:00", "u2")])
    run(stream_resources, CLICKS, "2026-11-01")
    run(stream_resources, silver_sessions.sessions, TODAY)
    before = session_files(lake)
    produce_json(kafka, "clickstream", [on("2026-11-02", click("E2", "08:00")), on("2026-11-03", click("G1", "10:00"))])
    run(stream_resources, CLICKS, "2026-11-03")

    meta = materialization(run(stream_resources, silver_sessions.sessions, TODAY), silver_sessions.sessions)
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_deleted"]) == (2, 0, 0)
    after = session_files(lake)
    assert sorted(after) == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert after["2026-11-01"] == before["2026-11-01"]


def test_sessions_created_unpartitioned_before_stay_unpartitioned_and_right(stream_resources):
    kafka, lake = stream_resources["kafka"], stream_resources["lake"]
    produce_json(kafka, "clickstream", [click("E1", "10:00"), click("E2", "10:10"), click("E3", "11:00")])
    run(stream_resources, CLICKS, "2026-11-01")
    run(stream_resources, silver_sessions.sessions, TODAY)
    old = lake.delta_table("silver", "sessions")
    rows, properties = old.to_pyarrow_table(), old.metadata().configuration
    shutil.rmtree(lake.path("silver", "sessions"))  # as the asset wrote it before partitioning
    write_deltalake(lake.path("silver", "sessions"), rows)
    lake.delta_table("silver", "sessions").alter.set_table_properties(properties, raise_if_not_exists=False)
    assert lake.delta_table("silver", "sessions").metadata().partition_columns == []
    # 10:40 joins the 10:00 and 11:00 sessions; the next day's event starts one.
    produce_json(kafka, "clickstream", [click("E4", "10:40"), on("2026-11-02", click("E5", "09:00"))])
    run(stream_resources, CLICKS, "2026-11-02")

    result = run(stream_resources, silver_sessions.sessions, TODAY)
    assert sorted((s["session_id"], s["page_count"]) for s in read_rows(lake, "silver", "sessions")) == [
        ("u1-20261101T100000", 4),
        ("u1-20261102T090000", 1),
    ]
    assert lake.delta_table("silver", "sessions").metadata().partition_columns == []
    assert all(check.passed for check in result.get_asset_check_evaluations())


def test_a_session_lost_from_any_date_during_a_run_fails_its_accounting(stream_resources, monkeypatch):
    kafka = stream_resources["kafka"]
    produce_json(kafka, "clickstream", [click("E1", "08:00"), click("F1", "09:00", "u2")])
    run(stream_resources, CLICKS, "2026-11-01")
    run(stream_resources, silver_sessions.sessions, TODAY)
    produce_json(kafka, "clickstream", [on("2026-11-02", click("E2", "08:00"))])
    run(stream_resources, CLICKS, "2026-11-02")
    merge = DeltaLake.merge

    def merge_losing_u2(self, df, layer, table, *args, **kwargs):
        metadata = merge(self, df, layer, table, *args, **kwargs)
        if table == "sessions":
            self.delta_table(layer, table).delete("user_id = 'u2'")  # a day this run did not touch
        return metadata

    monkeypatch.setattr(DeltaLake, "merge", merge_losing_u2)
    [accounted] = run(stream_resources, silver_sessions.sessions, TODAY).get_asset_check_evaluations()
    assert not accounted.passed and "+1 row(s) unaccounted" in accounted.description
