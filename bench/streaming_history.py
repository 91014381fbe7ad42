"""Streaming cost against history: a Kafka sensor tick, a batch's offset lookup, a Bronze batch and a Silver
sessions run over a small new batch, with Bronze clickstream pre-filled with 1M and with 50M rows.

    python bench/streaming_history.py                              # 1M and 50M rows of history
    python bench/streaming_history.py --sizes 1000000,10000000 --repeat 3

For each size, a fresh lake under a temporary folder and a fresh topic on one tansu broker (the dev broker):
- the topic is filled with as many empty messages as Bronze will hold, so that the topic continues what
  Bronze landed (offsets 0 .. size/partitions - 1 per partition);
- Bronze is written directly with delta-rs, day by day (`--rows-per-day`, one commit each), in the schema
  the streaming asset writes: sessions of 10 events of customer ids C0000001.., one per Kafka offset,
  ingested on the day before the new events'; Silver sessions is written to match (one session per 10
  rows, partitioned as the asset writes it), so that a run finds only the new events new;
- then `--repeat` times: a new batch of `--events` generated clickstream events is produced, and timed are
  the sensor's tick (Kafka offsets + Bronze progress), the offset lookup alone (`bronze.landed`), the
  Bronze run the tick requested (read, commit, checks) and a Silver sessions run. Best of the repeats.

Results go to bench/results/streaming_history-<UTC time>.json (with the load average before and after) and
to stdout. The script also measures a checkout from before progress was kept in Delta txn actions (copy
it into that checkout's bench/): what the checkout does not have is left out of the pre-fill.
"""

import argparse
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, write_deltalake

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lakehouse.defs.bronze import streaming as bronze  # noqa: E402
from lakehouse.defs.sensors.kafka import kafka_sensor  # noqa: E402
from lakehouse.defs.silver import sessions as silver_sessions  # noqa: E402
from lakehouse.dev.broker import Broker  # noqa: E402
from lakehouse.dev.producer import messages, publish  # noqa: E402
from lakehouse.lib.kafka import KafkaResource  # noqa: E402
from lakehouse.lib.lake import DeltaLake  # noqa: E402
from lakehouse.lib.spark import SparkEngine, embedded_sail_url  # noqa: E402

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
EVENTS_PER_SESSION = 10
USERS = 50_000
CLICKS = bronze.clickstream_events


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def fill_topic(kafka: KafkaResource, messages_per_partition: int, partitions: int) -> None:
    """Empty messages (lz4 batches of them cost the broker almost nothing) up to the offsets Bronze will hold."""
    producer = kafka.producer(
        **{"linger.ms": 50, "batch.num.messages": 100_000, "compression.type": "lz4"},
        **{"queue.buffering.max.messages": 2_000_000},
    )
    topic = kafka.topic("clickstream")
    for i in range(messages_per_partition * partitions):
        try:
            producer.produce(topic, b"", partition=i % partitions)
        except BufferError:
            producer.poll(0.1)
            producer.produce(topic, b"", partition=i % partitions)
        if i % 100_000 == 0:
            producer.poll(0)
    producer.flush()


