"""Streaming Bronze: Kafka topics landed in Delta, exactly once, in micro-batches.

Each run reads an exact offset range per Kafka partition and appends those messages - parsed fields
as strings, unknown fields rescued, the raw payload, a parse error for malformed ones, and the
topic / partition / offset / Kafka timestamp - in ONE Delta commit. The range always starts right
after the highest offset already in the table (read under a lock, in the same critical section as
the commit), so a retried, replayed or concurrently launched batch finds its offsets taken and adds
nothing; a run killed before its commit leaves nothing behind. Kafka consumer groups are never used:
the table is the record of progress. The commit also records each partition's next offset as a Delta
transaction (`txn`) action - the idempotent-writer mechanism Spark Structured Streaming uses - which
points the next lookup at the newest rows: its cost does not grow with the table.

Partitioned by ingest date (UTC). Materialising by hand with no config consumes everything up to
the topic's current end offsets.
"""

import functools
import gc
import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from urllib.parse import unquote

import dagster as dg
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from pydantic import Field

from lakehouse import catalog
from lakehouse.lib import accounting, erasure, partitions
from lakehouse.lib.kafka import KafkaResource, Messages, TopicOffsets
from lakehouse.lib.lake import DeltaLake, retry_on_commit_conflict


@dataclass(frozen=True)
class Stream:
    """One Kafka topic and the Bronze table it lands in."""

    topic: str  # logical name; the Kafka topic is KafkaResource.topic(topic)
    table: str
    columns: tuple[str, ...]  # the fields the source promises; others go to _rescued_data
    key_field: str

    @property
    def pool(self) -> str:
        """The Dagster pool of the Bronze table's batches, and of the Silver table that follows it (limit 1 in
        dagster.yaml's `concurrency.pools.default_limit`): one step at a time, across hosts."""
        return f"bronze_{self.table}"


CLICKSTREAM = Stream(
    "clickstream",
    "clickstream_events",
    ("event_id", "user_id", "event_type", "page", "product_id", "event_ts"),
    "user_id",
)
SUPPORT_TICKETS = Stream(
    "support_tickets_cdc",
    "support_ticket_changes",
    ("op", "ticket_id", "seq", "customer_id", "status", "priority", "subject", "changed_at"),
    "ticket_id",
)
STREAMS = {s.table: s for s in (CLICKSTREAM, SUPPORT_TICKETS)}

KAFKA_COLUMNS = [
    ("kafka_topic", pa.string()),
    ("kafka_topic_id", pa.string()),
    ("kafka_epoch", pa.int32()),
    ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
    ("kafka_key", pa.string()),
    ("kafka_timestamp", pa.timestamp("ms", tz="UTC")),
]
META_COLUMNS = [
    ("_rescued_data", pa.string()),
    ("_raw", pa.string()),
    ("_parse_error", pa.string()),
    *KAFKA_COLUMNS,
    ("_ingested_at", pa.timestamp("us", tz="UTC")),
    ("_ingest_date", pa.date32()),
    ("_run_id", pa.string()),
]


def schema(stream: Stream) -> pa.Schema:
    return pa.schema([(c, pa.string()) for c in stream.columns] + META_COLUMNS)


def decode(value: bytes | None) -> tuple[dict | None, str | None]:
    """(the message's JSON object, None) or (None, why it is not one). Never raises.

    orjson reads the well-formed majority about six times faster than `json`; what it refuses is read
    again by `json` (lenient with NaN, huge integers and bad UTF-8), whose error message is kept."""
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError:
        if value is None:
            return None, "empty message (null payload)"
        try:
            record = json.loads(value.decode("utf-8", "replace"))
        except (ValueError, RecursionError) as e:  # RecursionError: nested deeper than Python can follow
            return None, f"invalid JSON: {e}"
    if not isinstance(record, dict):
        return None, f"not a JSON object: {type(record).__name__}"
    return record, None


