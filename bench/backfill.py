"""Backfill benchmark: Bronze -> Silver -> Gold over a whole range of days, as ONE Dagster run (the
single-run backfill policy), optionally against the naive way (one run per day per asset), and against
the same Silver/Gold work written directly in DuckDB (bench/reference_duckdb.py).

    python bench/backfill.py --days 7 --scale 1                      # quick: a couple of minutes
    python bench/backfill.py --days 90 --scale 10                    # the target configuration
    python bench/backfill.py --days 90 --scale 10 --per-partition --per-partition-days 7
    python bench/backfill.py --days 7 --scale 1 --engine spark       # the same on local Apache Spark (JVM)

Everything runs in this process against a fresh LAKEHOUSE_HOME under /tmp (or --home): the fixed-seed
generator writes the landing files, then the `batch` job (every Bronze, Silver and Gold asset) runs over
the window through `execute_in_process` with the partition-range tags, which is what a UI or CLI range
backfill of single-run assets launches, recorded in a real (SQLite) Dagster instance. Reported:

- wall time of the run, and per layer the summed step time (from STEP_START / STEP_SUCCESS in the run's
  event log) with the rows the layer's materialisations wrote (their metadata) and rows/s;
- orchestration overhead: run wall time minus the time spent inside steps;
- peak memory: the largest RSS of this process and its children (dbt, the Spark JVM) summed, sampled every
  0.2 s with psutil, split by process name at the peak, next to getrusage's max RSS of self and of
  children (terminated children only: not the JVM, which lives until this process exits);
- the number of Dagster runs;
- with --per-partition: the same work as one run per day per asset (3 Bronze, 3 Silver, 1 dbt run per
  day) into a second lake, its wall time, the speed-up, and whether both lakes hold the same rows. If
  --per-partition-days is smaller than --days, the per-partition time is extrapolated linearly to --days
  (a lower bound: the full-rebuild marts grow with history) and the figures say so;
- the DuckDB reference over the same landing files, its time and the ratio;
- the machine's load average (the development machine is shared).

`--engine spark` runs the same single run on Apache Spark with Delta Lake (JVM, `LAKEHOUSE_SPARK_REMOTE=local`:
a Spark Connect server with delta-spark, started as a child process on first use), `--engine sail` (the
default) on the embedded Sail engine. bench/engines.py runs both and DuckDB on the same landing files.

Results: bench/results/backfill-<engine>-<days>d-x<scale>-<UTC time>.json and .png (or --out-dir; and stdout).
"""

import argparse
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


class PeakMemory:
    """Peak RSS of this process plus all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self.at_peak: dict[str, int] = {}  # RSS per process name at the peak: "python", "java", "dbt", ...
        self.samples: list[tuple[float, int]] = []  # (epoch seconds, total RSS)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        me = psutil.Process()
        procs = {}
        for proc in [me, *me.children(recursive=True)]:
            try:
                procs[proc.pid] = (proc.name(), proc.ppid(), proc.memory_info())
            except psutil.Error:
                pass
        by_name = {}
        for name, ppid, mem in procs.values():
            # A child between fork and exec still has its parent's memory (the JVM starts its helper processes
            # with posix_spawn, whose child shares the JVM's address space): counting it would count the JVM twice.
            if ppid in procs and procs[ppid][2].vms == mem.vms:
                continue
            by_name[name] = by_name.get(name, 0) + mem.rss
        total = sum(by_name.values())
        self.samples.append((time.time(), total))
        if total > self.peak:
            self.peak, self.at_peak = total, by_name
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()

    def peak_during_gib(self, spans: dict[str, tuple[float, float]]) -> dict[str, float]:
        """The peak RSS sampled while each (step name -> (start, end)) ran."""
        return {
            name: gib(max((rss for t, rss in self.samples if start <= t <= end), default=0))
            for name, (start, end) in spans.items()
        }

    def at_peak_gib(self) -> dict[str, float]:
        return {name: gib(rss) for name, rss in sorted(self.at_peak.items(), key=lambda kv: -kv[1])}


def gib(n: float) -> float:
    return round(n / 2**30, 3)


def load() -> dict:
    one, five, fifteen = os.getloadavg()
    return {
        "load_1m": round(one, 2),
        "load_5m": round(five, 2),
        "load_15m": round(fifteen, 2),
        "cpus": os.cpu_count(),
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }


def setup_home(home: Path, engine: str) -> None:
    """Point the code location at a fresh home before it is imported (its resources read the environment)."""
    from lakehouse.cli import write_instance_config

    os.environ["LAKEHOUSE_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    os.environ.pop("LAKEHOUSE_LAKE_ROOT", None)
    os.environ["LAKEHOUSE_SPARK_REMOTE"] = "local" if engine == "spark" else "sail"
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    write_instance_config(home / "dagster")  # the instance `lakehouse` makes


def event_log_storage() -> str:
    """The instance's event log class (Dagster's own, or lakehouse's that keeps its SQLite files open)."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        return type(instance.event_log_storage).__name__


