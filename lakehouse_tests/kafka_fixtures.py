"""Fixtures for the streaming tests: every test runs against both brokers - tansu (the dev broker) and
Apache Kafka (the reference) - each one real process per test session on a free port, with per-test
Kafka topics (a topic prefix per test) and lakes, so tests share a broker but nothing else."""

import hashlib
import re
from datetime import date

import dagster as dg
import pytest

from lakehouse.defs.bronze import streaming as bronze
from lakehouse.defs.silver import sessions as silver_sessions
from lakehouse.defs.silver import support_tickets as silver_tickets
from lakehouse.dev.broker import Broker, KafkaBroker
from lakehouse.dev.producer import messages, publish, stream_days
from lakehouse.lib.kafka import KafkaResource
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.spark import SparkEngine

PARTITIONS = 3
STREAMING_ASSETS = [
    bronze.clickstream_events,
    bronze.support_ticket_changes,
    silver_sessions.sessions,
    silver_tickets.support_tickets,
]


BROKERS = ["tansu", "kafka"]
_RUNNING = pytest.StashKey[dict]()


def session_broker(config: pytest.Config, kind: str, tmp_path_factory) -> Broker:
    """The session's broker of this kind, started on first use and stopped when the session ends, pass or
    fail. Cached on the config, not by pytest: each test module importing `broker` gets its own fixture
    definition (and cache), which would start another broker per module."""
    running = config.stash.setdefault(_RUNNING, {})
    if kind not in running:
        folder = tmp_path_factory.mktemp(f"broker-{kind}")
        started = (
            KafkaBroker(data_dir=folder / "data", log_file=folder / "kafka.log")
            if kind == "kafka"
            else Broker(log_file=folder / "tansu.log")
        ).start()
        config.add_cleanup(started.stop)
        running[kind] = started
    return running[kind]


# Module scope, not session: pytest groups the tests of a session-scoped parameter across modules, which
# splits a module's tests in two and sets its module fixtures up again (test_s3's runs: a minute each).
# Within a module the tests still run broker by broker; the processes are shared by `session_broker`.
@pytest.fixture(scope="module", params=BROKERS)
def broker(request, tmp_path_factory) -> Broker:
    return session_broker(request.config, request.param, tmp_path_factory)


@pytest.fixture
def kafka(broker, request) -> KafkaResource:
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)  # the name ends with the broker's id
    # Cut long names down with a digest, never just cut: the end (the parameters) is what tells tests apart.
    prefix = (name if len(name) <= 80 else f"{name[:71]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}") + "."
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
            from lakehouse.dev.producer import message_key

            return publish(
                kafka.producer(), kafka.topic(source), ((message_key(source, line), line) for line in lines)
            )["events"]
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
    result = dg.materialize([asset], resources=resources, partition_key=partition_key, run_config=run_config, tags=tags)
    assert result.success
    return result


def materialization(result: dg.ExecuteInProcessResult, asset) -> dict:
    """The metadata of the run's one materialisation of `asset`'s table (a Silver step also records its quarantine)."""
    [event] = [
        e
        for e in result.asset_materializations_for_node(asset.op.name)
        if not e.asset_key.path[-1].endswith("_quarantine")
    ]
    return {k: v.value for k, v in event.metadata.items()}
