"""One streaming Bronze micro-batch, timed end to end and split into its parts.

    python bench/bronze_batch.py                        # batches of 100k and 300k messages, best of 3
    python bench/bronze_batch.py --sizes 100000 --repeat 5 --profile /tmp/bronze.pstats

One tansu broker (the dev broker); per size a fresh topic of 3 partitions filled with that many generated
clickstream messages (the producer's, malformed ones included: at the default scale 1, a day of about 7,800
messages holds one poison message). Then `--repeat` times, on a fresh lake: a
first run lands one message per partition (so the timed run appends to an existing table, as a streaming
worker's runs do) and the timed run lands the rest with `dg.materialize` of `bronze.clickstream_events`.

The timed run is split by wrapping the functions it calls with timers (each part's own wall and CPU time,
its wrapped callees taken out; the CPU time, of all the process's threads, is the steadier figure on a
shared machine): the offset lookup before the batch (`progress`: Bronze's landed offsets and the
topic's), Kafka's `read_range`, `to_rows`, the erasure tombstones, the delta-rs write and commit, the rest
of `ingest` (its lock, reading the commit's row count, the topic's offsets after), the checks and
metadata, and what is left: Dagster's own time. `to_rows` is split again by running its steps alone on
the batch's messages (decode, field_columns, and the rest: `_raw` text, the Kafka columns, pa.table).

Results go to bench/results/bronze_batch-<UTC time>.json (with the load average before and after) and
to stdout.
"""

import argparse
import cProfile
import functools
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lakehouse.defs.bronze import streaming as bronze  # noqa: E402
from lakehouse.dev.broker import Broker  # noqa: E402
from lakehouse.dev.producer import messages, publish  # noqa: E402
from lakehouse.lib import erasure  # noqa: E402
from lakehouse.lib.kafka import KafkaResource  # noqa: E402
from lakehouse.lib.lake import DeltaLake  # noqa: E402

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
CLICKS = bronze.clickstream_events

