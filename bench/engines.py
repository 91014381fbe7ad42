"""Engine benchmark: the same backfill on Sail, on local Apache Spark with Delta Lake, and the DuckDB reference,
over the same landing files, in one invocation.

    python bench/engines.py                                                   # 30 days x scale 3
    python bench/engines.py --days 3 --scale 0.2 --out-dir /tmp/engines-smoke  # a smoke test

1. The fixed-seed generator writes the landing files once (bench/backfill.py --generate-only --landing).
2. `bench/backfill.py --engine sail --no-duckdb`, then `--engine spark --no-duckdb`, each in its own
   process over those files: one single run of the batch job (Bronze, Silver, checks, Gold via dbt) into a
   fresh lake. Each engine's peak memory is measured alone: the backfill process with its children (dbt,
   and for Spark the JVM Connect server it starts).
3. The DuckDB reference (bench/reference_duckdb.py) once, in this process.
4. The row count of every table the engines wrote is compared; differences go to the JSON and stdout.

Writes bench/results/engines-<days>d-x<scale>-<UTC time>.json and .png (or --out-dir), with each engine's
backfill JSON and chart in the folder of the same name, and prints a Markdown table. Exit code 1 if a run
failed or the engines' tables differ.
"""

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

from backfill import RESULTS, PeakMemory, gib, load, stacked_chart

BACKFILL = Path(__file__).resolve().with_name("backfill.py")
LABELS = {"sail": "Sail", "spark": "Apache Spark (JVM) + Delta", "duckdb": "DuckDB SQL reference"}


def run_engine(engine: str, common: list[str], home: Path, runs_dir: Path) -> dict:
    """One single-run backfill in a child process; its backfill JSON, or the failure."""
    cmd = [
        sys.executable,
        str(BACKFILL),
        *common,
        "--engine",
        engine,
        "--no-duckdb",
        "--home",
        str(home),
        "--out-dir",
        str(runs_dir),
    ]
    print(f"\n== {engine}: {' '.join(cmd[1:])}", flush=True)
    with PeakMemory() as mem:
        code = subprocess.run(cmd).returncode
    shutil.rmtree(home, ignore_errors=True)
    found = sorted(runs_dir.glob(f"backfill-{engine}-*.json"))
    if code or not found:
        return {"engine": engine, "ok": False, "returncode": code}
    r = json.loads(found[-1].read_text())
    return {
        "engine": engine,
        "ok": r["single_run"]["success"],
        "returncode": code,
        "result_file": str(found[-1]),
        "process_peak_rss_gib": gib(mem.peak),
        "single_run": r["single_run"],
        "lake_rows": r["single_run_lake_rows"],
        "load_before": r["load_before"],
        "load_after": r["load_after"],
    }


def compare_rows(runs: dict) -> dict:
    counts = {name: run["lake_rows"] for name, run in runs.items() if run.get("lake_rows") is not None}
    tables = sorted({t for rows in counts.values() for t in rows})
    different = {
        t: {name: rows.get(t) for name, rows in counts.items()}
        for t in tables
        if len({rows.get(t) for rows in counts.values()}) > 1
    }
    return {
        "engines": sorted(counts),
        "tables": len(tables),
        "equal": len(counts) > 1 and not different,
        "different": different,
    }


