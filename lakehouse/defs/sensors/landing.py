"""Batch Bronze runs itself: a sensor watches the landing folder and requests a run for each
(source, day) file that is new or has changed since it last looked. Silver then follows by automation."""

import json
from datetime import date

import dagster as dg

from lakehouse import catalog, settings
from lakehouse.lib import partitions


def landed_files() -> tuple[dict[str, float], list[str]]:
    """`<source>/<day>` -> modification time of every batch landing file, and the files ignored: names that
    are not a day of the partitions (`notes.csv`, `2026-13-01.csv`), or a file being written (`*.tmp`)."""
    found, ignored = {}, []
    days = partitions.daily
    for table in catalog.landed():
        source = table.name
        for path in (settings.landing_dir() / source).glob(f"*.{table.landing}"):
            try:
                day = date.fromisoformat(path.stem).isoformat()
            except ValueError:
                day = None
            if day is None or not days.has_partition_key(day):
                ignored.append(f"{source}/{path.name}")
                continue
            found[f"{source}/{day}"] = path.stat().st_mtime
    return found, ignored


@dg.sensor(
    name="landing_files",
    asset_selection=[t.key for t in catalog.landed()],
    minimum_interval_seconds=60,
    description="Requests a Bronze run for each new or changed landing file (source and day).",
)
def landing_files_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    seen = json.loads(context.cursor) if context.cursor else {}
    files, ignored = landed_files()
    if ignored:
        context.log.warning(
            f"ignored {len(ignored)} landing file(s) not named <day>.<ext> for a partition day: "
            f"{', '.join(sorted(ignored)[:20])}"
        )
    changed = sorted(k for k, mtime in files.items() if seen.get(k) != mtime)
    requests = [
        dg.RunRequest(
            run_key=f"{key}@{files[key]}",
            asset_selection=[dg.AssetKey(["bronze", key.split("/")[0]])],
            partition_key=key.split("/")[1],
        )
        for key in changed
    ]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(files))
