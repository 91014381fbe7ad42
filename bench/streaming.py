"""Streaming benchmark: produce clickstream events at a target rate for a fixed time while the Kafka
sensor loop runs, and measure what reaches the lake.

    python bench/streaming.py                       # 2,000 events/s for 30 s (about a minute in all)
    python bench/streaming.py --rate 25000 --seconds 60 --max-batch 100000
    python bench/streaming.py --broker kafka        # against Apache Kafka (KRaft) instead of tansu

A fresh broker (tansu by default, or Apache Kafka with `--broker kafka`) and a fresh lake under a
temporary folder; three processes, as in a deployment:
- the producer (the source system) publishes at a steady rate, its messages generated before the clock
  starts;
- this process evaluates the real Kafka sensor and launches the Bronze run it requests, again and again;
  the embedded Sail engine lives here;
- another process plays the `streaming_automation` sensor: every `--silver-interval` seconds (default:
  that sensor's interval) it launches a Silver sessions run if Bronze has a version Silver has not read,
  its queries going to the same engine.
Daemon and run-launch delays are not modelled (under `dagster dev` each run also starts a process).

Reported:
- events/s into Bronze: Bronze rows / (last Bronze commit - first produce), sustained while producing;
- whether Silver sessions built batch by batch equal a full recompute from Bronze;
- produce-to-Silver latency per event: the end of the first Silver run that read its Bronze version
  minus the event's Kafka timestamp (its produce time), p50 / p95 / max; produce-to-Bronze the same way;
- CPU seconds per process over the same window, which shows where the two cores went.

Results go to bench/results/streaming-<UTC time>.json and to stdout.
"""

import argparse
import itertools
import json
import logging
import math
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import psutil
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lakehouse.defs.bronze import streaming as bronze  # noqa: E402
from lakehouse.defs.sensors.kafka import kafka_sensor, streaming_automation_sensor  # noqa: E402
from lakehouse.defs.silver import sessions as silver_sessions  # noqa: E402
from lakehouse.dev.broker import Broker, KafkaBroker  # noqa: E402
from lakehouse.dev.producer import messages, publish  # noqa: E402
from lakehouse.lib.kafka import KafkaResource  # noqa: E402
from lakehouse.lib.lake import DeltaLake  # noqa: E402
from lakehouse.lib.spark import SparkEngine, embedded_sail_url  # noqa: E402

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 3)


def batch_timestamps(lake: DeltaLake, run_id: str) -> list[float]:
    """Kafka timestamps (s) of the well-formed events a Bronze run landed."""
    data = (
        lake.delta_table("bronze", bronze.CLICKSTREAM.table)
        .to_pyarrow_dataset()
        .to_table(
            columns=["kafka_timestamp"], filter=(pc.field("_run_id") == run_id) & pc.field("_parse_error").is_null()
        )
    )
    return [ts.timestamp() for ts in data.column("kafka_timestamp").to_pylist()]


def produce(bootstrap: str, events: int, rate: float, scale: float, ready, report) -> None:
    """The source system: another process, as a real one would be, with its messages made up front so
    that generating them (about 20 us each) does not take CPU from the pipeline under test."""
    kafka = KafkaResource(bootstrap_servers=bootstrap)
    made = list(itertools.islice(messages("clickstream", date(2026, 11, 1), None, scale, seed=42), events))
    ready.set()
    started, cpu = time.time(), cpu_seconds()
    sent = publish(kafka.producer(), kafka.topic("clickstream"), iter(made), events, rate)
    report.put({"started": started, "cpu_seconds": round(cpu_seconds() - cpu, 1), **sent})


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of a process so far, all its threads included."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def next_tick(last: float, interval: float) -> float:
    """The first tick after now of a sensor that ticks every `interval` seconds since `last`."""
    ticks = max(1, math.ceil((time.time() - last) / interval))
    return last + ticks * interval


def bronze_version(lake: DeltaLake) -> int:
    return (
        lake.delta_table("bronze", bronze.CLICKSTREAM.table).version()
        if lake.exists("bronze", bronze.CLICKSTREAM.table)
        else -1
    )