def as_text(value) -> str | None:
    """A field as Bronze stores it: strings as they are, other JSON values as JSON text."""
    return value if value is None or type(value) is str else json.dumps(value)


def utf8_text(value) -> str | None:
    """as_text, checked to be UTF-8 text: `json` reads an escaped lone surrogate into a str that is not."""
    text = as_text(value)
    if text is not None:
        text.encode()
    return text


UNWRITABLE = (RecursionError, ValueError, TypeError)  # what writing a parsed value back as text can raise


def written(unwritable: dict[int, str], index: int, convert, *args) -> str | None:
    """convert(*args), or None if it cannot be written back as text: why goes to `unwritable[index]`."""
    try:
        return convert(*args)
    except UNWRITABLE as e:
        unwritable.setdefault(index, f"unreadable JSON: {type(e).__name__}: {e}")
        return None


def text_column(values: list, unwritable: dict[int, str]) -> pa.Array:
    """A promised field's column. Arrow takes a column of strings in one call (the common case); one holding
    other JSON values, or text UTF-8 cannot hold, is written value by value (ASCII strings as they are)."""
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowTypeError, UnicodeEncodeError):
        texts = [
            v if type(v) is str and v.isascii() else written(unwritable, i, utf8_text, v) for i, v in enumerate(values)
        ]
        return pa.array(texts, pa.string())


def rescued(record: dict, known: set[str]) -> str:
    """The record's unknown fields as JSON text."""
    return json.dumps({k: v for k, v in record.items() if k not in known}, separators=(",", ":"))


def field_columns(stream: Stream, records: list[dict]) -> tuple[dict[str, pa.Array], dict[int, str]]:
    """The promised fields as text, column by column, and the unknown ones as rescued JSON; and the records
    whose fields cannot be written back as text (index: why), which keep none of their fields."""
    known, unwritable = set(stream.columns), {}
    columns = {c: text_column([r.get(c) for r in records], unwritable) for c in stream.columns}
    columns["_rescued_data"] = pa.array(
        [None if r.keys() <= known else written(unwritable, i, rescued, r, known) for i, r in enumerate(records)],
        pa.string(),
    )
    if unwritable:
        empty = pa.array([i in unwritable for i in range(len(records))])
        columns = {c: pc.if_else(empty, pa.scalar(None, pa.string()), a) for c, a in columns.items()}
    return columns, unwritable


