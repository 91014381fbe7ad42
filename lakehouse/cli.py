"""`lakehouse`: generate sample data, run the demo, list tables, start the UI.

lakehouse generate --start 2026-11-01 --days 7 --scale 1 --seed 42
lakehouse demo     [--start --days --scale --seed]
lakehouse tables   [--json]
lakehouse dbt-vars --start DAY --end DAY   (the --vars for a `dbt build` by hand)
lakehouse dev      (dagster dev on this repo's workspace, with the instance under LAKEHOUSE_HOME)
lakehouse broker   [--kafka] [--port P]  (a dev broker: tansu in memory, or Apache Kafka in KRaft mode; port 9092)
lakehouse spark-cluster [--workers 2] [--port 15002]  (Apache Spark standalone + Spark Connect with Delta)
lakehouse jars     [delta] [kafka]  (pre-fetch the JVM jars with Maven into the cache)
lakehouse produce  --topic clickstream|support_tickets_cdc [--events N] [--rate R] [--bootstrap H:P]
lakehouse serve    [--host 127.0.0.1] [--port 8000] [--workers 1]  (the read API over the serving store)
lakehouse forget   C0001234 [...]  (erase customers from every table, store and landing file: docs/runbooks.md)
"""

import argparse
import json
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from lakehouse import settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to $LAKEHOUSE_HOME/dagster, with an instance config written on first use."""
    home = settings.use_dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        write_instance_config(home)
    return home


def write_instance_config(home: Path) -> None:
    """The repo's dagster.yaml, and the event log that keeps its SQLite files open, for an instance in `home`."""
    from lakehouse.lib.sqlite_event_log import instance_config

    template = REPO_ROOT / "dagster.yaml"
    (home / "dagster.yaml").write_text((template.read_text() if template.exists() else "") + instance_config(home))


def generate(args) -> dict:
    from lakehouse.dev.generator import generate as generate_sources

    return generate_sources(settings.landing_dir(), date.fromisoformat(args.start), args.days, args.scale, args.seed)


def materialize_batch(start: date, days: int) -> None:
    """One run of the batch job over the whole window, recorded in the instance (so it shows in the UI)."""
    import dagster as dg

    from lakehouse.definitions import defs

    dagster_home()
    last = start + timedelta(days=days - 1)
    with dg.DagsterInstance.get() as instance:
        result = (
            defs()
            .resolve_job_def("batch")
            .execute_in_process(
                instance=instance,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                tags={
                    "dagster/asset_partition_range_start": start.isoformat(),
                    "dagster/asset_partition_range_end": last.isoformat(),
                },
            )
        )
    if not result.success:
        raise SystemExit(f"batch run {result.run_id} failed")


def partition_counts(table: dict) -> list[tuple[str, int]]:
    """Rows per partition value of a Delta table (one '-' row for unpartitioned tables)."""
    dt = lake().delta_table(table["layer"], table["name"])  # with the lake's storage options (S3)
    columns = dt.metadata().partition_columns
    if not columns:
        return [("-", table["rows"])]
    counts = dt.to_pyarrow_table(columns=columns[:1]).group_by(columns[0]).aggregate([([], "count_all")])
    return sorted((str(k), v) for k, v in zip(counts.column(0).to_pylist(), counts.column(1).to_pylist(), strict=True))


def print_row_counts(tables: list[dict]) -> None:
    print(f"{'table':<32} {'partition':<12} {'rows':>9}")
    for table in tables:
        for partition, rows in partition_counts(table):
            print(f"{table['layer'] + '.' + table['name']:<32} {partition:<12} {rows:>9}")


def lake():
    from lakehouse.lib.lake import DeltaLake

    return DeltaLake(root=settings.lake_root())


def lake_tables() -> list[dict]:
    return lake().tables()


def cmd_generate(args) -> None:
    print(json.dumps(generate(args), indent=2))


def cmd_demo(args) -> None:
    started = time.perf_counter()
    manifest = generate(args)
    records = {s: t["records"] for s, t in manifest["totals"].items()}
    print(f"generated {args.days} day(s) from {args.start} at scale {args.scale}: {records}")
    materialize_batch(date.fromisoformat(args.start), args.days)
    print_row_counts(lake_tables())
    print(f"demo finished in {time.perf_counter() - started:.1f} s (lake: {settings.lake_root()})")


def cmd_tables(args) -> None:
    tables = lake_tables()
    if args.json:
        print(json.dumps(tables, indent=2))
    else:
        print(f"{'layer':<8} {'name':<28} {'rows':>9} {'version':>8}  path")
        for t in tables:
            print(f"{t['layer']:<8} {t['name']:<28} {t['rows']:>9} {t['version']:>8}  {t['path']}")


def cmd_dbt_vars(args) -> None:
    """The --vars Dagster gives dbt, for a `dbt build` by hand against the same lake."""
    from lakehouse.defs.gold.dbt import dbt_vars

    end = date.fromisoformat(args.end) + timedelta(days=1)  # --end is inclusive, like a partition range
    print(json.dumps(dbt_vars(date.fromisoformat(args.start), end, lake())))


