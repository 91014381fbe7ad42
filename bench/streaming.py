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

`--mode dagster-dev` measures the path users have instead: a temporary LAKEHOUSE_HOME and DAGSTER_HOME
(the instance `lakehouse dev` makes, or `--instance-config`), the broker as above, and `dagster dev -w workspace.yaml`
with LAKEHOUSE_KAFKA_BOOTSTRAP pointing at it. The `kafka_clickstream` and `streaming_automation` sensors
are switched on through the GraphQL API (the UI's mutation) if they are not on already, the daemon ticks
them, and the default run launcher starts a process per run. With `--worker` the `clickstream_worker`
job is launched instead (one long-lived run landing batch after batch, see
lakehouse/defs/streaming_worker.py). Latency and events/s come from the lake (Kafka timestamps of the
rows each run landed) and the instance (when each Bronze and Silver materialisation was recorded, and
which Bronze version each Silver one read); also reported: runs launched, where their time went (queued,
process start and code location load, resources, each step), busy cores and load average.

    python bench/streaming.py --mode dagster-dev --rate 5000 --seconds 60
    python bench/streaming.py --mode dagster-dev --worker --max-batch 100000 --rate 20000 --seconds 30

Results go to bench/results/streaming[-dagster-dev]-<UTC time>.json and to stdout.
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

from lakehouse.cli import write_instance_config  # noqa: E402
from lakehouse.defs.bronze import streaming as bronze  # noqa: E402
from lakehouse.defs.sensors.kafka import kafka_sensor, streaming_automation_sensor  # noqa: E402
from lakehouse.defs.silver import sessions as silver_sessions  # noqa: E402
from lakehouse.dev.broker import Broker, KafkaBroker  # noqa: E402
from lakehouse.dev.dagster_dev import DagsterDev  # noqa: E402
from lakehouse.dev.producer import messages, publish  # noqa: E402
from lakehouse.lib.kafka import KafkaResource  # noqa: E402
from lakehouse.lib.lake import DeltaLake  # noqa: E402
from lakehouse.lib.spark import SparkEngine, embedded_sail_url, spark_session  # noqa: E402

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


def latency_figures(to_silver: list[float], to_bronze: list[float]) -> dict:
    return {
        "latency_produce_to_silver_seconds": {
            "p50": percentile(to_silver, 0.5),
            "p95": percentile(to_silver, 0.95),
            "max": percentile(to_silver, 1.0),
            "events": len(to_silver),
        },
        "latency_produce_to_bronze_seconds": {"p50": percentile(to_bronze, 0.5), "p95": percentile(to_bronze, 0.95)},
    }


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


def bronze_rows(lake: DeltaLake) -> int:
    return lake.delta_table("bronze", bronze.CLICKSTREAM.table).to_pyarrow_dataset().count_rows()


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


def silver_equals_full_recompute(spark, lake: DeltaLake) -> bool:
    full = silver_sessions.sessionise(
        silver_sessions.valid_events(lake.read(spark, "bronze", bronze.CLICKSTREAM.table))
    )
    incremental = lake.read(spark, "silver", "sessions").select(*full.columns)
    return incremental.count() == full.count() and incremental.exceptAll(full).count() == 0


def in_process(args, work: Path, broker) -> dict:
    """The Kafka sensor and Bronze runs in this process, Silver in another (see the module docstring)."""
    events = int(args.rate * args.seconds)
    kafka = KafkaResource(bootstrap_servers=broker.bootstrap)
    kafka.create_topic("clickstream", args.partitions)
    lake = DeltaLake(root=str(work / "lake"))
    resources = {"spark": SparkEngine(remote="sail"), "lake": lake, "kafka": kafka}
    sensor = kafka_sensor(bronze.CLICKSTREAM, bronze.clickstream_events, max_batch=args.max_batch, max_wait_seconds=0)
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
        context = dg.build_sensor_context(cursor=cursor, resources={"kafka": kafka, "lake": lake}, instance=instance)
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
                f"bronze batch {len(batches)}: {batches[-1]['messages']} messages in {batches[-1]['bronze_seconds']} s",
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
    return {
        "settings": {
            "mode": "in-process",
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
        **latency_figures(latencies, bronze_latencies),
        # Where the CPU went while producing and landing (the producer's and Silver's: their whole run).
        "cpu_seconds": cpu,
        "silver_sessions": lake.delta_table("silver", "sessions").to_pyarrow_table(columns=["session_id"]).num_rows,
        # Correctness of the incremental path: Silver built batch by batch == sessionising all of Bronze.
        "silver_equals_full_recompute": silver_equals_full_recompute(resources["spark"].spark_session, lake),
    }


BRONZE_KEY = dg.AssetKey(["bronze", bronze.CLICKSTREAM.table])
SILVER_KEY = dg.AssetKey(["silver", "sessions"])
SENSORS = ("kafka_clickstream", "streaming_automation")
REPOSITORY = {"repositoryLocationName": "lakehouse", "repositoryName": "__repository__"}
SENSOR_STATUS = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor {
    minIntervalSeconds sensorState { status ticks(limit: 1) { status } } } } }"""
LAUNCH_WORKER = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUN_STATUS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""
TERMINATE = """mutation($id: String!) { terminateRun(runId: $id) { __typename } }"""
START_SENSOR = """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
    __typename ... on PythonError { message } } }"""
# Where a run's time goes before its steps, between the events Dagster records for it.
PHASES = {
    "queued (coordinator)": ("RUN_ENQUEUED", "RUN_STARTING"),
    "launch (process start, code location load)": ("RUN_STARTING", "RUN_START"),
    "start to first step (resources, engine)": ("RUN_START", "STEP_START"),
}


def turn_on(server: DagsterDev, name: str) -> dict:
    """A sensor on, as a user does from the UI (the same GraphQL mutation); its state before."""
    selector = {"s": {**REPOSITORY, "sensorName": name}}
    sensor = server.graphql(SENSOR_STATUS, selector)["sensorOrError"]
    if sensor["sensorState"]["status"] != "RUNNING":
        answer = server.graphql(START_SENSOR, selector)["startSensor"]
        if answer["__typename"] == "PythonError":
            raise RuntimeError(f"starting {name}: {answer['message']}")
    return {"was": sensor["sensorState"]["status"], "min_interval_seconds": sensor["minIntervalSeconds"]}


def wait_for_tick(server: DagsterDev, name: str, timeout: float = 180) -> None:
    """The daemon has evaluated the sensor once (so its code is loaded before the clock starts)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = server.graphql(SENSOR_STATUS, {"s": {**REPOSITORY, "sensorName": name}})["sensorOrError"]
        if state["sensorState"]["ticks"]:
            return
        time.sleep(1)
    raise RuntimeError(f"{name} did not tick in {timeout:.0f} s:\n{server.log_tail()}")