def write_landing(home: Path, start: date, days: int, scale: float, seed: int, reuse: Path | None) -> tuple[dict, bool]:
    """The seeded landing files in home/landing, and the generator's manifest. With `reuse`, they are generated
    there once and linked: later invocations with the same start, scale and seed, and as many days or fewer
    (the first days of a longer range), skip the generator (half an hour for a year at scale 10). Returns the
    manifest, its record counts those of the days asked for, and whether it was reused."""
    from lakehouse.dev.generator import generate

    landing = home / "landing"
    if reuse is None:
        return generate(landing, start, days, scale, seed), False
    saved = reuse / "manifest.json"
    manifest = json.loads(saved.read_text()) if saved.exists() else None
    same = {"start": start.isoformat(), "scale": scale, "seed": seed}
    reused = manifest is not None and manifest["days"] >= days and all(manifest[k] == v for k, v in same.items())
    if not reused:
        manifest = generate(reuse, start, days, scale, seed)
        saved.write_text(json.dumps(manifest))
    landing.symlink_to(reuse.resolve(), target_is_directory=True)
    wanted = {(start + timedelta(days=i)).isoformat() for i in range(days)}
    totals = {
        source: {"records": sum(v["records"] for day, v in by_day.items() if day in wanted)}
        for source, by_day in manifest["sources"].items()
    }
    return {**manifest, "days": days, "totals": totals}, reused


# -- reading a run's event log ---------------------------------------------------------------------------------

TARGET = REPO / "dbt_project" / "target"


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def invocation_times(invocation: Path) -> dict:
    """One dbt invocation's moments (epoch seconds) and its nodes' time, from its own log and run results."""
    events = {}
    for line in (invocation / "dbt.log").read_text().splitlines():
        info = json.loads(line)["info"]
        events.setdefault(info["name"], seconds(info["ts"]))  # the first of each kind
    nodes = json.loads((invocation / "run_results.json").read_text())["results"]
    return {
        "started": events["MainReportVersion"],
        "parsed": events["FoundStats"],
        "partial_parse": "PartialParsingSkipParsing" in events,
        "first_node": min(seconds(t["started_at"]) for n in nodes for t in n["timing"]),
        "finished": events["FinishedRunningStats"],
        "nodes_s": sum(seconds(n["timing"][-1]["completed_at"]) - seconds(n["timing"][0]["started_at"]) for n in nodes),
        "nodes": len(nodes),
    }


def dbt_split(run_id: str, step_start: float, step_end: float) -> dict:
    """The dbt step's time, from its invocations' own logs (one, or one per batch of a long window): start-up,
    parse, set-up, the SQL, the time between invocations, the rest."""
    found = [invocation_times(i) for i in TARGET.glob(f"gold_dbt-{run_id[:7]}-*")]
    runs = sorted(found, key=lambda t: t["started"])
    step, nodes_s = step_end - step_start, sum(t["nodes_s"] for t in runs)
    return {
        "step_s": round(step, 3),
        "invocations": len(runs),
        "before_dbt_s": round(runs[0]["started"] - step_start, 3),
        "parse_s": round(sum(t["parsed"] - t["started"] for t in runs), 3),
        "partial_parse": all(t["partial_parse"] for t in runs),
        "setup_s": round(sum(t["first_node"] - t["parsed"] for t in runs), 3),
        "nodes_s": round(nodes_s, 3),
        "nodes": sum(t["nodes"] for t in runs),
        "between_s": round(sum(b["started"] - a["finished"] for a, b in itertools.pairwise(runs)), 3),
        "after_s": round(step_end - runs[-1]["finished"], 3),
        "fixed_cost_s": round(step - nodes_s, 3),
    }