def cmd_kafka_epoch(args) -> None:
    """After a topic was reset or recreated on purpose: land it from its first offset as a new epoch."""
    from lakehouse.defs.bronze.streaming import STREAMS, start_new_epoch

    if args.table not in STREAMS:
        raise SystemExit(f"no streaming Bronze table {args.table!r}; one of {sorted(STREAMS)}")
    epoch = start_new_epoch(lake(), args.table)
    print(
        f"bronze.{args.table}: epoch {epoch} started; the next run lands Kafka topic "
        f"{STREAMS[args.table].topic!r} from its first offset"
    )


def cmd_forget(args) -> None:
    """Run the `forget` job, recorded in the instance. The ids go to it hashed: a run's config is kept."""
    import dagster as dg

    from lakehouse.definitions import defs
    from lakehouse.lib.erasure import subject_hash

    dagster_home()
    config = {"customer_id_hashes": [subject_hash(i) for i in args.customer_ids]}
    with dg.DagsterInstance.get() as instance:
        result = (
            defs()
            .resolve_job_def("forget")
            .execute_in_process(
                instance=instance, run_config={"ops": {"forget_customers": {"config": config}}}, raise_on_error=False
            )
        )
    if not result.success:
        failure = next(e for e in result.all_events if e.is_step_failure)
        raise SystemExit(f"forget run {result.run_id} failed: {failure.step_failure_data.error.message.strip()}")
    [output] = [e for e in result.all_events if e.is_successful_output]
    summary = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    print(f"forget run {result.run_id}: {json.dumps(summary)}")


def cmd_dev(args) -> None:
    dagster_home()
    workspace = REPO_ROOT / "workspace.yaml"
    sys.exit(subprocess.call(["dagster", "dev", "-w", str(workspace), *args.dagster_args]))


def until_stopped(what: str, running) -> None:
    """Block until Ctrl-C or SIGTERM (docker stop, kill, CI), or until `running()` turns false; the caller's
    `finally` then stops its processes."""
    import signal

    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        while running():
            time.sleep(0.5)
    except KeyboardInterrupt:
        return
    raise SystemExit(f"{what} exited by itself; its log says why")


def cmd_broker(args) -> None:
    from lakehouse.dev.broker import Broker, KafkaBroker, port_open

    # 9092 by default, which the Kafka resource uses when LAKEHOUSE_KAFKA_BOOTSTRAP is unset; a free port if taken.
    port = args.port or (None if port_open(9092) else 9092)
    broker = KafkaBroker(port=port, data_dir=settings.home() / "kafka") if args.kafka else Broker(port=port)
    broker.start()
    try:
        print(f"{broker.description} listening on {broker.bootstrap}")
        print(f"export LAKEHOUSE_KAFKA_BOOTSTRAP={broker.bootstrap}", flush=True)
        until_stopped(broker.description, lambda: broker.process.poll() is None)
    finally:
        broker.stop()


def cmd_spark_cluster(args) -> None:
    from lakehouse.lib.jvm_spark import SparkCluster

    cluster = SparkCluster(
        workers=args.workers,
        port=args.port,
        worker_cores=args.worker_cores,
        worker_memory=args.worker_memory,
        host=args.host,
        s3=args.s3,
        log_dir=settings.home() / "logs" / "spark-cluster",
    )
    with cluster.running():
        print(
            f"Apache Spark standalone cluster ({args.workers} worker(s)) with a Delta Spark Connect server at "
            f"{cluster.url} (logs: {cluster.log_dir})"
        )
        print(f"export LAKEHOUSE_SPARK_REMOTE={cluster.url}", flush=True)
        until_stopped("a Spark process", lambda: all(p.process.poll() is None for p in cluster.processes))


def cmd_jars(args) -> None:
    from lakehouse.lib.jars import BUNDLES, jars

    unknown = set(args.bundles) - set(BUNDLES)
    if unknown:
        raise SystemExit(f"unknown jar bundle(s) {sorted(unknown)}: choose from {sorted(BUNDLES)}")
    for name in args.bundles or ["delta", "kafka"]:
        print(f"{name}: {len(jars(BUNDLES[name]))} jar(s) in {BUNDLES[name].folder}")


def cmd_produce(args) -> None:
    from lakehouse.dev.producer import messages, publish
    from lakehouse.lib.kafka import KafkaResource

    if args.events is None and args.days is None:
        raise SystemExit("give --events N or --days D")
    kafka = KafkaResource(bootstrap_servers=args.bootstrap or "")
    kafka.create_topic(args.topic, args.partitions)
    stream = messages(args.topic, date.fromisoformat(args.start), args.days, args.scale, args.seed)
    result = publish(kafka.producer(), kafka.topic(args.topic), stream, args.events, args.rate)
    print(json.dumps({**result, "bootstrap": kafka.bootstrap}))


