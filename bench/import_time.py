"""Start-up cost: how long a new process takes to import and load the code location, and `lakehouse --help`.

    python bench/import_time.py [--runs 5]

Every process that serves or runs the code location pays the load first: the UI's code server and each
reload, every run's worker process, `dagster asset list`, `dg list defs`, the tests. Measured here:

- `load`: a fresh `python -c` that imports lakehouse.definitions, calls `defs()` and `.get_repository_def()`
  (wall time from spawn to exit, interpreter start-up included), with the phases inside it: importing
  dagster, importing lakehouse.definitions, `defs()` (which imports lakehouse/defs/ and builds the
  assets), `get_repository_def()`;
- `cli_help`: the `lakehouse` console script with `--help`;
- `interpreter`: `python -c pass`, the floor under both; what a load's wall time has beyond the
  interpreter and the phases is the process's exit (tearing down the imported modules);
- each as the best of --runs fresh processes (the minimum: the figure least inflated by other load on a
  shared machine), with every run's time kept;
- one more load under `python -X importtime`: the 10 packages that take longest to import (cumulative:
  what the package imports included, summed over the places it is first imported from, and the
  module that imported it), and the time spent in the project's own modules (their bodies build the
  assets).

The code location is this checkout's (PYTHONPATH is set to it). A first load after the dbt project
changed re-parses it (`dbt parse`, ~10 s): one unmeasured warm-up load comes first.

Results: bench/results/import_time.json (and stdout), with the machine's load average before and after.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backfill import REPO, RESULTS, load  # noqa: E402 - bench/ is not a package

LOAD = """
import json, sys, time
t0 = time.perf_counter()
import dagster
t1 = time.perf_counter()
from lakehouse.definitions import defs
t2 = time.perf_counter()
d = defs()
t3 = time.perf_counter()
d.get_repository_def()
t4 = time.perf_counter()
print(json.dumps({"import_dagster_s": t1 - t0, "import_definitions_s": t2 - t1, "defs_s": t3 - t2,
                  "repository_def_s": t4 - t3}))
"""


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def timed(command: list[str]) -> tuple[float, str, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout, done.stderr


def best_of(command: list[str], runs: int) -> dict:
    results = [timed(command) for _ in range(runs)]
    walls = [wall for wall, _, _ in results]
    best = min(range(runs), key=walls.__getitem__)
    return {
        "best_s": round(walls[best], 3),
        "runs_s": [round(w, 3) for w in walls],
        "stdout": results[best][1],
        "warnings": sum(stderr.count("Warning") for _, _, stderr in results),
    }


def import_rows(stderr: str) -> list[tuple[int, int, int, str]]:
    """(self µs, cumulative µs, depth, module) from `-X importtime`, in its order (children first)."""
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m[1]), int(m[2]), len(m[3]) // 2, m[4]))
    return rows


def parents(rows: list[tuple[int, int, int, str]]) -> list[int | None]:
    """Index of each row's importer: the next row (children are printed first) one level up."""
    found: list[int | None] = [None] * len(rows)
    stack: list[int] = []
    for i in range(len(rows) - 1, -1, -1):
        while stack and rows[stack[-1]][2] >= rows[i][2]:
            stack.pop()
        found[i] = stack[-1] if stack else None
        stack.append(i)
    return found


def top_packages(rows: list[tuple[int, int, int, str]], n: int = 10) -> list[dict]:
    """Packages by cumulative import time: each entry into a package from outside it counts."""
    up = parents(rows)
    cumulative: dict[str, int] = defaultdict(int)
    imported_by: dict[str, str] = {}
    for i, (_, total, _, module) in enumerate(rows):
        package = module.split(".")[0]
        importer = rows[up[i]][3] if up[i] is not None else None
        if package == "lakehouse" or (importer and importer.split(".")[0] == package):
            continue
        cumulative[package] += total
        if importer and importer.startswith("lakehouse"):
            imported_by.setdefault(package, importer)
        else:
            imported_by.setdefault(package, importer or "(top level)")
    ranked = sorted(cumulative.items(), key=lambda kv: -kv[1])[:n]
    return [{"package": p, "cumulative_s": round(us / 1e6, 3), "first_imported_by": imported_by[p]} for p, us in ranked]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS / "import_time.json")
    args = p.parse_args(argv)

    script = Path(sys.executable).parent / "lakehouse"
    cli = [str(script)] if script.exists() else [shutil.which("lakehouse") or "lakehouse"]
    load_cmd = [sys.executable, "-c", LOAD]
    result = {
        "benchmark": "import_time",
        "started_at": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "python": platform.python_version(),
        "runs": args.runs,
        "command": "python bench/import_time.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_before": load(),
    }
    print(f"load before: {result['load_before']['uptime']}", flush=True)
    timed(load_cmd)  # warm-up: a stale dbt manifest is re-parsed here, not in a measured run

    loaded = best_of(load_cmd, args.runs)
    phases = {k: round(v, 3) for k, v in json.loads(loaded.pop("stdout").strip().splitlines()[-1]).items()}
    result["load"] = {**loaded, "phases_of_best_s": phases}
    helped = best_of([*cli, "--help"], args.runs)
    helped.pop("stdout")
    result["cli_help"] = helped
    bare = best_of([sys.executable, "-c", "pass"], args.runs)
    bare.pop("stdout")
    result["interpreter"] = bare
    result["load"]["exit_s_of_best"] = round(loaded["best_s"] - bare["best_s"] - sum(phases.values()), 3)

    _, _, stderr = timed([sys.executable, "-X", "importtime", "-c", LOAD])
    rows = import_rows(stderr)
    result["importtime"] = {
        "total_s": round(sum(total for _, total, depth, _ in rows if depth == 0) / 1e6, 3),
        "top_packages": top_packages(rows),
        "lakehouse_modules_self_s": round(sum(own for own, _, _, m in rows if m.startswith("lakehouse")) / 1e6, 3),
    }
    result["load_after"] = load()

    print(
        f"load + get_repository_def: best {loaded['best_s']:.2f} s of {loaded['runs_s']} "
        f"({', '.join(f'{k} {v:.2f}' for k, v in phases.items())}); warnings printed: {loaded['warnings']}"
    )
    print(
        f"  = interpreter start {bare['best_s']:.2f} + phases {sum(phases.values()):.2f} + exit "
        f"{result['load']['exit_s_of_best']:.2f}"
    )
    print(
        f"lakehouse --help: best {helped['best_s']:.2f} s of {helped['runs_s']}; warnings printed: {helped['warnings']}"
    )
    print(
        f"-X importtime: {result['importtime']['total_s']:.2f} s of imports, of which the project's own modules "
        f"{result['importtime']['lakehouse_modules_self_s']:.2f} s; top packages (cumulative):"
    )
    for entry in result["importtime"]["top_packages"]:
        print(
            f"  {entry['cumulative_s']:6.3f} s  {entry['package']:<22} first imported by {entry['first_imported_by']}"
        )
    print(f"load after: {result['load_after']['uptime']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