def history_rows(first: int, count: int, day: date, partitions: int, topic: str, topic_id: str) -> pa.Table:
    """Bronze rows `first` .. `first + count - 1` of the history, all ingested at the end of `day`."""
    rows = range(first, first + count)
    users = [f"C{i // EVENTS_PER_SESSION % USERS + 1:07d}" for i in rows]
    # The day's sessions of one user start 4 hours apart (give or take 50 minutes): never within 30 minutes.
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    stamps = [
        midnight + timedelta(hours=1 + 4 * (j // USERS), seconds=j % USERS % 3000 + 60 * (i % EVENTS_PER_SESSION))
        for i in rows
        for j in [(i - first) // EVENTS_PER_SESSION]
    ]
    event_ts = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in stamps]
    kinds = ["page_view" if i % 2 == 0 else "add_to_cart" for i in rows]
    ids = [f"H{i:010d}" for i in rows]
    raw = [
        f'{{"event_id":"{e}","user_id":"{u}","event_type":"{k}","page":"/home","product_id":null,"event_ts":"{t}"}}'
        for e, u, k, t in zip(ids, users, kinds, event_ts, strict=True)
    ]
    ingested = midnight + timedelta(hours=23, minutes=59)
    columns = {
        "event_id": ids,
        "user_id": users,
        "event_type": kinds,
        "page": ["/home"] * count,
        "product_id": [None] * count,
        "event_ts": event_ts,
        "_rescued_data": [None] * count,
        "_raw": raw,
        "_parse_error": [None] * count,
        "kafka_topic": [topic] * count,
        "kafka_topic_id": [topic_id] * count,
        "kafka_epoch": [0] * count,
        "kafka_partition": [i % partitions for i in rows],
        "kafka_offset": [i // partitions for i in rows],
        "kafka_key": users,
        "kafka_timestamp": stamps,
        "_ingested_at": [ingested] * count,
        "_ingest_date": [day] * count,
        "_run_id": ["history"] * count,
    }
    schema = bronze.schema(bronze.CLICKSTREAM)
    return pa.table([pa.array(columns[f.name], f.type) for f in schema], schema=schema)


SESSION_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("user_id", pa.string()),
        ("session_start", pa.timestamp("us", tz="UTC")),
        ("session_end", pa.timestamp("us", tz="UTC")),
        ("session_date", pa.date32()),
        ("duration_seconds", pa.int64()),
        ("page_count", pa.int32()),
        ("page_views", pa.int32()),
        ("is_bounce", pa.bool_()),
        ("last_event_received_at", pa.timestamp("us", tz="UTC")),
        ("_bronze_ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)


def history_sessions(rows: pa.Table) -> pa.Table:
    """Silver sessions of `rows` (whole sessions of 10 events): what a sessions run would have written."""
    stamps = rows.column("kafka_timestamp").to_pylist()
    first = slice(0, None, EVENTS_PER_SESSION)
    start, end = stamps[first], stamps[EVENTS_PER_SESSION - 1 :: EVENTS_PER_SESSION]
    users = rows.column("user_id").to_pylist()[first]
    n = len(users)
    columns = {
        "session_id": [f"{u}-{s:%Y%m%dT%H%M%S}" for u, s in zip(users, start, strict=True)],
        "user_id": users,
        "session_start": start,
        "session_end": end,
        "session_date": [s.date() for s in start],
        "duration_seconds": [60 * (EVENTS_PER_SESSION - 1)] * n,
        "page_count": [EVENTS_PER_SESSION] * n,
        "page_views": [EVENTS_PER_SESSION // 2] * n,
        "is_bounce": [False] * n,
        "last_event_received_at": end,
        "_bronze_ingested_at": rows.column("_ingested_at").to_pylist()[first],
    }
    return pa.table([pa.array(columns[f.name], f.type) for f in SESSION_SCHEMA], schema=SESSION_SCHEMA)


def prefill(lake: DeltaLake, size: int, per_day: int, last_day: date, partitions: int, topic: str, topic_id: str):
    """Bronze and Silver sessions holding `size` rows of history, one commit per day ending `last_day`."""
    days = -(-size // per_day)
    progress = getattr(bronze, "progress_actions", None)  # absent in a checkout from before txn progress
    landed = bronze.Landed({}, frozenset(), None)
    event_days = {}
    for d in range(days):
        day = last_day - timedelta(days=days - 1 - d)
        first = d * per_day
        rows = history_rows(first, min(per_day, size - first), day, partitions, topic, topic_id)
        txns = progress(topic, 0, landed, rows) if progress else []
        write_deltalake(
            lake.path("bronze", bronze.CLICKSTREAM.table),
            rows,
            mode="append",
            partition_by=["_ingest_date"],
            commit_properties=CommitProperties(app_transactions=txns),
        )
        landed = bronze.Landed(landed.next | bronze_next(rows), frozenset({topic_id}), None)
        event_days[day.isoformat()] = (day - date(1970, 1, 1)).days
        key = getattr(silver_sessions, "LATEST_EVENT_DAYS", None)  # absent before the map was kept
        partition = getattr(silver_sessions, "PARTITION", None)  # absent before sessions were partitioned
        write_deltalake(lake.path("silver", "sessions"), history_sessions(rows), mode="append", partition_by=partition)
        if key:
            lake.delta_table("silver", "sessions").alter.set_table_properties(
                {key: json.dumps(event_days, sort_keys=True)}, raise_if_not_exists=False
            )
        print(f"  {day}: {first + rows.num_rows:,} rows", flush=True)


def bronze_next(rows: pa.Table) -> dict[int, int]:
    top = rows.group_by("kafka_partition").aggregate([("kafka_offset", "max")])
    return {p: o + 1 for p, o in zip(*(top.column(c).to_pylist() for c in top.column_names), strict=True)}


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return round(time.perf_counter() - started, 4), value


def materialized(result: dg.ExecuteInProcessResult, asset: dg.AssetKey, key: str) -> int:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == asset]
    return event.materialization.metadata[key].value


def one_batch(
    kafka: KafkaResource, lake: DeltaLake, resources: dict, sensor, today: date, events: int
) -> dict[str, float]:
    """Seconds of a tick, the offset lookup, the Bronze run requested and a Silver sessions run."""
    tick, result = timed(sensor, dg.build_sensor_context(resources={"kafka": kafka, "lake": lake}))
    [request] = result.run_requests
    table = bronze.CLICKSTREAM.table
    lookup, _ = timed(bronze.landed, lake, table, kafka.topic("clickstream"), bronze.current_epoch(lake, table))
    run_config = {**request.run_config, **QUIET}
    run, landed = timed(
        dg.materialize, [CLICKS], resources=resources, partition_key=request.partition_key, run_config=run_config
    )
    silver, sessions = timed(
        dg.materialize,
        [silver_sessions.sessions],
        resources=resources,
        partition_key=today.isoformat(),
        run_config=QUIET,
    )
    assert landed.success and sessions.success
    # Only the new messages were new: Silver read what Bronze landed and nothing of the history (on tansu a
    # tick may see the end of a batch just produced one message short: it lands with the next one).
    counts = [
        materialized(landed, CLICKS.key, "rows_written"),
        materialized(sessions, dg.AssetKey(["silver", "sessions"]), "rows_read"),
    ]
    assert counts[0] == counts[1] and abs(counts[0] - events) <= 1 + events // 100, counts
    return {"sensor_tick": tick, "offset_lookup": lookup, "bronze_batch_run": run, "silver_sessions_run": silver}


def measure(size: int, args, bootstrap: str, spark_url: str, work: Path) -> dict:
    kafka = KafkaResource(bootstrap_servers=bootstrap, topic_prefix=f"history{size}.")
    kafka.create_topic("clickstream", args.partitions)
    lake = DeltaLake(root=str(work / f"lake-{size}"))
    resources = {"spark": SparkEngine(remote=spark_url), "lake": lake, "kafka": kafka}
    today = datetime.now(UTC).date()
    new_day = today - timedelta(days=1)
    started = time.perf_counter()
    fill_topic(kafka, size // args.partitions, args.partitions)
    topic_id = kafka.offsets("clickstream").topic_id
    print(f"{size:,} rows: topic filled in {time.perf_counter() - started:.0f}s", flush=True)
    topic = kafka.topic("clickstream")
    prefill(lake, size, args.rows_per_day, new_day - timedelta(days=1), args.partitions, topic, topic_id)
    print(f"{size:,} rows: pre-filled in {time.perf_counter() - started:.0f}s", flush=True)
    sensor = kafka_sensor(bronze.CLICKSTREAM, CLICKS)
    stream = messages("clickstream", new_day, days=None, scale=args.scale)
    times: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        publish(kafka.producer(), topic, itertools.islice(stream, args.events))
        for name, seconds in one_batch(kafka, lake, resources, sensor, today, args.events).items():
            times.setdefault(name, []).append(seconds)
        print(f"  {size:,} rows: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()), flush=True)
    bronze_rows = int(
        pc.sum(
            pa.table(lake.delta_table("bronze", bronze.CLICKSTREAM.table).get_add_actions(flatten=True)).column(
                "num_records"
            )
        ).as_py()
    )
    if not args.keep:
        shutil.rmtree(work / f"lake-{size}")
    return {
        "history_rows": size,
        "bronze_rows_after": bronze_rows,
        "best_seconds": {k: min(v) for k, v in times.items()},
        "seconds": times,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000000,50000000", help="Bronze history sizes, comma-separated")
    p.add_argument("--rows-per-day", type=int, default=1_000_000, help="history rows per ingest date (one commit)")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--events", type=int, default=3000, help="events in each new batch")
    p.add_argument("--scale", type=float, default=3.0, help="generator scale of the new events")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    p.add_argument("--keep", action="store_true", help="keep the lakes")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="streaming-history-"))
    load_before = load()
    spark_url = embedded_sail_url()
    results = []
    with Broker(log_file=work / "tansu.log") as broker:
        for size in (int(s) for s in args.sizes.split(",")):
            results.append(measure(size, args, broker.bootstrap, spark_url, work))
    report = {
        "benchmark": "streaming_history",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/streaming_history.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "code": str(REPO),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average": {"before": load_before, "after": load()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "keep")} | {"broker": "tansu"},
        "results": results,
    }
    names = list(results[0]["best_seconds"])
    print(f"\n{'history rows':>14} " + " ".join(f"{n:>20}" for n in names))
    for r in results:
        print(f"{r['history_rows']:>14,} " + " ".join(f"{r['best_seconds'][n]:>19.3f}s" for n in names))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"streaming_history-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {path}")
    if args.keep:
        print(f"lakes kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