def cmd_serve(args) -> None:
    """The read API (lakehouse/serve/api.py) under uvicorn; keys from LAKEHOUSE_API_KEYS(_FILE)."""
    import uvicorn

    from lakehouse.api import keys_from_env

    if args.keys_file:
        settings.use_api_keys_file(Path(args.keys_file).resolve())
    if not keys_from_env():
        raise SystemExit("no API keys: set LAKEHOUSE_API_KEYS (JSON) or LAKEHOUSE_API_KEYS_FILE, or pass --keys-file")
    uvicorn.run(
        "lakehouse.api:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lakehouse", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, handler, help_text in [
        ("generate", cmd_generate, "write landing files and print the manifest (JSON)"),
        ("demo", cmd_demo, "generate, materialise Bronze, Silver and Gold for those days, print row counts"),
    ]:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--start", default="2026-11-01", help="first day, YYYY-MM-DD (default 2026-11-01)")
        cmd.add_argument("--days", type=int, default=7)
        cmd.add_argument("--scale", type=float, default=1.0)
        cmd.add_argument("--seed", type=int, default=42)
        cmd.set_defaults(handler=handler)
    tables = sub.add_parser("tables", help="list every Delta table in the lake (read with delta-rs)")
    tables.add_argument("--json", action="store_true")
    tables.set_defaults(handler=cmd_tables)
    dbt_vars = sub.add_parser("dbt-vars", help="print the dbt --vars for a window (a `dbt build` by hand)")
    dbt_vars.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    dbt_vars.add_argument("--end", required=True, help="last day (inclusive), YYYY-MM-DD")
    dbt_vars.set_defaults(handler=cmd_dbt_vars)
    forget = sub.add_parser("forget", help="erase customers from every table, store and landing file (GDPR/CCPA)")
    forget.add_argument("customer_ids", nargs="+", metavar="CUSTOMER_ID")
    forget.set_defaults(handler=cmd_forget)
    epoch = sub.add_parser("kafka-epoch", help="start a new epoch for a streaming Bronze table whose topic was reset")
    epoch.add_argument("table", help="clickstream_events or support_ticket_changes")
    epoch.set_defaults(handler=cmd_kafka_epoch)
    dev = sub.add_parser(
        "dev", help="start the Dagster UI and daemon on this code location (other options go to `dagster dev`)"
    )
    dev.set_defaults(handler=cmd_dev)
    broker = sub.add_parser("broker", help="run a Kafka broker for development (tansu in memory, or Apache Kafka)")
    broker.add_argument(
        "--port", type=int, default=None, help="listen on 127.0.0.1:PORT (default: 9092, else a free port)"
    )
    broker.add_argument(
        "--kafka",
        action="store_true",
        help="Apache Kafka in KRaft mode (jars via Maven; data under $LAKEHOUSE_HOME/kafka)",
    )
    broker.set_defaults(handler=cmd_broker)
    cluster = sub.add_parser(
        "spark-cluster", help="run an Apache Spark standalone cluster and a Spark Connect server with Delta"
    )
    cluster.add_argument("--workers", type=int, default=2)
    cluster.add_argument("--port", type=int, default=15002, help="the Spark Connect port (default 15002)")
    cluster.add_argument("--worker-cores", type=int, default=1)
    cluster.add_argument("--worker-memory", default="2g")
    cluster.add_argument(
        "--host", default="127.0.0.1", help="where the Connect server listens (0.0.0.0 in a container)"
    )
    cluster.add_argument("--s3", action="store_true", help="s3:// lakes through S3A, with the AWS_* variables")
    cluster.set_defaults(handler=cmd_spark_cluster)
    jars_cmd = sub.add_parser("jars", help="fetch the JVM jars (Delta for Apache Spark, Apache Kafka) into the cache")
    jars_cmd.add_argument("bundles", nargs="*", metavar="delta|kafka|s3", help="default: delta and kafka")
    jars_cmd.set_defaults(handler=cmd_jars)
    produce = sub.add_parser("produce", help="publish the generator's streaming events to Kafka at a steady rate")
    produce.add_argument("--topic", required=True, choices=["clickstream", "support_tickets_cdc"])
    produce.add_argument("--events", type=int, default=None, help="exactly N messages, anomalies included")
    produce.add_argument(
        "--days", type=int, default=None, help="whole generator days instead (the same lines as `lakehouse generate`)"
    )
    produce.add_argument("--rate", type=float, default=1000.0, help="messages per second; 0 = as fast as possible")
    produce.add_argument("--bootstrap", default=None, help="host:port (default: LAKEHOUSE_KAFKA_BOOTSTRAP)")
    produce.add_argument("--partitions", type=int, default=3, help="partitions if the topic is created")
    produce.add_argument("--start", default="2026-11-01")
    produce.add_argument("--scale", type=float, default=1.0)
    produce.add_argument("--seed", type=int, default=42)
    produce.set_defaults(handler=cmd_produce)
    serve = sub.add_parser("serve", help="start the read API over the Postgres serving store (docs at /docs)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument("--keys-file", default=None, help="JSON API keys file (default: LAKEHOUSE_API_KEYS[_FILE])")
    serve.set_defaults(handler=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> None:
    # `lakehouse dev` passes whatever it does not know (e.g. -p 3001) on to `dagster dev`.
    args, extra = parser().parse_known_args(argv)
    if extra and args.command != "dev":
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
    args.dagster_args = extra
    args.handler(args)


if __name__ == "__main__":
    main()