def materialization(result: dg.ExecuteInProcessResult) -> dict:
    """The metadata of the run's table (a Silver step also records its quarantine table)."""
    [event] = [e for e in result.get_asset_materialization_events() if not e.asset_key.path[-1].endswith("_quarantine")]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def silver_automation(lake_root: str, spark_url: str, interval: float, partition_key: str, bronze_done, report) -> None:
    """The streaming automation sensor and the Silver sessions runs it launches, in a process of their own
    as under Dagster: on each tick, a run if Bronze has a version Silver has not read (runs never overlap).
    Reports the runs, or the error that stopped them."""
    logging.getLogger("dagster").setLevel(logging.WARNING)
    lake = DeltaLake(root=lake_root)
    resources = {"spark": SparkEngine(remote=spark_url), "lake": lake}
    instance, seen, tick, runs, cpu = dg.DagsterInstance.ephemeral(), -1, time.time(), [], cpu_seconds()
    try:
        while True:
            tick = next_tick(tick, interval)
            time.sleep(max(0.0, tick - time.time()))
            finishing = bronze_done.is_set()  # read before the version, so the last batch is never missed
            if bronze_version(lake) > seen:
                begun = time.time()
                result = dg.materialize(
                    [silver_sessions.sessions],
                    resources=resources,
                    instance=instance,
                    partition_key=partition_key,
                    run_config=QUIET,
                )
                seen = materialization(result)["bronze/version"]
                runs.append({"bronze_version": seen, "seconds": round(time.time() - begun, 3), "done": time.time()})
            elif finishing:
                break
    except Exception:  # noqa: BLE001 - handed to the main process
        report.put({"error": traceback.format_exc()})
        raise
    report.put({"runs": runs, "cpu_seconds": round(cpu_seconds() - cpu, 1)})