def layer_of(key) -> str:
    return key.path[0]


def rows_of(metadata: dict) -> int:
    def value(name):
        v = metadata.get(name)
        return None if v is None else int(getattr(v, "value", v))

    written = value("rows_written")
    if written is not None:
        return written
    merged = [value("rows_inserted"), value("rows_updated")]
    if any(v is not None for v in merged):
        return sum(v or 0 for v in merged)
    return value("dagster/row_count") or 0


def run_profile(instance, run_id: str) -> dict:
    """Step durations and rows written per layer, from the run's event log."""
    from dagster import DagsterEventType

    starts, steps, spans, layers = {}, {}, {}, {}
    step_layer, step_rows, checks, models = {}, {}, 0, {}
    first = last = None
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        first = entry.timestamp if first is None else first
        last = entry.timestamp
        if event is None:
            continue
        kind = event.event_type
        if kind == DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            spans[event.step_key] = (starts.get(event.step_key, entry.timestamp), entry.timestamp)
            steps[event.step_key] = round(entry.timestamp - spans[event.step_key][0], 3)
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            # A range run records one materialisation per partition, each with the whole write's metadata:
            # count each asset once per step.
            mat = event.event_specific_data.materialization
            step_layer[event.step_key] = layer_of(mat.asset_key)
            step_rows.setdefault(event.step_key, {})[mat.asset_key] = rows_of(mat.metadata)
            duration = mat.metadata.get("Execution Duration")  # dagster-dbt: the model's own SQL time
            if duration is not None:
                models[mat.asset_key.to_user_string()] = round(float(getattr(duration, "value", duration)), 3)
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION:
            checks += 1
    for step, seconds in steps.items():
        layer = step_layer.get(step, step.split("__")[0])
        agg = layers.setdefault(layer, {"seconds": 0.0, "rows": 0, "steps": 0})
        agg["seconds"] = round(agg["seconds"] + seconds, 3)
        agg["rows"] += sum(step_rows.get(step, {}).values())
        agg["steps"] += 1
    return {
        "steps_s": steps,
        "step_spans": spans,
        "layers": layers,
        "checks": checks,
        "models_s": models,
        "asset_steps": sorted(step_layer),
        "log_span_s": round((last or 0) - (first or 0), 3),
    }


def merge_profiles(profiles: list[dict]) -> dict:
    layers = {}
    for p in profiles:
        for layer, agg in p["layers"].items():
            total = layers.setdefault(layer, {"seconds": 0.0, "rows": 0, "steps": 0})
            total["seconds"] = round(total["seconds"] + agg["seconds"], 3)
            total["rows"] += agg["rows"]
            total["steps"] += agg["steps"]
    return {"layers": layers, "checks": sum(p["checks"] for p in profiles)}


def with_rates(layers: dict) -> dict:
    return {
        k: {**v, "rows_per_s": round(v["rows"] / v["seconds"]) if v["seconds"] else None}
        for k, v in sorted(layers.items())
    }


# -- the two ways of backfilling -------------------------------------------------------------------------------

REFERENCE_MARTS = ["revenue_daily", "product_performance_daily", "rfm_segments"]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def single_run(start: date, days: int) -> dict:
    import dagster as dg

    from lakehouse.definitions import defs

    job = defs().resolve_job_def("batch")
    last = start + timedelta(days=days - 1)
    with dg.DagsterInstance.get() as instance:
        t = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            run_config=QUIET,
            raise_on_error=False,
            tags={
                "dagster/asset_partition_range_start": start.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
            },
        )
        wall = time.perf_counter() - t
        profile = run_profile(instance, result.run_id)
    in_steps = sum(profile["steps_s"].values())
    # The work the DuckDB reference also does: the Bronze and Silver asset steps (not their checks) and the
    # SQL of the three marts it reimplements (dbt's own execution time per model).
    same_work = sum(profile["steps_s"][s] for s in profile["asset_steps"] if not s.startswith("gold")) + sum(
        profile["models_s"].get(f"gold/{m}", 0) for m in REFERENCE_MARTS
    )
    return {
        "success": result.success,
        "runs": 1,
        "wall_s": round(wall, 3),
        "run_ids": [result.run_id],
        "layers": with_rates(profile["layers"]),
        "steps_s": profile["steps_s"],
        "checks": profile["checks"],
        "dbt_models_s": profile["models_s"],
        "dbt_step": dbt_split(result.run_id, *profile["step_spans"]["gold_dbt"]),
        "asset_step_spans": {s: profile["step_spans"][s] for s in profile["asset_steps"]},
        "same_work_as_duckdb_s": round(same_work, 3),
        "orchestration_overhead_s": round(wall - in_steps, 3),
    }