# (owner, attribute, part): the functions whose own time makes a part of the run.
PARTS = [
    (bronze, "ingest", "ingest_other"),
    (bronze, "progress", "offset_lookup"),
    (KafkaResource, "read_range", "kafka_read_range"),
    (bronze, "to_rows", "to_rows"),
    (erasure, "tombstoned", "erasure"),
    (DeltaLake, "erasure_register", "erasure"),
    (bronze, "write_deltalake", "delta_write_commit"),
    (bronze, "duplicate_offsets", "checks"),
    (bronze, "added_partitions", "checks"),
    (DeltaLake, "write_metadata", "checks"),
]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def clocks() -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): on a shared machine the CPU time is the steadier figure."""
    return time.perf_counter(), time.process_time()


@contextmanager
def split_timers():
    """Wall and CPU seconds per part while inside: each wrapped call's time less that of the wrapped calls it
    made. CPU time counts all of the process's threads (librdkafka's fetch threads too)."""
    seconds: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    stack: list[list[float]] = []  # per open call, the time its wrapped callees took

    def timed(fn, part):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            stack.append([0.0, 0.0])
            started = clocks()
            try:
                return fn(*args, **kwargs)
            finally:
                took = [end - start for end, start in zip(clocks(), started, strict=True)]
                callees = stack.pop()
                for i in range(2):
                    seconds[part][i] += took[i] - callees[i]
                    if stack:
                        stack[-1][i] += took[i]

        return wrapper

    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in PARTS]
    for (owner, name, part), (_, _, fn) in zip(PARTS, originals, strict=True):
        setattr(owner, name, timed(fn, part))
    try:
        yield seconds
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)


def to_rows_split(batch: list, ingest_date: date) -> dict[str, float]:
    """to_rows' steps, each run alone on the batch's messages (the same steps to_rows takes)."""
    stream = bronze.CLICKSTREAM
    timings = {}

    def step(name, fn):
        started = time.perf_counter()
        value = fn()
        timings[name] = round(time.perf_counter() - started, 4)
        return value

    with bronze.gc_paused():  # as in ingest
        step("total", lambda: bronze.to_rows(stream, batch, ingest_date, "bench"))
        values = batch.values if hasattr(batch, "values") else [m.value for m in batch]  # a checkout before Messages
        decoded = step("decode", lambda: [bronze.decode(v) for v in values])
        try:
            step("field_columns", lambda: bronze.field_columns(stream, [r or {} for r, _ in decoded]))
        except bronze.UNWRITABLE:  # a checkout whose field_columns raises on a poison message (to_rows retries)
            return timings
    timings["rest"] = round(timings["total"] - timings["decode"] - timings["field_columns"], 4)  # _raw, pa.table
    return timings


def produce(kafka: KafkaResource, size: int, day: date, scale: float) -> None:
    producer = kafka.producer(**{"linger.ms": 20, "queue.buffering.max.messages": 1_000_000})
    publish(producer, kafka.topic("clickstream"), itertools.islice(messages("clickstream", day, scale=scale), size))


def one_batch(kafka: KafkaResource, work: Path, day: date, profile: cProfile.Profile | None) -> dict:
    lake = DeltaLake(root=str(tempfile.mkdtemp(dir=work, prefix="lake-")))
    resources = {"lake": lake, "kafka": kafka}
    partitions = kafka.partitions("clickstream")
    first = {"ops": {"bronze__clickstream_events": {"config": {"end_offsets": {str(p): 1 for p in partitions}}}}}
    dg.materialize([CLICKS], resources=resources, partition_key=day.isoformat(), run_config=first | QUIET)
    with split_timers() as parts:
        if profile:
            profile.enable()
        started = clocks()
        result = dg.materialize([CLICKS], resources=resources, partition_key=day.isoformat(), run_config=QUIET)
        seconds, cpu = (end - start for end, start in zip(clocks(), started, strict=True))
        if profile:
            profile.disable()
    assert result.success
    [event] = result.get_asset_materialization_events()
    rows = event.materialization.metadata["rows_written"].value
    shutil.rmtree(lake.root)
    wall = {k: round(v[0], 4) for k, v in parts.items()} | {
        "dagster": round(seconds - sum(v[0] for v in parts.values()), 4)
    }
    cpus = {k: round(v[1], 4) for k, v in parts.items()} | {
        "dagster": round(cpu - sum(v[1] for v in parts.values()), 4)
    }
    return {"seconds": round(seconds, 4), "cpu_seconds": round(cpu, 4), "rows": rows, "parts": wall, "cpu_parts": cpus}


def measure(size: int, args, bootstrap: str, work: Path, profile) -> dict:
    kafka = KafkaResource(bootstrap_servers=bootstrap, topic_prefix=f"batch{size}.")
    kafka.create_topic("clickstream", args.partitions)
    day = datetime.now(UTC).date() - timedelta(days=1)
    started = time.perf_counter()
    produce(kafka, size, day, args.scale)
    print(f"{size:,} messages produced in {time.perf_counter() - started:.0f}s", flush=True)
    runs = []
    for _ in range(args.repeat):
        runs.append(one_batch(kafka, work, day, profile) | {"load": load()})
        r = runs[-1]
        print(
            f"  {r['rows']:,} rows in {r['seconds']:.3f}s, {r['cpu_seconds']:.3f} CPU s, load {r['load'][0]}: "
            + ", ".join(f"{k} {v:.3f} ({r['cpu_parts'][k]:.3f})" for k, v in r["parts"].items()),
            flush=True,
        )
    best, least_cpu = min(runs, key=lambda r: r["seconds"]), min(runs, key=lambda r: r["cpu_seconds"])
    ranges = {p: (0, e) for p, e in kafka.end_offsets("clickstream").items()}
    batch = kafka.read_range("clickstream", ranges)
    return {
        "messages": size,
        "best": best,
        "us_per_event": round(1e6 * best["seconds"] / best["rows"], 2),
        "events_per_second": round(best["rows"] / best["seconds"]),
        "cpu_us_per_event": round(1e6 * least_cpu["cpu_seconds"] / least_cpu["rows"], 2),
        "to_rows_split": to_rows_split(batch, day),
        "runs": runs,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,300000", help="messages per batch, comma-separated")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--scale", type=float, default=1.0, help="generator scale (one poison message a day)")
    p.add_argument("--profile", help="write a cProfile of the timed runs to this file")
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bronze-batch-"))
    profile = cProfile.Profile() if args.profile else None
    load_before = load()
    with Broker(log_file=work / "tansu.log") as broker:
        results = [measure(int(s), args, broker.bootstrap, work, profile) for s in args.sizes.split(",")]
    if profile:
        profile.dump_stats(args.profile)
    report = {
        "benchmark": "bronze_batch",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/bronze_batch.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "code": str(REPO),
        "commit": subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average": {"before": load_before, "after": load()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "profile")} | {"broker": "tansu"},
        "results": results,
    }
    print(f"\n{'messages':>10} {'seconds':>8} {'us/event':>9} {'events/s':>9} {'CPU us/event':>13}  split: s (CPU s)")
    for r in results:
        b = r["best"]
        split = ", ".join(f"{k} {v:.3f} ({b['cpu_parts'][k]:.3f})" for k, v in b["parts"].items())
        print(
            f"{r['messages']:>10,} {b['seconds']:>8.3f} {r['us_per_event']:>9.1f} {r['events_per_second']:>9,} "
            f"{r['cpu_us_per_event']:>13.1f}  {split}"
        )
        print(f"{'':>10} to_rows alone: " + ", ".join(f"{k} {v:.3f}" for k, v in r["to_rows_split"].items()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bronze_batch-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {path}")
    shutil.rmtree(work, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