def silver_equals_full_recompute(resources: dict) -> bool:
    spark, lake = resources["spark"].spark_session, resources["lake"]
    full = silver_sessions.sessionise(
        silver_sessions.valid_events(lake.read(spark, "bronze", bronze.CLICKSTREAM.table))
    )
    incremental = lake.read(spark, "silver", "sessions").select(*full.columns)
    return incremental.count() == full.count() and incremental.exceptAll(full).count() == 0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=2000, help="events per second to produce")
    p.add_argument("--seconds", type=float, default=30, help="how long to produce")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument(
        "--broker",
        choices=["tansu", "kafka"],
        default="tansu",
        help="tansu (in memory) or Apache Kafka in KRaft mode (the reference; starts in 5-15 s)",
    )
    p.add_argument("--max-batch", type=int, default=50_000, help="sensor: most messages per Bronze run")
    p.add_argument("--tick", type=float, default=1.0, help="seconds between Kafka sensor ticks when idle")
    p.add_argument(
        "--silver-interval",
        type=float,
        default=streaming_automation_sensor.minimum_interval_seconds,
        help="seconds between streaming automation ticks (default: the sensor's own interval)",
    )
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--drain-timeout", type=float, default=60, help="seconds to wait for the backlog after producing")
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    p.add_argument("--keep", action="store_true", help="keep the temporary lake and broker log")
    args = p.parse_args(argv)
    logging.getLogger("dagster").setLevel(logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="lakehouse-bench-streaming-"))
    os.environ.setdefault("LAKEHOUSE_HOME", str(work))
    events = int(args.rate * args.seconds)
    broker = (
        KafkaBroker(data_dir=work / "kafka", log_file=work / "kafka.log")
        if args.broker == "kafka"
        else Broker(log_file=work / "tansu.log")
    )
    with broker:
        kafka = KafkaResource(bootstrap_servers=broker.bootstrap)
        kafka.create_topic("clickstream", args.partitions)
        lake = DeltaLake(root=str(work / "lake"))
        resources = {"spark": SparkEngine(remote="sail"), "lake": lake, "kafka": kafka}
        sensor = kafka_sensor(
            bronze.CLICKSTREAM, bronze.clickstream_events, max_batch=args.max_batch, max_wait_seconds=0
        )
        instance = dg.DagsterInstance.ephemeral()
        # Warm the engine up (session start, first Delta write) so it is not counted as latency.
        resources["spark"].setup_for_execution(dg.build_init_resource_context())

        spawn = multiprocessing.get_context("spawn")
        produced, silver_report, ready, bronze_done = spawn.Queue(), spawn.Queue(), spawn.Event(), spawn.Event()
        producer = spawn.Process(
            target=produce, daemon=True, args=(kafka.bootstrap, events, args.rate, args.scale, ready, produced)
        )
        today = datetime.now(UTC).date().isoformat()
        silver = spawn.Process(
            target=silver_automation,
            daemon=True,
            args=(lake.root, embedded_sail_url(), args.silver_interval, today, bronze_done, silver_report),
        )
        producer.start()
        while not ready.wait(timeout=1):
            if not producer.is_alive():
                raise RuntimeError("the producer stopped before it got its messages ready")
        cpu = {"bronze": cpu_seconds(), "broker": cpu_seconds(broker.process.pid), "wall": time.time()}
        silver.start()
        cursor, batches, deadline = None, [], None
        while silver.is_alive():  # a failed Silver run ends the benchmark
            tick_at = time.time()
            context = dg.build_sensor_context(
                cursor=cursor, resources={"kafka": kafka, "lake": lake}, instance=instance
            )
            result = sensor(context)
            cursor = result.cursor
            if result.run_requests:
                [request] = result.run_requests
                b = dg.materialize(
                    [bronze.clickstream_events],
                    resources=resources,
                    instance=instance,
                    partition_key=request.partition_key,
                    run_config={**request.run_config, **QUIET},
                    tags=request.tags,
                )
                assert b.success
                batches.append(
                    {
                        "messages": int(request.tags["kafka/messages"]),
                        "lag_at_request": int(request.tags["kafka/lag"]),
                        "bronze_seconds": round(time.time() - tick_at, 3),
                        "done": time.time(),
                        "version": materialization(b)["delta/version"],
                        "run_id": b.run_id,
                    }
                )
                print(
                    f"bronze batch {len(batches)}: {batches[-1]['messages']} messages in "
                    f"{batches[-1]['bronze_seconds']} s",
                    flush=True,
                )
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
        bronze_done.set()
        cpu = {
            "bronze": cpu_seconds() - cpu["bronze"],
            "broker": cpu_seconds(broker.process.pid) - cpu["broker"],
            "wall": time.time() - cpu["wall"],
        }
        produced = produced.get()
        silver = silver_report.get(timeout=600)
        if "error" in silver:
            raise RuntimeError(f"a Silver run failed:\n{silver['error']}")
        silver_runs = silver["runs"]
        cpu = {
            "bronze_process (sensor, Bronze runs, Sail engine)": round(cpu["bronze"], 1),
            "silver_process (automation, Silver runs; their queries run in the Sail engine)": silver["cpu_seconds"],
            "producer": produced.pop("cpu_seconds"),
            "broker": round(cpu["broker"], 1),
            "wall_seconds (2 cores: twice this is all there is)": round(cpu["wall"], 1),
        }
        producer.join()

        latencies, bronze_latencies = [], []
        for batch in batches:  # an event is in Silver once a Silver run has read its Bronze version
            silver_at = min(r["done"] for r in silver_runs if r["bronze_version"] >= batch["version"])
            stamps = batch_timestamps(lake, batch["run_id"])
            latencies += [silver_at - t for t in stamps]
            bronze_latencies += [batch["done"] - t for t in stamps]
        rows = lake.delta_table("bronze", bronze.CLICKSTREAM.table).to_pyarrow_table(columns=["kafka_offset"]).num_rows
        last_bronze = max(b["done"] for b in batches)
        report = {
            "benchmark": "streaming",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python bench/streaming.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "settings": {
                "broker": args.broker,
                "target_rate": args.rate,
                "seconds": args.seconds,
                "partitions": args.partitions,
                "max_batch": args.max_batch,
                "tick_seconds": args.tick,
                "silver_interval_seconds": args.silver_interval,
            },
            "produced": produced,
            "bronze_rows": rows,
            # Sustained: everything produced, landed, divided by first produce -> last Bronze commit.
            "bronze_events_per_second": round(rows / (last_bronze - produced.pop("started")), 1),
            # Capacity: what the Bronze runs absorb per second of run time (runs are back to back when lagging).
            "bronze_run_capacity_events_per_second": round(rows / sum(b["bronze_seconds"] for b in batches), 1),
            "batches": len(batches),
            "mean_batch_messages": round(statistics.mean(b["messages"] for b in batches), 1),
            "mean_bronze_run_seconds": round(statistics.mean(b["bronze_seconds"] for b in batches), 3),
            "silver_runs": len(silver_runs),
            "mean_silver_run_seconds": round(statistics.mean(r["seconds"] for r in silver_runs), 3),
            "latency_produce_to_silver_seconds": {
                "p50": percentile(latencies, 0.5),
                "p95": percentile(latencies, 0.95),
                "max": percentile(latencies, 1.0),
                "events": len(latencies),
            },
            "latency_produce_to_bronze_seconds": {
                "p50": percentile(bronze_latencies, 0.5),
                "p95": percentile(bronze_latencies, 0.95),
            },
            # Where the CPU went while producing and landing (the producer's and Silver's: their whole run).
            "cpu_seconds": cpu,
            "silver_sessions": lake.delta_table("silver", "sessions").to_pyarrow_table(columns=["session_id"]).num_rows,
            # Correctness of the incremental path: Silver built batch by batch == sessionising all of Bronze.
            "silver_equals_full_recompute": silver_equals_full_recompute(resources),
        }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"streaming-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
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