def per_partition(start: date, days: int) -> dict:
    """One run per day per asset, days in order (SCD2 history needs them in order), like a backfill of assets
    without a single-run policy. The dbt assets are one op, so Gold is one run (one `dbt build`) per day."""
    import dagster as dg

    from lakehouse.definitions import defs

    job = defs().resolve_job_def("batch")
    order = [
        "bronze/fx_rates",
        "bronze/crm_customers",
        "bronze/orders",
        "silver/fx_rates",
        "silver/customers",
        "silver/orders",
    ]
    gold = sorted(k for k in job.asset_layer.selected_asset_keys if k.path[0] == "gold")
    groups = [[dg.AssetKey.from_user_string(name)] for name in order] + [gold]
    profiles, run_ids, failed = [], [], []
    t = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        for i in range(days):
            day = (start + timedelta(days=i)).isoformat()
            for keys in groups:
                result = job.execute_in_process(
                    instance=instance, run_config=QUIET, partition_key=day, asset_selection=keys, raise_on_error=False
                )
                run_ids.append(result.run_id)
                if not result.success:
                    failed.append(f"{day} {keys[0].to_user_string()}")
                profiles.append(run_profile(instance, result.run_id))
            print(f"  per-partition: {day} done ({time.perf_counter() - t:.0f} s)", flush=True)
    wall = time.perf_counter() - t
    merged = merge_profiles(profiles)
    in_steps = sum(sum(p["steps_s"].values()) for p in profiles)
    return {
        "success": not failed,
        "failed": failed,
        "runs": len(run_ids),
        "wall_s": round(wall, 3),
        "layers": with_rates(merged["layers"]),
        "checks": merged["checks"],
        "orchestration_overhead_s": round(wall - in_steps, 3),
    }


