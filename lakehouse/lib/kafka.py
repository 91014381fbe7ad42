"""The Kafka resource: confluent-kafka clients for the streaming sensors, assets and tools.

Any Kafka-protocol cluster works. The bootstrap address comes from the resource's `bootstrap_servers`,
else `LAKEHOUSE_KAFKA_BOOTSTRAP`, else 127.0.0.1:9092 (the development broker, `lakehouse broker`).
`client_config` is passed through to every client, e.g. for SASL/SSL:

    KafkaResource(bootstrap_servers="broker:9093", client_config={
        "security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
        "sasl.username": dg.EnvVar("KAFKA_USER"), "sasl.password": dg.EnvVar("KAFKA_PASSWORD")})

Progress is never kept in Kafka consumer groups: the Bronze tables hold the offsets they contain.
"""

import time
from dataclasses import dataclass, field
from typing import NamedTuple

import dagster as dg
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import Field

from lakehouse import settings

DEFAULT_BOOTSTRAP = settings.DEFAULT_KAFKA_BOOTSTRAP


def is_tansu(cluster_id: str | None) -> bool:
    """tansu names its cluster `tansu_cluster` unless told otherwise; Apache Kafka's ids are random UUIDs."""
    return (cluster_id or "").startswith("tansu")


@dataclass(frozen=True)
class Messages:
    """Messages of one topic, field by field: read_range appends to five lists per message, which costs half of
    making a tuple for each (measured: 80 ms against 180 ms for 100k), and Bronze builds columns from them."""

    topic: str
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)  # as text, undecodable bytes replaced
    values: list[bytes | None] = field(default_factory=list)
    timestamps_ms: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)


class TopicOffsets(NamedTuple):
    topic_id: str | None  # None: no such topic
    start: dict[int, int]  # the oldest offset still held (retention deletes below it), per partition
    end: dict[int, int]  # the next offset to be written, per partition


LEADER_MOVING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}


