"""Fixtures for the streaming tests: one real tansu broker per test session, on a free port, and per-test
Kafka topics (a topic prefix per test) and lakes, so tests share the broker but nothing else."""

import re
from datetime import date

import dagster as dg
import pytest

from lakehouse.bronze import streaming as bronze
from lakehouse.resources.kafka import KafkaResource
from lakehouse.resources.lake import DeltaLake
from lakehouse.resources.spark import SparkEngine
from lakehouse.sources.broker import Broker
from lakehouse.sources.producer import messages, publish, stream_days
from lakehouse.silver import sessions as silver_sessions
from lakehouse.silver import support_tickets as silver_tickets

PARTITIONS = 3
STREAMING_ASSETS = [bronze.clickstream_events, bronze.support_ticket_changes, silver_sessions.sessions,
                    silver_tickets.support_tickets]


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with Broker(log_file=log) as running:  # stopped when the session ends, pass or fail
        yield running


@pytest.fixture
def kafka(broker, request) -> KafkaResource:
    prefix = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:80] + "."
    resource = KafkaResource(bootstrap_servers=broker.bootstrap, topic_prefix=prefix)
    for topic in ("clickstream", "support_tickets_cdc"):
        resource.create_topic(topic, PARTITIONS)
    return resource


@pytest.fixture
def stream_lake(tmp_path) -> DeltaLake:
    return DeltaLake(root=str(tmp_path / "lake"))


@pytest.fixture
def stream_resources(sail_url, stream_lake, kafka) -> dict:
    return {"spark": SparkEngine(remote=sail_url), "lake": stream_lake, "kafka": kafka}


def produce_days(kafka: KafkaResource, source: str, start: date, days: int, scale: float, seed: int) -> int:
    """Publish whole generator days of `source` (the same lines as the landing files); returns messages sent."""
    return publish(kafka.producer(), kafka.topic(source), messages(source, start, days, scale, seed))["events"]


def produce_day(kafka: KafkaResource, source: str, start: date, index: int, scale: float, seed: int) -> int:
    """Publish day `index` of an open-ended stream (its late events held back for the next day)."""
    for i, (_, content) in enumerate(stream_days(start, None, scale, seed)):
        if i == index:
            lines = content[source].lines
            from lakehouse.sources.producer import message_key

            return publish(kafka.producer(), kafka.topic(source), ((message_key(source, l), l) for l in lines))["events"]
    raise AssertionError("unreachable")


def produce_json(kafka: KafkaResource, source: str, records: list, key=None) -> None:
    """Publish hand-written records (dicts, or raw strings for malformed payloads), one flush."""
    import json

    producer = kafka.producer()
    for record in records:
        value = record if isinstance(record, str) else json.dumps(record)
        k = key(record) if key and not isinstance(record, str) else None
        producer.produce(kafka.topic(source), value=value.encode(), key=k.encode() if k else None)
    assert producer.flush(30) == 0


def run(resources: dict, asset, partition_key: str, run_config=None, tags=None) -> dg.ExecuteInProcessResult:
    result = dg.materialize([asset], resources=resources, partition_key=partition_key, run_config=run_config,
                            tags=tags)
    assert result.success
    return result


def materialization(result: dg.ExecuteInProcessResult, asset) -> dict:
    [event] = result.asset_materializations_for_node(asset.op.name)
    return {k: v.value for k, v in event.metadata.items()}