def raw_text(values: list[bytes | None]) -> pa.Array:
    """The payloads as text. Arrow validates a batch's UTF-8 in one pass; a batch with invalid bytes is decoded
    payload by payload, with replacement characters."""
    try:
        return pa.array(values, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array([v.decode("utf-8", "replace") if v is not None else None for v in values], pa.string())


def to_rows(
    stream: Stream,
    messages: Messages,
    ingest_date: date,
    run_id: str,
    epoch: int = 0,
    topic_id: str | None = None,
    ingested_at: datetime | None = None,
) -> pa.Table:
    """Bronze rows for `messages`: nothing dropped, a malformed message keeps its raw text and the reason.

    Built column by column (no per-row dicts): this is the hot loop of streaming ingestion. A message that
    parses but cannot be written back (nested deeper than Python's recursion limit) lands as a parse error,
    so no message can stop the batch."""
    values = messages.values
    decoded = [decode(value) for value in values]
    fields, unwritable = field_columns(stream, [record or {} for record, _ in decoded])
    columns = fields | {
        "_raw": raw_text(values),
        "_parse_error": [unwritable.get(i, error) for i, (_, error) in enumerate(decoded)]
        if unwritable
        else [error for _, error in decoded],
        "kafka_partition": messages.partitions,
        "kafka_offset": messages.offsets,
        "kafka_key": messages.keys,
        "kafka_timestamp": messages.timestamps_ms,
    }
    table = schema(stream)
    constants = {
        "_ingested_at": ingested_at or datetime.now(UTC),
        "_ingest_date": ingest_date,
        "_run_id": run_id,
        "kafka_topic": messages.topic,
        "kafka_epoch": epoch,
        "kafka_topic_id": topic_id,
    }
    return pa.table(
        [
            pa.repeat(pa.scalar(constants[f.name], f.type), len(messages))
            if f.name in constants
            else pa.array(columns[f.name], f.type)
            for f in table
        ],
        schema=table,
    )


EPOCH_PROPERTY = "lakehouse.kafka_epoch"  # a Bronze table property: the epoch new messages land in


def current_epoch(lake: DeltaLake, table: str) -> int:
    """The epoch Bronze lands in: 0, and one more each time `lakehouse kafka-epoch` starts a new one."""
    if not lake.exists("bronze", table):
        return 0
    return int(lake.delta_table("bronze", table).metadata().configuration.get(EPOCH_PROPERTY, 0))


def start_new_epoch(lake: DeltaLake, table: str) -> int:
    """The documented remedy for a reset or recreated topic: land it from its first offset as a new epoch.

    Rows of earlier epochs stay; progress (the next offset per partition) is counted per epoch, so the new
    incarnation's offsets 0, 1, ... are not taken for ones already landed. One metadata commit."""
    if not lake.exists("bronze", table):
        raise ValueError(f"bronze.{table} does not exist yet: its first run lands the topic from its first offset")
    epoch = current_epoch(lake, table) + 1
    lake.delta_table("bronze", table).alter.set_table_properties(
        {EPOCH_PROPERTY: str(epoch)}, raise_if_not_exists=False
    )
    return epoch


@dataclass(frozen=True)
class Landed:
    """What Bronze holds of one topic's current epoch."""

    next: dict[int, int]  # per Kafka partition, the offset after the highest one landed (the source of truth)
    topic_ids: frozenset[str]  # the topic incarnation(s) the epoch was landed from
    newest_ingested_at: datetime | None
    version: int | None = None  # the Bronze snapshot read: the batch commits against it (None: no table yet)


def progress_app_id(topic: str, epoch: int, key: int | str) -> str:
    """The Delta transaction (txn) id under which a Bronze commit records its progress through `topic`'s epoch:
    per Kafka partition the next offset, and under `partitions` how many partition numbers there are."""
    return f"lakehouse.kafka/{topic}/epoch{epoch}/{key}"


def landed(lake: DeltaLake, table: str, topic: str, epoch: int) -> Landed:
    """What the epoch's rows say, read where the snapshot's txn actions point: the row of each partition's
    last recorded offset, which the file statistics find in the newest files. A partition whose row is gone
    (deleted to be replayed, or restored away) is read in full, as is a table without txn actions (landed
    before progress went into them)."""
    if not lake.exists("bronze", table):
        return Landed({}, frozenset(), None)
    dt = lake.delta_table("bronze", table)
    actions = file_actions(dt)  # the log's file list, read once for every lookup below
    count = dt.transaction_version(progress_app_id(topic, epoch, "partitions"))
    if count is None:
        return landed_from(dt, actions, topic, epoch, [epoch_rows(lake, table, actions, topic, epoch)])
    recorded = {p: dt.transaction_version(progress_app_id(topic, epoch, p)) for p in range(count)}
    recorded = {p: offset for p, offset in recorded.items() if offset is not None}
    last = epoch_rows(lake, table, actions, topic, epoch, {p: offset - 1 for p, offset in recorded.items()})
    found = next_after(last)
    gone = {p: 0 for p, offset in recorded.items() if found.get(p) != offset}
    rest = [epoch_rows(lake, table, actions, topic, epoch, gone)] if gone else []
    return landed_from(dt, actions, topic, epoch, [last, *rest])


POSITIONS = pa.schema(
    [
        ("kafka_topic", pa.string()),
        ("kafka_epoch", pa.int32()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("kafka_topic_id", pa.string()),
        ("_ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)


def file_actions(dt: DeltaTable) -> pa.Table:
    """The snapshot's data files with their statistics, one row each, from the Delta log."""
    return pa.table(dt.get_add_actions(flatten=True))


def any_of(masks: list[pa.Array], length: int) -> pa.Array:
    return functools.reduce(pc.or_, masks, pa.repeat(pa.scalar(False), length))


def epoch_rows(
    lake: DeltaLake, table: str, actions: pa.Table, topic: str, epoch: int, since: dict[int, int] | None = None
) -> pa.Table:
    """The epoch's Kafka positions (from offset `since[p]` on in each partition p, when given). Only the data
    files whose statistics in the Delta log (`actions`, file_actions) admit such rows are opened: delta-rs's own
    dataset would first build a fragment for every file of the table (milliseconds each, and a streaming table
    has many)."""
    keep = may_hold(actions, "kafka_epoch", epoch, epoch)
    if since is not None:
        after = [
            pc.and_(may_hold(actions, "kafka_partition", p, p), may_hold(actions, "kafka_offset", o))
            for p, o in since.items()
        ]
        keep = pc.and_(keep, any_of(after, actions.num_rows))
    fs, root = lake.filesystem()
    files = [f"{root}/bronze/{table}/{unquote(path)}" for path in actions.filter(keep).column("path").to_pylist()]
    # Cast before filtering: a file delta-rs rewrote (a DELETE) holds string_view, which no filter takes.
    parts = [
        pq.read_table(f, columns=POSITIONS.names, filesystem=fs).select(POSITIONS.names).cast(POSITIONS) for f in files
    ]
    rows = pa.concat_tables(parts) if parts else POSITIONS.empty_table()
    mine = pc.and_(pc.equal(rows.column("kafka_epoch"), epoch), pc.equal(rows.column("kafka_topic"), topic))
    if since is not None:
        partition, offset = rows.column("kafka_partition"), rows.column("kafka_offset")
        wanted = [pc.and_(pc.equal(partition, p), pc.greater_equal(offset, o)) for p, o in since.items()]
        mine = pc.and_(mine, any_of(wanted, rows.num_rows))
    return rows.filter(mine)


def may_hold(actions: pa.Table, column: str, low: int, high: int | None = None) -> pa.Array:
    """Per data file, whether its statistics admit a value of `column` in [low, high] (no statistics: yes)."""
    if f"max.{column}" not in actions.column_names:
        return pa.repeat(pa.scalar(True), actions.num_rows)
    holds = pc.greater_equal(actions.column(f"max.{column}"), low)
    if high is not None:
        holds = pc.and_(holds, pc.less_equal(actions.column(f"min.{column}"), high))
    return pc.fill_null(holds, True)


def landed_from(dt: DeltaTable, actions: pa.Table, topic: str, epoch: int, parts: list[pa.Table]) -> Landed:
    """Landed in `dt`'s snapshot, from rows holding each partition's highest offset (and the newest
    `_ingested_at`, which grows with the offsets), with the topic ids of the whole epoch."""
    data = pa.concat_tables(parts)
    ids = {i for i in pc.unique(data.column("kafka_topic_id")).to_pylist() if i}
    ids |= landed_topic_ids(actions, topic, epoch)
    return Landed(next_after(data), frozenset(ids), pc.max(data.column("_ingested_at")).as_py(), dt.version())


def landed_topic_ids(actions: pa.Table, topic: str, epoch: int) -> frozenset[str]:
    """The topic ids of the epoch's rows, from each data file's min/max statistics in the Delta log (an epoch
    holds one incarnation of the topic: a batch from another fails, see Progress.resets)."""
    if "min.kafka_topic_id" not in actions.column_names:
        return frozenset()
    mine = actions.filter(
        (pc.field("min.kafka_epoch") <= epoch)
        & (pc.field("max.kafka_epoch") >= epoch)
        & (pc.field("min.kafka_topic") <= topic)
        & (pc.field("max.kafka_topic") >= topic)
    )
    return frozenset(i for c in ("min.kafka_topic_id", "max.kafka_topic_id") for i in mine.column(c).to_pylist() if i)


def next_after(rows: pa.Table) -> dict[int, int]:
    """Per Kafka partition in `rows`, the offset after the highest one."""
    top = rows.group_by("kafka_partition").aggregate([("kafka_offset", "max")])
    return {
        int(p): int(o) + 1
        for p, o in zip(
            top.column("kafka_partition").to_pylist(), top.column("kafka_offset_max").to_pylist(), strict=True
        )
    }


def progress_actions(topic: str, epoch: int, before: Landed, rows: pa.Table) -> list[Transaction]:
    """The txn actions of a commit of `rows` after `before`: every partition's next offset (all of them, so
    that the first commit after a table landed from rows only records the partitions it did not advance)."""
    recorded = before.next | next_after(rows)
    return [
        *(Transaction(progress_app_id(topic, epoch, p), offset) for p, offset in sorted(recorded.items())),
        Transaction(progress_app_id(topic, epoch, "partitions"), max(recorded) + 1),
    ]


def next_offsets(lake: DeltaLake, table: str, topic: str) -> dict[int, int]:
    """Per Kafka partition, the offset after the highest one landed in the current epoch."""
    return landed(lake, table, topic, current_epoch(lake, table)).next


class TopicReset(Exception):
    """The topic no longer continues what Bronze landed: deleted and created again, or its offsets reset."""


@dataclass(frozen=True)
class Progress:
    """Bronze's progress through a topic, and what the topic holds now."""

    table: str
    topic: str
    epoch: int
    landed: Landed
    topic_now: TopicOffsets

    def resets(self) -> list[str]:
        """Why the topic cannot continue the epoch ([] when it can)."""
        found, ends = [], self.topic_now.end
        if self.landed.topic_ids and self.topic_now.topic_id and self.topic_now.topic_id not in self.landed.topic_ids:
            found.append(
                f"it was recreated (topic id {self.topic_now.topic_id}, landed from "
                f"{', '.join(sorted(self.landed.topic_ids))})"
            )
        for p, next_offset in sorted(self.landed.next.items()):
            if p not in ends:
                found.append(f"partition {p} is gone (landed up to offset {next_offset - 1})")
            elif ends[p] < next_offset:
                found.append(f"partition {p} ends at offset {ends[p]}, below offset {next_offset - 1} already landed")
        return found

    def check_not_reset(self) -> None:
        if problems := self.resets():
            raise TopicReset(
                f"bronze.{self.table}: Kafka topic {self.topic} does not continue epoch {self.epoch} of Bronze: "
                f"{'; '.join(problems)}. Nothing was landed. If the topic was reset on purpose, run "
                f"`lakehouse kafka-epoch {self.table}`: epoch {self.epoch + 1} then lands it from its first offset "
                f"(earlier epochs' rows stay)."
            )

    @property
    def start(self) -> dict[int, int]:
        """Where the next batch starts per partition: after what Bronze holds, or where retention left off."""
        return {p: max(self.landed.next.get(p, 0), low) for p, low in self.topic_now.start.items()}

    def gaps(self) -> dict[int, tuple[int, int]]:
        """Offsets that retention deleted before Bronze landed them: {partition: (first, end)}."""
        return {
            p: (self.landed.next.get(p, 0), low)
            for p, low in sorted(self.topic_now.start.items())
            if low > self.landed.next.get(p, 0)
        }

    def lag(self) -> dict[int, int]:
        """Messages not landed yet, per partition (those retention deleted cannot be)."""
        start = self.start
        return {p: max(0, end - start.get(p, 0)) for p, end in self.topic_now.end.items()}


def progress(stream: Stream, kafka: KafkaResource, lake: DeltaLake) -> Progress:
    """Bronze's progress and the topic's state (its end probed past tansu's watermark, so a reset is real)."""
    epoch = current_epoch(lake, stream.table)
    topic = kafka.topic(stream.topic)
    return Progress(stream.table, topic, epoch, landed(lake, stream.table, topic, epoch), kafka.offsets(stream.topic))


@contextmanager
def gc_paused():
    """No garbage collection while a batch's messages become rows. The batch allocates a few objects per
    message, which makes the collector sweep the whole heap again and again (measured: 40% of the time for
    100k messages); nothing there forms reference cycles, so waiting loses nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class Ingested:
    """What one micro-batch did: the offsets it read, the rows it wrote, and the topic as the batch left it."""

    ranges: dict[int, tuple[int, int]]  # per Kafka partition, the offsets read: [first, end)
    read: int  # messages read from Kafka
    rows: int  # rows the Delta commit wrote (0 when there was nothing to land), tombstones included
    erased: int  # of which tombstones: messages of customers in the erasure register, payload emptied
    malformed: int  # rows with a parse error
    epoch: int
    topic_id: str | None  # the topic incarnation read (None when the broker does not say)
    gaps: dict[int, tuple[int, int]]  # offsets retention deleted before Bronze landed them: [first, end)
    partitions: int  # how many partitions the topic has
    lag: dict[int, int]  # per partition, messages left past this batch
    max_kafka_timestamp: datetime | None  # the newest Kafka timestamp in the batch

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())

    @property
    def skipped(self) -> int:
        """How many offsets retention deleted before Bronze landed them."""
        return sum(end - first for first, end in self.gaps.values())

    def metadata(self, topic: str, new_partitions: list[int]) -> dict:
        """The batch's `kafka/*` materialization metadata (and `malformed`)."""
        return {
            "malformed": self.malformed,
            "kafka/topic": topic,
            "kafka/epoch": self.epoch,
            "kafka/topic_id": self.topic_id or "",
            "kafka/offsets": dg.MetadataValue.json({str(p): list(r) for p, r in self.ranges.items()}),
            "kafka/lag": self.total_lag,
            "kafka/lag_by_partition": dg.MetadataValue.json({str(p): v for p, v in self.lag.items()}),
            "kafka/retention_gaps": dg.MetadataValue.json({str(p): list(g) for p, g in self.gaps.items()}),
            "kafka/partitions": self.partitions,
            "kafka/new_partitions": dg.MetadataValue.json(new_partitions),
            **({"kafka/max_timestamp": self.max_kafka_timestamp.isoformat()} if self.max_kafka_timestamp else {}),
        }


def ingest(
    stream: Stream,
    kafka: KafkaResource,
    lake: DeltaLake,
    ingest_date: date,
    run_id: str,
    requested_end: dict[str, int] | None = None,
) -> Ingested:
    """One micro-batch: the ranges read, the rows written, the offsets retention took and the lag left.

    The file lock serialises batches on this host and the asset's Dagster pool those of the instance; should
    both fail (two instances, a pool race), the commit does: it is made against the snapshot the batch read,
    so Delta's conflict check rejects it if another commit recorded the same partitions' offsets in between.
    The batch is then read again from the new progress, and lands only what the other did not."""
    return retry_on_commit_conflict(lambda: ingest_once(stream, kafka, lake, ingest_date, run_id, requested_end))


def ingest_once(
    stream: Stream,
    kafka: KafkaResource,
    lake: DeltaLake,
    ingest_date: date,
    run_id: str,
    requested_end: dict[str, int] | None,
) -> Ingested:
    with lake.lock("bronze", stream.table):
        before = progress(stream, kafka, lake)
        before.check_not_reset()
        # A sensor's request names its end offsets (read from the topic); by hand, it is the topic's end now.
        ends = {int(p): e for p, e in requested_end.items()} if requested_end else before.topic_now.end
        start = before.start
        ranges = {p: (start.get(p, 0), end) for p, end in ends.items() if end > start.get(p, 0)}
        with gc_paused():
            messages = kafka.read_range(stream.topic, ranges)
            rows = to_rows(
                stream,
                messages,
                ingest_date,
                run_id,
                before.epoch,
                before.topic_now.topic_id,
                ingested_after(before.landed.newest_ingested_at),
            )
            rows, erased = erasure.tombstoned(
                rows, catalog.table(f"bronze/{stream.table}").subject, lake.erasure_register().hashes()
            )
        written = 0
        if rows.num_rows:
            # Rows and progress in one commit: a batch that did not commit has not advanced the offsets.
            progress_txns = progress_actions(before.topic, before.epoch, before.landed, rows)
            # No table yet: "error" makes a table created before this write a conflict, and no commit retry one
            # created during it (delta-rs would retry a create that lost the race as an unchecked append).
            read = before.landed.version
            write_deltalake(
                lake.path("bronze", stream.table) if read is None else lake.delta_table("bronze", stream.table, read),
                rows,
                mode="error" if read is None else "append",
                partition_by=["_ingest_date"],
                storage_options=lake.options(),
                commit_properties=CommitProperties(
                    app_transactions=progress_txns, max_commit_retries=0 if read is None else None
                ),
            )
            written = int(lake.delta_table("bronze", stream.table).history(1)[0]["operationMetrics"]["num_added_rows"])
    # The lag left: what the topic holds now past what this batch took (Bronze need not be read again).
    after = replace(
        before,
        landed=replace(before.landed, next=start | {p: end for p, (_, end) in ranges.items()}),
        topic_now=kafka.offsets(stream.topic),
    )
    malformed = int(pc.sum(pc.is_valid(rows.column("_parse_error"))).as_py() or 0) if rows.num_rows else 0
    stamps = rows.column("kafka_timestamp") if rows.num_rows else None
    return Ingested(
        ranges=ranges,
        read=len(messages),
        rows=written,
        erased=erased,
        malformed=malformed,
        epoch=before.epoch,
        topic_id=before.topic_now.topic_id,
        gaps=before.gaps(),
        partitions=len(before.topic_now.end),
        lag=after.lag(),
        max_kafka_timestamp=pc.max(stamps).as_py() if stamps is not None else None,
    )


def ingested_after(newest: datetime | None) -> datetime:
    """Now, or just after the newest landed row if this host's clock is behind the one that landed it:
    Silver reads Bronze by `_ingested_at`, which must follow commit order (commits are serialised)."""
    now = datetime.now(UTC)
    return max(now, newest + timedelta(milliseconds=1)) if newest else now


def duplicate_offsets(
    lake: DeltaLake, table: str, topic: str, epoch: int, ranges: dict[int, tuple[int, int]]
) -> tuple[int, list]:
    """(how many Kafka messages of a batch's `ranges` are in Bronze more than once, a few of them).

    Only a commit can add a duplicate, and only of its own offsets: the rows from the batch's first offsets
    on are read (the file statistics skip the older files), not the table's history."""
    starts = {p: s for p, (s, e) in ranges.items() if e > s}
    if not starts:
        return 0, []
    data = epoch_rows(lake, table, file_actions(lake.delta_table("bronze", table)), topic, epoch, starts)
    counts = data.group_by(["kafka_partition", "kafka_offset"]).aggregate([("kafka_offset", "count")])
    twice = counts.filter(pc.greater(counts.column("kafka_offset_count"), 1))
    return twice.num_rows, twice.slice(0, 5).drop_columns(["kafka_offset_count"]).to_pylist()


class KafkaBatch(dg.Config):
    """Which messages a run lands. The start is never configurable: it is always Bronze's next offset."""

    end_offsets: dict[str, int] = Field(
        default={},
        description="Exclusive end offset per Kafka partition ('0': 1200, ...); empty = the topic's current end",
    )


def ingest_date_of(context: dg.AssetExecutionContext) -> date:
    if context.has_partition_key_range and context.partition_key_range.start != context.partition_key_range.end:
        _, end = partitions.window(context)
        return end - timedelta(days=1)
    return date.fromisoformat(context.partition_key)


def added_partitions(context: dg.AssetExecutionContext, partitions: int) -> list[int]:
    """Partitions the topic has gained since the previous batch (whose metadata recorded its count)."""
    previous = context.instance.get_latest_materialization_event(context.asset_key)
    entry = previous.asset_materialization.metadata.get("kafka/partitions") if previous else None
    return list(range(entry.value, partitions)) if entry is not None and entry.value < partitions else []


def streaming_bronze_asset(stream: Stream, description: str) -> dg.AssetsDefinition:
    asset = dg.AssetKey(["bronze", stream.table])

    @dg.asset(
        name=stream.table,
        key_prefix="bronze",
        group_name="bronze",
        code_version=catalog.code_version(sys.modules[__name__], catalog.table(f"bronze/{stream.table}").contract),
        description=description,
        partitions_def=partitions.daily,
        kinds={"kafka", "delta"},
        tags={"lakehouse/ingestion": "streaming"},
        # Serialises the runs of a table across hosts, where the file lock does not reach
        pool=stream.pool,
        check_specs=[
            accounting.spec(asset),
            dg.AssetCheckSpec(
                "offsets_unique",
                asset=asset,
                blocking=True,
                description="No Kafka message (topic, epoch, partition, offset) is in Bronze twice.",
            ),
            dg.AssetCheckSpec(
                "no_offsets_skipped",
                asset=asset,
                description="No offset was deleted by the topic's retention before Bronze landed it.",
            ),
        ],
    )
    def _bronze(
        context: dg.AssetExecutionContext, config: KafkaBatch, lake: DeltaLake, kafka: KafkaResource
    ) -> dg.MaterializeResult:
        batch = ingest(stream, kafka, lake, ingest_date_of(context), context.run_id, config.end_offsets)
        topic, gaps = kafka.topic(stream.topic), batch.gaps
        context.log.info(f"{topic}: {batch.rows} message(s) from {batch.ranges}, lag {batch.total_lag}")
        if gaps:
            context.log.warning(f"{topic}: retention deleted offsets {gaps} before Bronze landed them")
        added = added_partitions(context, batch.partitions)
        if added:
            context.log.info(
                f"{topic}: partition(s) {added} added since the last batch, landed from their first offset"
            )
        metadata = lake.write_metadata("bronze", stream.table) if lake.exists("bronze", stream.table) else {}
        if not batch.rows:
            metadata.pop("delta/operation", None)
        counts, accounted = accounting.account(
            f"bronze.{stream.table}", batch.read, batch.rows - batch.erased, erased=batch.erased
        )
        duplicates, sample = (
            duplicate_offsets(lake, stream.table, topic, batch.epoch, batch.ranges)
            if lake.exists("bronze", stream.table)
            else (0, [])
        )
        skipped = batch.skipped
        return dg.MaterializeResult(
            metadata={**metadata, **counts, **batch.metadata(topic, added)},
            check_results=[
                accounted,
                dg.AssetCheckResult(
                    check_name="offsets_unique",
                    passed=duplicates == 0,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"duplicate_offsets": duplicates},
                    description=f"bronze.{stream.table}.kafka_offset breaks offsets_unique: {duplicates} offset(s) "
                    f"landed more than once, e.g. {sample}"
                    if duplicates
                    else None,
                ),
                dg.AssetCheckResult(
                    check_name="no_offsets_skipped",
                    passed=not gaps,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"offsets_skipped": skipped},
                    description=f"{topic}: retention deleted {skipped} offset(s) before Bronze landed them: "
                    f"{ {p: list(g) for p, g in gaps.items()} }"
                    if gaps
                    else None,
                ),
            ],
        )

    return _bronze


clickstream_events = streaming_bronze_asset(
    CLICKSTREAM, "Clickstream events from Kafka, one row per message (offsets kept), malformed ones included."
)
support_ticket_changes = streaming_bronze_asset(
    SUPPORT_TICKETS, "Support-ticket CDC changes (c/u/d) from Kafka, one row per message (offsets kept)."
)
