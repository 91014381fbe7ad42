"""Streaming benchmark: produce clickstream events at a target rate for a fixed time while the Kafka
sensor loop runs, and measure what reaches the lake.

    python bench/streaming.py                       # 2,000 events/s for 30 s (about a minute in all)
    python bench/streaming.py --rate 5000 --seconds 60 --max-batch 20000

Everything runs in this process against a fresh tansu broker and a fresh lake under a temporary
folder: the producer in a thread at a steady rate; the loop evaluates the real sensor, launches the
Bronze run it requests, then the Silver sessions run that automation would launch, just as
`dagster dev` would, minus the daemon's scheduling delays. Reported:

- events/s into Bronze: Bronze rows / (last Bronze commit - first produce), sustained while producing;
- whether Silver sessions built batch by batch equal a full recompute from Bronze;
- produce-to-Silver latency per event: the Silver sessions commit that covers it minus the event's
  Kafka timestamp (its produce time), p50 / p95 / max; produce-to-Bronze the same way.

Results go to bench/results/streaming-<UTC time>.json and to stdout.
"""

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lakehouse.bronze import streaming as bronze  # noqa: E402
from lakehouse.resources.kafka import KafkaResource  # noqa: E402
from lakehouse.resources.lake import DeltaLake  # noqa: E402
from lakehouse.resources.spark import SparkEngine  # noqa: E402
from lakehouse.sensors.kafka import kafka_sensor  # noqa: E402
from lakehouse.silver import sessions as silver_sessions  # noqa: E402
from lakehouse.sources.broker import Broker  # noqa: E402
from lakehouse.sources.producer import messages, publish  # noqa: E402


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 3)


def batch_timestamps(lake: DeltaLake, run_id: str) -> list[float]:
    """Kafka timestamps (s) of the well-formed events a Bronze run landed."""
    data = lake.delta_table("bronze", bronze.CLICKSTREAM.table).to_pyarrow_dataset().to_table(
        columns=["kafka_timestamp"], filter=(pc.field("_run_id") == run_id) & pc.field("_parse_error").is_null())
    return [ts.timestamp() for ts in data.column("kafka_timestamp").to_pylist()]