def table(runs: dict, duck: dict) -> tuple[list[str], dict]:
    lines = [
        "| engine | wall s | bronze s | silver s | gold s | peak RSS GiB | whole run / DuckDB | same work / DuckDB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    bars = {}
    for name, run in runs.items():
        if not run["ok"]:
            lines.append(f"| {LABELS[name]} | failed (exit {run['returncode']}) | | | | | | |")
            continue
        s = run["single_run"]
        layer = {k: s["layers"].get(k, {}).get("seconds", 0) for k in ("bronze", "silver", "gold")}
        lines.append(
            f"| {LABELS[name]} | {s['wall_s']:.1f} | {layer['bronze']:.1f} | {layer['silver']:.1f} | "
            f"{layer['gold']:.1f} | {s['peak_rss_gib']:.2f} | {s['wall_s'] / duck['wall_s']:.1f}x | "
            f"{s['same_work_as_duckdb_s'] / duck['wall_s']:.1f}x |"
        )
        bars[LABELS[name].replace(" + ", "\n+ ")] = {**layer, "overhead": max(0.0, s["orchestration_overhead_s"])}
    d = duck["layers_s"]
    lines.append(
        f"| {LABELS['duckdb']} (Silver + 3 marts) | {duck['wall_s']:.1f} | {d['bronze']:.1f} | "
        f"{d['silver']:.1f} | {d['gold']:.1f} | {duck['peak_rss_gib']:.2f} | 1.0x | 1.0x |"
    )
    bars["DuckDB SQL\nreference"] = {**d, "overhead": 0}
    return lines, bars


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--scale", type=float, default=3.0)
    p.add_argument("--start", default="2026-08-01")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--engines", nargs="+", choices=["sail", "spark"], default=["sail", "spark"])
    p.add_argument(
        "--landing",
        type=Path,
        default=None,
        help="keep the landing files here and reuse them next time (default: a temporary folder)",
    )
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where the results go (default bench/results)")
    args = p.parse_args(argv)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"engines-{args.days}d-x{args.scale:g}-{stamp}"
    runs_dir = args.out_dir / name
    work = Path(tempfile.mkdtemp(prefix="lakehouse-engines-"))
    landing = args.landing or work / "landing"
    common = [
        "--days",
        str(args.days),
        "--scale",
        f"{args.scale:g}",
        "--start",
        args.start,
        "--seed",
        str(args.seed),
        "--landing",
        str(landing),
    ]
    result = {
        "benchmark": "engines",
        "started_at": stamp,
        "days": args.days,
        "scale": args.scale,
        "seed": args.seed,
        "start": args.start,
        "python": platform.python_version(),
        "command": "python bench/engines.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_before": load(),
    }
    print(f"load before: {result['load_before']['uptime']}", flush=True)
    try:
        subprocess.run(
            [sys.executable, str(BACKFILL), *common, "--generate-only", "--home", str(work / "generate")], check=True
        )
        runs = {engine: run_engine(engine, common, work / engine, runs_dir) for engine in args.engines}

        from reference_duckdb import run as duckdb_run

        print("\n== DuckDB reference", flush=True)
        with PeakMemory() as mem:
            duck = duckdb_run(landing, date.fromisoformat(args.start), args.days, work / "duckdb")
        duck["peak_rss_gib"] = gib(mem.peak)
        print(f"DuckDB reference: {duck['wall_s']} s ({duck['layers_s']}), rows {duck['rows']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = load()
    result |= {"runs": runs, "duckdb": duck, "same_rows": compare_rows(runs)}
    for run in runs.values():
        if run["ok"]:
            run["ratio_whole_run_vs_duckdb"] = round(run["single_run"]["wall_s"] / duck["wall_s"], 2)
            run["ratio_same_work_vs_duckdb"] = round(run["single_run"]["same_work_as_duckdb_s"] / duck["wall_s"], 2)

    lines, bars = table(runs, duck)
    result["table_markdown"] = "\n".join(lines)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    before, after = result["load_before"], result["load_after"]
    stacked_chart(
        bars,
        f"Backfill {args.days} days x scale {args.scale:g}, one Dagster run per engine\n"
        f"load avg {before['load_1m']} -> {after['load_1m']} on {before['cpus']} CPUs",
        args.out_dir / f"{name}.png",
    )

    print(
        f"\n{args.days} days x scale {args.scale:g}, "
        f"{sum(duck['rows'][t] for t in ('bronze_fx', 'bronze_crm', 'bronze_orders'))}"
        f" landed batch records; load average {before['load_1m']} / {before['load_5m']} / {before['load_15m']} before, "
        f"{after['load_1m']} / {after['load_5m']} / {after['load_15m']} after, {before['cpus']} CPUs\n"
    )
    print(result["table_markdown"])
    same = result["same_rows"]
    if same["equal"]:
        print(f"\nsame row count in all {same['tables']} tables on {' and '.join(same['engines'])}")
    elif len(same["engines"]) > 1:
        print(f"\nROW COUNTS DIFFER between {' and '.join(same['engines'])}:")
        for t, counts in same["different"].items():
            print(f"  {t}: {counts}")
    print(f"\nresults: {args.out_dir / name}.json and .png; per engine: {runs_dir}/")
    return 0 if all(r["ok"] for r in runs.values()) and (same["equal"] or len(same["engines"]) < 2) else 1


if __name__ == "__main__":
    sys.exit(main())