class KafkaResource(dg.ConfigurableResource):
    """confluent-kafka clients for one cluster; topic names are `topic_prefix` + logical name."""

    bootstrap_servers: str = Field(default="", description="host:port[,host:port]; empty = LAKEHOUSE_KAFKA_BOOTSTRAP")
    topic_prefix: str = Field(default="", description="Prefix for every topic name (environments sharing a cluster)")
    client_config: dict[str, str] = Field(default={}, description="Extra librdkafka settings (SASL/SSL, timeouts)")
    timeout_seconds: float = Field(default=10.0, description="Metadata / watermark request timeout")
    probe_tail: bool | None = Field(
        default=None,
        description="Read past the high watermark to find the real end "
        "offsets; needed on tansu only. Empty = when the cluster is a tansu broker",
    )

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or settings.kafka_bootstrap()

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def config(self, **overrides) -> dict:
        return {"bootstrap.servers": self.bootstrap, **self.client_config, **overrides}

    def producer(self, **overrides) -> Producer:
        return Producer(self.config(**overrides))

    def consumer(self, **overrides) -> Consumer:
        # A group id is required by librdkafka, but nothing is ever committed to it.
        base = {
            "group.id": "lakehouse-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            # Micro-batches read up to a known end: don't let the broker park the last fetch for 500 ms,
            # nor librdkafka pause a partition for 1 s whenever its prefetch queue is full (measured: a
            # 100k-message range read in 1.2 s instead of 0.35 s).
            "fetch.wait.max.ms": 10,
            "fetch.queue.backoff.ms": 10,
        }
        return Consumer(self.config(**{**base, **overrides}))

    def admin(self) -> AdminClient:
        return AdminClient(self.config())

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create `topic(name)` if it does not exist yet."""
        topic, admin = self.topic(name), self.admin()  # keep the client alive until the result is in
        if topic in admin.list_topics(timeout=self.timeout_seconds).topics:
            return
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        try:
            futures[topic].result(self.timeout_seconds)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise

    def partitions(self, name: str, consumer: Consumer | None = None) -> list[int]:
        return self._partitions(name, consumer)[0]

    def _partitions(self, name: str, consumer: Consumer | None = None) -> tuple[list[int], str | None]:
        """The topic's partitions ([] if it does not exist) and the cluster's id, from one metadata request."""
        client = consumer or self.consumer()
        try:
            metadata = client.list_topics(self.topic(name), timeout=self.timeout_seconds)
            meta = metadata.topics.get(self.topic(name))
            if meta is None or meta.error is not None or not meta.partitions:
                return [], metadata.cluster_id
            return sorted(meta.partitions), metadata.cluster_id
        finally:
            if consumer is None:
                client.close()

    def end_offsets(self, name: str, probe: bool | None = None) -> dict[int, int]:
        """The next offset to be written, per partition; {} if the topic does not exist."""
        return self.offsets(name, probe).end

    def offsets(self, name: str, probe: bool | None = None) -> TopicOffsets:
        """The topic's identity and, per partition, its first offset still held and the next one to be written.

        The high watermark is the end on Kafka. tansu reports the base offset of the last record
        batch + 1 instead, which hides the rest of that batch; with `probe` (default: `probe_tail`, which
        by default probes on tansu only) the tail from the watermark on is read to find the real end.
        While producers write, the end found may trail the newest message by a moment."""
        consumer = self.consumer()
        try:
            topic = self.topic(name)
            partitions, cluster_id = self._partitions(name, consumer)
            marks = {p: self._watermarks(consumer, TopicPartition(topic, p)) for p in partitions}
        finally:
            consumer.close()
        if probe is None:
            probe = self.probe_tail if self.probe_tail is not None else is_tansu(cluster_id)
        ends = {p: high for p, (_, high) in marks.items()}
        return TopicOffsets(
            self.topic_id(name) if partitions else None,
            {p: low for p, (low, _) in marks.items()},
            self._probe_tail(topic, ends) if probe else ends,
        )

    def topic_id(self, name: str) -> str | None:
        """The topic's id: a topic deleted and created again under the same name gets a new one."""
        admin = self.admin()  # kept alive until the result is in
        try:
            described = admin.describe_topics(TopicCollection([self.topic(name)]))
            topic_id = described[self.topic(name)].result(self.timeout_seconds).topic_id
        except KafkaException:
            return None
        return str(topic_id) if topic_id is not None else None

    def _watermarks(self, consumer: Consumer, partition: TopicPartition) -> tuple[int, int]:
        """Retried while the error is retriable: a leader being elected (a broker restarting, a partition
        moving) answers NOT_LEADER_FOR_PARTITION for a moment."""
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            try:
                return consumer.get_watermark_offsets(partition, timeout=self.timeout_seconds)
            except KafkaException as e:
                if e.args[0].code() not in LEADER_MOVING or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _probe_tail(self, topic: str, watermarks: dict[int, int]) -> dict[int, int]:
        ends = dict(watermarks)
        probe = {p: hw - 1 for p, hw in watermarks.items() if hw > 0}
        if not probe:
            return ends
        consumer = self.consumer(**{"enable.partition.eof": True})
        try:
            consumer.assign([TopicPartition(topic, p, o) for p, o in probe.items()])
            at_end, seen, settled = set(), set(), None
            deadline = time.monotonic() + self.timeout_seconds
            while len(at_end) < len(probe) and time.monotonic() < min(deadline, settled or deadline):
                for m in consumer.consume(10_000, timeout=0.05):
                    if m.error():
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            at_end.add(m.partition())
                        continue
                    seen.add(m.partition())
                    ends[m.partition()] = max(ends[m.partition()], m.offset() + 1)
                if settled is None and seen | at_end >= set(probe):
                    # A busy topic has no end to reach: once every partition has shown its tail, stop
                    # shortly after; every message below what was read exists, so that is a valid end.
                    settled = time.monotonic() + 0.05
            return ends
        finally:
            consumer.close()

    def read_range(
        self, name: str, ranges: dict[int, tuple[int, int]], batch: int = 10_000, idle_timeout: float = 30.0
    ) -> Messages:
        """Every message with offset in [start, end) for each partition: exactly that range, or an error."""
        topic = self.topic(name)
        wanted = {p: (s, e) for p, (s, e) in ranges.items() if e > s}
        if not wanted:
            return Messages(topic)
        consumer = self.consumer()
        partitions, offsets, keys, values, stamps = [], [], [], [], []
        try:
            consumer.assign([TopicPartition(topic, p, s) for p, (s, _) in wanted.items()])
            position = {p: s for p, (s, _) in wanted.items()}
            done = {p for p, (s, e) in wanted.items() if s >= e}
            last_progress = time.monotonic()
            while len(done) < len(wanted):
                polled = consumer.consume(batch, timeout=0.05)
                if not polled:
                    # Past the end without seeing the last offset (compacted away, or a transaction marker).
                    for tp in consumer.position([TopicPartition(topic, p) for p in wanted if p not in done]):
                        if tp.offset >= wanted[tp.partition][1]:
                            done.add(tp.partition)
                    if len(done) == len(wanted):
                        break
                if not polled and time.monotonic() - last_progress > idle_timeout:
                    missing = {p: (position[p], wanted[p][1]) for p in wanted if p not in done}
                    raise TimeoutError(f"{topic}: no messages for {idle_timeout}s, still missing offsets {missing}")
                taken = len(offsets)
                for m in polled:
                    if m.error():
                        raise KafkaException(m.error())
                    p, offset = m.partition(), m.offset()
                    if p in done or p not in wanted or offset < position[p]:
                        continue
                    end = wanted[p][1]
                    if offset < end:
                        ts_type, ts = m.timestamp()
                        key = m.key()
                        partitions.append(p)
                        offsets.append(offset)
                        keys.append(key.decode("utf-8", "replace") if key else None)
                        values.append(m.value())
                        stamps.append(ts if ts_type else None)
                        position[p] = offset + 1
                    if offset + 1 >= end:
                        done.add(p)
                        consumer.pause([TopicPartition(topic, p)])
                if len(offsets) > taken:
                    last_progress = time.monotonic()
            return Messages(topic, partitions, offsets, keys, values, stamps)
        finally:
            consumer.close()
