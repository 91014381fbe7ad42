"""The `lakehouse` code location: everything under lakehouse/defs/ (Bronze -> Silver -> Gold assets, their
checks, sensors, jobs and resources), with each asset's contract schema, freshness SLA and automation.
Load it with `dagster dev`, `dg list defs` or `-m lakehouse.definitions`."""

from pathlib import Path

import dagster as dg

from lakehouse import policies
from lakehouse.catalog import with_contract_schema


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        # Steps share the run's process and so its Spark session: a step per process would start an
        # engine per step, and on one machine the engine parallelises within a step anyway.
        dg.Definitions(executor=dg.in_process_executor),
    ).map_resolved_asset_specs(func=lambda spec: policies.with_policies(with_contract_schema(spec)))
