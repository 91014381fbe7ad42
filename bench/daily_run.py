"""The daily run as users have it: `dagster job execute -j batch` for one partition, from the CLI, in a new
process, on a lake that already holds the days before it. Measured on day 2 and on the last day of --days,
so the cost of history shows (the full-rebuild marts grow with it).

    python bench/daily_run.py --days 30 --scale 1
    python bench/daily_run.py --days 365 --scale 10 --landing /tmp/landing-365x10   # a year (generate once)

The lake is built as a scheduler would leave it: day 1 by a single-run backfill (in this process), the
daily run of day 2 by the CLI, days 3 to N-1 by one more backfill, the daily run of day N by the CLI. Each
CLI run is timed from spawn to exit (interpreter start, the code location's load, the engine's start, the
steps, the process's exit), and read back from the Dagster instance it wrote to:

- per step, the time from STEP_START to STEP_SUCCESS;
- dbt's step split from its own log (the invocation's dbt.log and run_results.json): `before_dbt_s`
  (dagster-dbt's set-up and the dbt process's start and imports, up to dbt's first log line), `parse_s`
  (loading the project: a partial parse that finds no change, or a full parse), `setup_s` (the Spark
  session, the schemas, the on-run-start hook that registers the lake's tables), `nodes_s` (every model's
  and test's SQL, dbt's own timing), `after_s` (the process's exit, the last events, the marts' column
  lineage and schema metadata); dbt's fixed cost is the step's time without `nodes_s`.

Results: bench/results/daily_run-<days>d-x<scale>-<time>.json (and stdout), with the load average.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backfill import (  # noqa: E402
    REPO,
    RESULTS,
    PeakMemory,
    dbt_split,
    event_log_storage,
    gib,
    load,
    setup_home,
    single_run,
    write_landing,
)

from lakehouse.catalog import DBT_PROJECT_DIR  # noqa: E402


def daily_run(day: date, warm_dbt: bool) -> dict:
    """`dagster job execute -j batch` for one day in a new process, timed from spawn to exit."""
    import dagster as dg

    # the console script of this interpreter (not a pyenv shim, which starts a shell and pyenv first)
    dagster = str(Path(sys.executable).parent / "dagster")
    command = [dagster, "job", "execute", "-m", "lakehouse.definitions", "-j", "batch"]
    command += ["--tags", json.dumps({"dagster/partition": day.isoformat()})]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as config:
        dbt = {"project_dir": str(DBT_PROJECT_DIR), "warm_start": warm_dbt}  # run config names every field
        json.dump({"resources": {"dbt": {"config": dbt}}}, config)  # JSON is YAML
        config.flush()
        spawned, t = time.time(), time.perf_counter()
        done = subprocess.run([*command, "-c", config.name], cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"daily run of {day} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        starts, steps = {}, {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                starts[event.step_key] = entry.timestamp
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                steps[event.step_key] = (starts[event.step_key], entry.timestamp)
            elif event.event_type == dg.DagsterEventType.RUN_START:
                run_start = entry.timestamp
    gold = next(key for key in steps if key.startswith("gold"))
    return {
        "day": day.isoformat(),
        "wall_s": round(wall, 3),
        "run_id": run.run_id,
        "spawn_to_run_start_s": round(run_start - spawned, 3),  # interpreter, imports, the code location's load
        "steps_s": {key: round(end - start, 3) for key, (start, end) in steps.items()},
        "dbt": dbt_split(run.run_id, *steps[gold]),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=30, help="history: the last day's daily run follows days 1 to N-1")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--start", default="2026-08-01")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--landing", type=Path, default=None, help="generate the landing files here once and reuse them")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument(
        "--cold-dbt", action="store_true", help="no warm dbt (DbtCli.warm_start off): dbt starts in the step"
    )
    args = p.parse_args(argv)
    warm_dbt = not args.cold_dbt
    if args.days < 4:
        raise SystemExit("--days must be at least 4 (day 1, the run of day 2, days 3 to N-1, the run of day N)")

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    home = Path(f"/tmp/lakehouse-daily-{stamp}")
    setup_home(home, "sail")
    start = date.fromisoformat(args.start)
    result = {
        "benchmark": "daily_run",
        "started_at": stamp,
        "settings": {
            "days": args.days,
            "scale": args.scale,
            "start": args.start,
            "seed": args.seed,
            "warm_dbt": warm_dbt,
            "event_log_storage": event_log_storage(),
        },
        "command": "python bench/daily_run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_before": load(),
    }
    print(f"load before: {result['load_before']['uptime']}", flush=True)
    t = time.perf_counter()
    write_landing(home, start, args.days, args.scale, args.seed, args.landing)
    result["generate_s"] = round(time.perf_counter() - t, 3)

    with PeakMemory() as mem:
        result["backfill_day_1"] = {"wall_s": single_run(start, 1)["wall_s"]}
        result["day_2"] = daily_run(start + timedelta(days=1), warm_dbt)
        result["backfill_days_3_to_n_1"] = {"wall_s": single_run(start + timedelta(days=2), args.days - 3)["wall_s"]}
        result["day_n"] = daily_run(start + timedelta(days=args.days - 1), warm_dbt)
    result["peak_rss_gib"] = gib(mem.peak)
    result["day_n_over_day_2"] = round(result["day_n"]["wall_s"] / result["day_2"]["wall_s"], 2)
    result["load_after"] = load()

    for name in ("day_2", "day_n"):
        run, dbt = result[name], result[name]["dbt"]
        print(
            f"daily run {run['day']}: {run['wall_s']} s CLI start to exit; steps "
            + ", ".join(f"{k} {v}" for k, v in run["steps_s"].items())
        )
        print(
            f"  dbt step {dbt['step_s']} s = before dbt {dbt['before_dbt_s']} + parse {dbt['parse_s']}"
            f" ({'partial' if dbt['partial_parse'] else 'FULL'}) + set-up {dbt['setup_s']} + {dbt['nodes']} nodes"
            f" {dbt['nodes_s']} + after {dbt['after_s']} (and gaps); fixed cost {dbt['fixed_cost_s']} s"
        )
    print(f"day {args.days} / day 2: {result['day_n_over_day_2']}x; peak RSS {result['peak_rss_gib']} GiB")
    print(f"load after: {result['load_after']['uptime']}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"daily_run-{args.days}d-x{args.scale:g}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