def silver_equals_full_recompute(resources: dict) -> bool:
    spark, lake = resources["spark"].spark_session, resources["lake"]
    full = silver_sessions.sessionise(silver_sessions.valid_events(lake.read(spark, "bronze", bronze.CLICKSTREAM.table)))
    incremental = lake.read(spark, "silver", "sessions").select(*full.columns)
    return incremental.count() == full.count() and incremental.exceptAll(full).count() == 0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=2000, help="events per second to produce")
    p.add_argument("--seconds", type=float, default=30, help="how long to produce")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--max-batch", type=int, default=50_000, help="sensor: most messages per Bronze run")
    p.add_argument("--tick", type=float, default=1.0, help="seconds between sensor ticks when idle")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--drain-timeout", type=float, default=60, help="seconds to wait for the backlog after producing")
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    p.add_argument("--keep", action="store_true", help="keep the temporary lake and broker log")
    args = p.parse_args(argv)
    logging.getLogger("dagster").setLevel(logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="lakehouse-bench-streaming-"))
    os.environ.setdefault("LAKEHOUSE_HOME", str(work))
    events = int(args.rate * args.seconds)
    with Broker(log_file=work / "tansu.log") as broker:
        kafka = KafkaResource(bootstrap_servers=broker.bootstrap)
        kafka.create_topic("clickstream", args.partitions)
        lake = DeltaLake(root=str(work / "lake"))
        resources = {"spark": SparkEngine(remote="sail"), "lake": lake, "kafka": kafka}
        sensor = kafka_sensor(bronze.CLICKSTREAM, bronze.clickstream_events, max_batch=args.max_batch,
                              max_wait_seconds=0)
        instance = dg.DagsterInstance.ephemeral()
        # Warm the engine up (session start, first Delta write) so it is not counted as latency.
        resources["spark"].setup_for_execution(dg.build_init_resource_context())

        produced: dict = {}

        def produce():
            stream = messages("clickstream", date(2026, 11, 1), None, args.scale, seed=42)
            produced.update(publish(kafka.producer(), kafka.topic("clickstream"), stream, events, args.rate))

        producer = threading.Thread(target=produce, daemon=True)
        started = time.time()
        producer.start()
        cursor, batches, latencies, bronze_latencies = None, [], [], []
        deadline = None
        while True:
            tick_at = time.time()
            context = dg.build_sensor_context(cursor=cursor, resources={"kafka": kafka, "lake": lake}, instance=instance)
            result = sensor(context)
            cursor = result.cursor
            if result.run_requests:
                [request] = result.run_requests
                b = dg.materialize([bronze.clickstream_events], resources=resources, instance=instance,
                                   partition_key=request.partition_key, run_config={**request.run_config, **QUIET},
                                   tags=request.tags)
                bronze_done = time.time()
                s = dg.materialize([silver_sessions.sessions], resources=resources, instance=instance,
                                   partition_key=request.partition_key, run_config=QUIET)
                silver_done = time.time()
                assert b.success and s.success
                stamps = batch_timestamps(lake, b.run_id)
                latencies += [silver_done - t for t in stamps]
                bronze_latencies += [bronze_done - t for t in stamps]
                batches.append({"messages": int(request.tags["kafka/messages"]), "lag_at_request": int(request.tags["kafka/lag"]),
                                "bronze_seconds": round(bronze_done - tick_at, 3),
                                "silver_seconds": round(silver_done - bronze_done, 3), "bronze_done": bronze_done})
                print(f"batch {len(batches)}: {batches[-1]['messages']} msgs, bronze {batches[-1]['bronze_seconds']}s, "
                      f"silver {batches[-1]['silver_seconds']}s", flush=True)
                continue
            if not producer.is_alive():
                landed = sum(bronze.next_offsets(lake, bronze.CLICKSTREAM.table, kafka.topic("clickstream")).values())
                if landed >= events:
                    break
                deadline = deadline or time.time() + args.drain_timeout
                if time.time() > deadline:
                    print(f"gave up draining: {landed} of {events} landed", flush=True)
                    break
            time.sleep(max(0.0, args.tick - (time.time() - tick_at)))
        producer.join()

        rows = lake.delta_table("bronze", bronze.CLICKSTREAM.table).to_pyarrow_table(columns=["kafka_offset"]).num_rows
        last_bronze = max(b["bronze_done"] for b in batches)
        report = {
            "benchmark": "streaming",
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": "python bench/streaming.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "settings": {"target_rate": args.rate, "seconds": args.seconds, "partitions": args.partitions,
                         "max_batch": args.max_batch, "tick_seconds": args.tick},
            "produced": produced,
            "bronze_rows": rows,
            # Sustained: everything produced, landed, divided by first produce -> last Bronze commit.
            "bronze_events_per_second": round(rows / (last_bronze - started), 1),
            # Capacity: what the Bronze runs absorb per second of run time (runs are back to back when lagging).
            "bronze_run_capacity_events_per_second": round(rows / sum(b["bronze_seconds"] for b in batches), 1),
            "batches": len(batches),
            "mean_batch_messages": round(statistics.mean(b["messages"] for b in batches), 1),
            "mean_bronze_run_seconds": round(statistics.mean(b["bronze_seconds"] for b in batches), 3),
            "mean_silver_run_seconds": round(statistics.mean(b["silver_seconds"] for b in batches), 3),
            "latency_produce_to_silver_seconds": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
                                                  "max": percentile(latencies, 1.0), "events": len(latencies)},
            "latency_produce_to_bronze_seconds": {"p50": percentile(bronze_latencies, 0.5),
                                                  "p95": percentile(bronze_latencies, 0.95)},
            "silver_sessions": lake.delta_table("silver", "sessions").to_pyarrow_table(columns=["session_id"]).num_rows,
            # Correctness of the incremental path: Silver built batch by batch == sessionising all of Bronze.
            "silver_equals_full_recompute": silver_equals_full_recompute(resources),
        }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"streaming-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written to {path}")
    if args.keep:
        print(f"lake and broker log kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