def run_process_startup() -> float:
    """What a run costs before its first step under `dagster dev` (a new process loads the code location)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import lakehouse.definitions"], check=True, capture_output=True)
    return round(time.perf_counter() - t, 3)


def lake_rows(root: Path) -> dict:
    from lakehouse.lib.lake import DeltaLake

    if not root.exists():
        return {}
    return {f"{t['layer']}/{t['name']}": t["rows"] for t in DeltaLake(root=str(root)).tables()}


# -- report ----------------------------------------------------------------------------------------------------


def stacked_chart(bars: dict[str, dict[str, float]], title: str, path: Path) -> None:
    """One stacked bar per label: bronze / silver / gold / overhead seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"bronze": "#b08d57", "silver": "#9ea7ad", "gold": "#d4af37", "overhead": "#dddddd"}
    fig, ax = plt.subplots(figsize=(max(6, 1.9 * len(bars)), 4.8))
    bottom = [0.0] * len(bars)
    for part in ("bronze", "silver", "gold", "overhead"):
        values = [b.get(part, 0) for b in bars.values()]
        ax.bar(
            list(bars),
            values,
            bottom=bottom,
            color=colours[part],
            label="orchestration / start-up" if part == "overhead" else part,
        )
        bottom = [x + y for x, y in zip(bottom, values, strict=True)]
    for i, total in enumerate(bottom):
        ax.text(i, total, f"{total:.0f} s", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("seconds")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart(result: dict, path: Path) -> None:
    bars = {}

    def stacked(label, layers, overhead):
        bars[label] = {
            **{k: layers.get(k, {}).get("seconds", 0) for k in ("bronze", "silver", "gold")},
            "overhead": max(0.0, overhead),
        }

    if result.get("single_run"):
        s = result["single_run"]
        stacked(f"single run\n({s['runs']} run)", s["layers"], s["orchestration_overhead_s"])
    if result.get("per_partition"):
        p = result["per_partition"]
        label = f"per partition\n({p['runs']} runs, {p['days']} d)"
        stacked(label, p["layers"], p["orchestration_overhead_s"])
        if p["days"] != result["days"]:
            f = result["days"] / p["days"]
            bars[f"per partition\nextrapolated to {result['days']} d"] = {k: v * f for k, v in bars[label].items()}
    if result.get("duckdb"):
        d = result["duckdb"]["layers_s"]
        bars["DuckDB SQL\nreference"] = {"bronze": d["bronze"], "silver": d["silver"], "gold": d["gold"], "overhead": 0}
    mem = result.get("single_run", {}).get("peak_rss_gib")
    stacked_chart(
        bars,
        f"Backfill {result['days']} days x scale {result['scale']} ({result['engine']})"
        + (f", single-run peak RSS {mem} GiB" if mem else "")
        + f"\nload avg {result['load_before']['load_1m']}"
        f" on {result['load_before']['cpus']} CPUs",
        path,
    )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--start", default="2026-08-01", help="first day (default 2026-08-01)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--engine", choices=["sail", "spark"], default="sail")
    p.add_argument("--per-partition", action="store_true", help="also run one run per day per asset")
    p.add_argument(
        "--per-partition-days",
        type=int,
        default=None,
        help="per-partition runs for only the first N days, extrapolated to --days",
    )
    p.add_argument("--no-duckdb", action="store_true", help="skip the DuckDB reference")
    p.add_argument("--home", type=Path, default=None, help="LAKEHOUSE_HOME to use (default: a fresh /tmp folder)")
    p.add_argument("--keep", action="store_true", help="keep the home folder afterwards")
    p.add_argument(
        "--landing",
        type=Path,
        default=None,
        help="generate the landing files here once and reuse them in later runs with the same arguments",
    )
    p.add_argument("--generate-only", action="store_true", help="only generate (into --landing) and exit")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where the JSON and chart go (default bench/results)")
    args = p.parse_args(argv)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    home = args.home or Path(f"/tmp/lakehouse-bench-{stamp}")
    shutil.rmtree(home, ignore_errors=True)
    setup_home(home, args.engine)
    start = date.fromisoformat(args.start)
    result = {
        "benchmark": "backfill",
        "started_at": stamp,
        "days": args.days,
        "scale": args.scale,
        "seed": args.seed,
        "start": args.start,
        "engine": args.engine,
        "event_log_storage": event_log_storage(),
        "home": str(home),
        "python": platform.python_version(),
        "command": "python bench/backfill.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_before": load(),
    }
    print(f"load before: {result['load_before']['uptime']}", flush=True)

    t = time.perf_counter()
    manifest, reused = write_landing(home, start, args.days, args.scale, args.seed, args.landing)
    result["generate_s"] = round(time.perf_counter() - t, 3)
    if reused:
        result["landing_reused"] = str(args.landing)
    result["landed_records"] = {s: v["records"] for s, v in manifest["totals"].items()}
    batch_records = sum(result["landed_records"][s] for s in ("crm_customers", "orders", "fx_rates"))
    print(
        f"generated {args.days} d x scale {args.scale} in {result['generate_s']} s"
        f"{' (reused ' + str(args.landing) + ')' if result.get('landing_reused') else ''}: {result['landed_records']}",
        flush=True,
    )
    if args.generate_only:
        return result

    with PeakMemory() as mem:
        single = single_run(start, args.days)
    single["peak_rss_gib"] = gib(mem.peak)
    single["peak_rss_by_process_gib"] = mem.at_peak_gib()
    single["peak_rss_by_step_gib"] = mem.peak_during_gib(single.pop("asset_step_spans"))
    usage_self, usage_children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    single["maxrss_self_gib"] = gib(usage_self.ru_maxrss * 1024)
    single["maxrss_children_gib"] = gib(usage_children.ru_maxrss * 1024)
    single["batch_records_per_s"] = round(batch_records / single["wall_s"])
    result["single_run"] = single
    print(
        f"single run: {'ok' if single['success'] else 'FAILED'}, {single['wall_s']} s wall, "
        f"{single['runs']} Dagster run, peak RSS {single['peak_rss_gib']} GiB "
        f"(max RSS self {single['maxrss_self_gib']}, children {single['maxrss_children_gib']}), "
        f"orchestration overhead {single['orchestration_overhead_s']} s",
        flush=True,
    )
    for layer, agg in single["layers"].items():
        print(
            f"  {layer:<7} {agg['seconds']:>8.1f} s  {agg['rows']:>10} rows written  {agg['rows_per_s']} rows/s",
            flush=True,
        )
    result["single_run_lake_rows"] = lake_rows(home / "lake")

    if args.per_partition:
        pp_days = min(args.days, args.per_partition_days or args.days)
        (home / "lake").rename(home / "lake-single-run")  # the per-partition runs build a second lake
        with PeakMemory() as mem:
            naive = per_partition(start, pp_days)
        naive["peak_rss_gib"] = gib(mem.peak)
        naive["days"] = pp_days
        naive["run_process_startup_s"] = run_process_startup()
        factor = args.days / pp_days
        naive["extrapolated"] = factor != 1
        naive["wall_s_for_all_days"] = round(naive["wall_s"] * factor, 3)
        naive["runs_for_all_days"] = round(naive["runs"] * factor)
        # Under `dagster dev` every run is a new process that loads the code location first.
        naive["wall_s_for_all_days_with_run_processes"] = round(
            naive["wall_s_for_all_days"] + naive["runs_for_all_days"] * naive["run_process_startup_s"], 3
        )
        result["per_partition"] = naive
        result["speedup_single_vs_per_partition"] = round(naive["wall_s_for_all_days"] / single["wall_s"], 2)
        result["speedup_with_run_processes"] = round(
            naive["wall_s_for_all_days_with_run_processes"] / (single["wall_s"] + naive["run_process_startup_s"]), 2
        )
        if pp_days == args.days:
            per_partition_rows = lake_rows(home / "lake")
            same = {k: v for k, v in result["single_run_lake_rows"].items() if per_partition_rows.get(k) == v}
            result["same_rows_as_single_run"] = {
                "equal": sorted(same),
                "different": {
                    k: [v, per_partition_rows.get(k)]
                    for k, v in result["single_run_lake_rows"].items()
                    if k not in same
                },
            }
        print(
            f"per partition: {'ok' if naive['success'] else 'FAILED ' + str(naive['failed'][:3])}, "
            f"{naive['runs']} runs over {pp_days} d in {naive['wall_s']} s"
            + (
                f" -> {naive['wall_s_for_all_days']} s for {args.days} d (extrapolated x{factor:.1f})"
                if naive["extrapolated"]
                else ""
            )
            + f"; speed-up of the single run: {result['speedup_single_vs_per_partition']}x in this process, "
            f"{result['speedup_with_run_processes']}x counting a {naive['run_process_startup_s']} s process "
            f"start per run (dagster dev)",
            flush=True,
        )

    if not args.no_duckdb:
        from reference_duckdb import run as duckdb_run

        with PeakMemory() as mem:
            duck = duckdb_run(home / "landing", start, args.days, home / "duckdb")
        duck["peak_rss_gib"] = gib(mem.peak)
        result["duckdb"] = duck
        print(f"DuckDB reference: {duck['wall_s']} s ({duck['layers_s']}), rows {duck['rows']}", flush=True)
        if result.get("single_run"):
            result["ratio_single_run_vs_duckdb"] = round(result["single_run"]["wall_s"] / duck["wall_s"], 2)
            result["ratio_same_work_vs_duckdb"] = round(
                result["single_run"]["same_work_as_duckdb_s"] / duck["wall_s"], 2
            )
            print(
                f"Dagster + {args.engine} single run / DuckDB: {result['ratio_single_run_vs_duckdb']}x for the "
                f"whole run (all 6 marts, dbt tests, asset checks, orchestration); "
                f"{result['ratio_same_work_vs_duckdb']}x for the "
                f"same work (Bronze + Silver asset steps {result['single_run']['same_work_as_duckdb_s']} s incl. "
                f"the {', '.join(REFERENCE_MARTS)} models' SQL)",
                flush=True,
            )

    result["load_after"] = load()
    print(f"load after: {result['load_after']['uptime']}", flush=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = f"backfill-{args.engine}-{args.days}d-x{args.scale:g}-{stamp}"
    (args.out_dir / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    chart(result, args.out_dir / f"{name}.png")
    print(f"results: {args.out_dir / name}.json and .png", flush=True)
    if not args.keep and args.home is None:
        shutil.rmtree(home, ignore_errors=True)
    return result


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message=".*(beta|preview)")
    main()