def start_worker(server: DagsterDev, config: dict, timeout: float = 300) -> str:
    """Launch the clickstream_worker job as a user does from the launchpad; its run id once it has started."""
    params = {
        "selector": {**REPOSITORY, "jobName": "clickstream_worker"},
        "runConfigData": {"ops": {"land_clickstream": {"config": config}}},
    }
    answer = server.graphql(LAUNCH_WORKER, {"p": params})["launchRun"]
    if answer["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launching clickstream_worker: {answer}")
    run_id, deadline = answer["run"]["runId"], time.time() + timeout
    while time.time() < deadline:
        status = server.graphql(RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        if status == "STARTED":
            return run_id
        if status in ("FAILURE", "CANCELED", "SUCCESS"):
            break
        time.sleep(1)
    raise RuntimeError(f"clickstream_worker run {run_id} did not start:\n{server.log_tail()}")


def materializations(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[dg.EventLogRecord]:
    return list(instance.fetch_materializations(key, limit=10_000, ascending=True).records)


def metadata_value(record: dg.EventLogRecord, name: str):
    return record.asset_materialization.metadata[name].value


def silver_has_read(instance: dg.DagsterInstance, version: int) -> bool:
    latest = instance.fetch_materializations(SILVER_KEY, limit=1).records
    return bool(latest) and metadata_value(latest[0], "bronze/version") >= version


def run_phases(instance: dg.DagsterInstance, run_ids: list[str]) -> dict:
    """Mean seconds per phase (PHASES) and per step of these runs, their mean duration from creation to end,
    and the mean wait from one run's end to the next one's creation (the tick that requests it)."""
    if not run_ids:
        return {}
    phases, steps = {name: [] for name in PHASES}, {}
    records = sorted(instance.get_run_records(dg.RunsFilter(run_ids=run_ids)), key=lambda r: r.create_timestamp)
    for record in records:
        first, started = {}, {}
        for entry in instance.all_logs(record.dagster_run.run_id):
            event = entry.dagster_event
            if not event:
                continue
            first.setdefault(event.event_type.name, entry.timestamp)
            if event.event_type.name == "STEP_START":
                started[event.step_key] = entry.timestamp
            elif event.event_type.name == "STEP_SUCCESS":
                steps.setdefault(event.step_key, []).append(entry.timestamp - started[event.step_key])
        for name, (begin, end) in PHASES.items():
            if begin in first and end in first:
                phases[name].append(first[end] - first[begin])
    ended = [r for r in records if r.end_time]
    gaps = [b.create_timestamp.timestamp() - a.end_time for a, b in itertools.pairwise(ended)]
    return {
        "runs": len(records),
        "mean_seconds_created_to_end": round(
            statistics.mean(r.end_time - r.create_timestamp.timestamp() for r in ended), 2
        )
        if ended
        else None,
        "mean_phase_seconds": {n: round(statistics.mean(v), 2) for n, v in phases.items() if v},
        "mean_step_seconds": {n: round(statistics.mean(v), 2) for n, v in steps.items()},
        "mean_seconds_from_run_end_to_next_run": round(statistics.mean(gaps), 2) if gaps else None,
    }


def busy_cores(before, after) -> float:
    """Cores busy on average between two psutil.cpu_times() readings (the whole machine, other work too)."""
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    total = sum(after) - sum(before)
    return round(os.cpu_count() * (1 - idle / total), 2) if total else 0.0


def under_dagster_dev(args, work: Path, broker) -> dict:
    """`dagster dev` as users run it, the Kafka sensor and streaming automation on, measured from the lake
    and the instance (see the module docstring)."""
    events = int(args.rate * args.seconds)
    kafka = KafkaResource(bootstrap_servers=broker.bootstrap)
    kafka.create_topic("clickstream", args.partitions)
    dagster_home = work / "dagster"
    dagster_home.mkdir()
    if args.instance_config:
        shutil.copy(args.instance_config, dagster_home / "dagster.yaml")
    else:
        write_instance_config(dagster_home)
    env = {**os.environ, "LAKEHOUSE_KAFKA_BOOTSTRAP": broker.bootstrap, "PYTHONUNBUFFERED": "1"}
    for name in ("LAKEHOUSE_LAKE_ROOT", "LAKEHOUSE_ALERT_WEBHOOK", "SNOWFLAKE_ACCOUNT", "LAKEHOUSE_SERVING_DSN"):
        env.pop(name, None)  # this lake and broker only, nothing sent elsewhere
    lake = DeltaLake(root=str(work / "lake"))
    server = DagsterDev.start(work, dagster_home, env, work / "dagster-dev.log")
    try:
        instance = dg.DagsterInstance.from_config(str(dagster_home))
        sensors = {name: turn_on(server, name) for name in SENSORS}
        for name in SENSORS:
            wait_for_tick(server, name)
        worker_config = {
            "max_batch": args.max_batch,
            "silver": args.worker_silver,
            "stop_after_seconds": args.seconds + args.drain_timeout + 120,
        }
        worker = start_worker(server, worker_config) if args.worker else None
        spawn = multiprocessing.get_context("spawn")
        produced, ready = spawn.Queue(), spawn.Event()
        producer = spawn.Process(
            target=produce, daemon=True, args=(kafka.bootstrap, events, args.rate, args.scale, ready, produced)
        )
        producer.start()
        while not ready.wait(timeout=1):
            if not producer.is_alive():
                raise RuntimeError("the producer stopped before it got its messages ready")
        cpu, loads, began, deadline = psutil.cpu_times(), [os.getloadavg()], time.time(), None
        while True:  # until every event is in Bronze and Silver has read Bronze's last version
            time.sleep(2)
            loads.append(os.getloadavg())
            if server.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited:\n{server.log_tail()}")
            if producer.is_alive():
                continue
            version = bronze_version(lake)
            rows = bronze_rows(lake) if version >= 0 else 0
            if rows >= events and silver_has_read(instance, version):
                break
            deadline = deadline or time.time() + args.drain_timeout
            if time.time() > deadline:
                print(f"gave up draining: {rows} of {events} in Bronze", flush=True)
                break
        cpu = {"busy_cores": busy_cores(cpu, psutil.cpu_times()), "wall_seconds": round(time.time() - began, 1)}
        if worker:
            server.graphql(TERMINATE, {"id": worker})
        produced = produced.get()
        producer.join()
        bronze_records = materializations(instance, BRONZE_KEY)
        silver_records = materializations(instance, SILVER_KEY)
        runs = instance.get_runs()
        bronze_runs, silver_runs = {r.run_id for r in bronze_records}, {r.run_id for r in silver_records}
        run_summary = {
            "launched": len(runs),
            "bronze": run_phases(instance, sorted(bronze_runs)),
            "silver_sessions": run_phases(instance, sorted(silver_runs)),
            # The instance's other runs in the window (per-day freshness checks, ...): they share the run slots.
            "other": len([r for r in runs if r.run_id not in bronze_runs | silver_runs | {worker}]),
        }
    finally:
        server.stop()

    latencies, bronze_latencies = [], []
    silver_reads = [(metadata_value(r, "bronze/version"), r.timestamp) for r in silver_records]
    for record in bronze_records:  # an event is in Silver once a Silver run has read its Bronze version
        version = metadata_value(record, "delta/version")
        stamps = batch_timestamps(lake, record.run_id)
        seen = [at for read, at in silver_reads if read >= version]
        latencies += [min(seen) - t for t in stamps] if seen else []
        bronze_latencies += [record.timestamp - t for t in stamps]
    rows = lake.delta_table("bronze", bronze.CLICKSTREAM.table).to_pyarrow_table(columns=["kafka_offset"]).num_rows
    started = produced.pop("started")
    last_bronze = max(r.timestamp for r in bronze_records)
    return {
        "settings": {
            "mode": "dagster-dev",
            "broker": args.broker,
            "target_rate": args.rate,
            "seconds": args.seconds,
            "partitions": args.partitions,
            "instance_config": str(args.instance_config or "lakehouse's (lakehouse.cli.write_instance_config)"),
            "ingestion": {"clickstream_worker": worker_config} if args.worker else "kafka_clickstream sensor",
            "sensors": sensors,
        },
        "produced": produced,
        "bronze_rows": rows,
        "landed_all": rows >= produced["events"],
        "bronze_events_per_second": round(rows / (last_bronze - started), 1),
        "batches": len(bronze_records),
        "mean_batch_messages": round(rows / len(bronze_records), 1),
        "silver_runs": len(silver_records),
        "runs": run_summary,
        **latency_figures(latencies, bronze_latencies),
        "cpu": {**cpu, "load_average_max_1min": max(load[0] for load in loads)},
        "silver_equals_full_recompute": silver_equals_full_recompute(spark_session("sail"), lake),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--mode",
        choices=["in-process", "dagster-dev"],
        default="in-process",
        help="in-process: the sensor loop and runs in this script's processes; dagster-dev: under `dagster dev`",
    )
    p.add_argument("--rate", type=float, default=2000, help="events per second to produce")
    p.add_argument("--seconds", type=float, default=30, help="how long to produce")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument(
        "--broker",
        choices=["tansu", "kafka"],
        default="tansu",
        help="tansu (in memory) or Apache Kafka in KRaft mode (the reference; starts in 5-15 s)",
    )
    p.add_argument("--max-batch", type=int, default=50_000, help="in-process and --worker: most messages per batch")
    p.add_argument("--tick", type=float, default=1.0, help="in-process: seconds between Kafka sensor ticks when idle")
    p.add_argument(
        "--silver-interval",
        type=float,
        default=streaming_automation_sensor.minimum_interval_seconds,
        help="in-process: seconds between streaming automation ticks (default: the sensor's own interval)",
    )
    p.add_argument(
        "--instance-config",
        type=Path,
        default=None,
        help="dagster-dev: the dagster.yaml of its DAGSTER_HOME (default: what `lakehouse dev` writes)",
    )
    p.add_argument(
        "--worker",
        action="store_true",
        help="dagster-dev: land through the clickstream_worker job (one long-lived run), not a run per batch",
    )
    p.add_argument(
        "--worker-silver",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="dagster-dev --worker: Silver in the worker's runs (else streaming_automation's runs)",
    )
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--drain-timeout", type=float, default=60, help="seconds to wait for the backlog after producing")
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    p.add_argument("--keep", action="store_true", help="keep the temporary lake and broker log")
    args = p.parse_args(argv)
    logging.getLogger("dagster").setLevel(logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="lakehouse-bench-streaming-"))
    os.environ.setdefault("LAKEHOUSE_HOME", str(work))
    broker = (
        KafkaBroker(data_dir=work / "kafka", log_file=work / "kafka.log")
        if args.broker == "kafka"
        else Broker(log_file=work / "tansu.log")
    )
    load_before = os.getloadavg()
    with broker:
        measured = (under_dagster_dev if args.mode == "dagster-dev" else in_process)(args, work, broker)
    report = {
        "benchmark": "streaming",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/streaming.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        **measured,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-dagster-dev" if args.mode == "dagster-dev" else ""
    path = out / f"streaming{suffix}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written to {path}")
    if args.keep:
        print(f"lake and logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
