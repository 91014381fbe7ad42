"""Batch Bronze runs itself: a sensor watches the landing folder and requests a run for each
(source, day) file that is new or has changed since it last looked. Silver then follows by automation."""

import json
from datetime import date

import dagster as dg

from lakehouse import settings
from lakehouse.sources.generator import FILE_EXT

BATCH_SOURCES = ("crm_customers", "orders", "fx_rates")


def landed_files() -> dict[str, float]:
    """`<source>/<day>` -> modification time of every batch landing file."""
    found = {}
    for source in BATCH_SOURCES:
        for path in (settings.landing_dir() / source).glob(f"*.{FILE_EXT[source]}"):
            found[f"{source}/{path.stem}"] = path.stat().st_mtime
    return found


@dg.sensor(
    name="landing_files",
    asset_selection=[f"bronze/{s}" for s in BATCH_SOURCES],
    minimum_interval_seconds=60,
    description="Requests a Bronze run for each new or changed landing file (source and day).",
)
def landing_files_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    seen = json.loads(context.cursor) if context.cursor else {}
    files = landed_files()
    changed = sorted(k for k, mtime in files.items() if seen.get(k) != mtime)
    requests = [
        dg.RunRequest(
            run_key=f"{key}@{files[key]}",
            asset_selection=[dg.AssetKey(["bronze", key.split("/")[0]])],
            partition_key=date.fromisoformat(key.split("/")[1]).isoformat(),
        )
        for key in changed
    ]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(files))
