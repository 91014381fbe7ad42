"""The `lakehouse` code location: everything under lakehouse/defs/ (Bronze -> Silver -> Gold assets, their
checks, sensors, jobs and resources), with each asset's contract schema, freshness SLA and automation, and
a freshness check per day (partition) for Bronze, Silver and Gold.
Load it with `dagster dev`, `dg list defs` or `-m lakehouse.definitions`.

The defs folder is loaded as `dg.load_from_defs_folder` does (the same ComponentTree over the defs module
that [tool.dg] names), but from the folder itself rather than the tree's root: the root also
imports every package that registers Dagster component types (the `dagster_dg_cli.registry_modules`
entry points: dagster_snowflake, dagster_dbt, dagster_aws, dagster_spark), only to list those types in
the UI's component catalogue. dagster_snowflake alone takes ~5 s to import; this project defines no
YAML or UI-managed components, so every load would pay it for nothing."""

import gc
from pathlib import Path

import dagster as dg

import lakehouse.defs
from lakehouse import policies
from lakehouse.catalog import with_declaration
from lakehouse.lib.freshness import partition_freshness


@dg.definitions
def defs() -> dg.Definitions:
    # From the module, not `for_project`: that parses pyproject.toml (tomlkit, 0.15 s of every load) to learn it
    tree = dg.ComponentTree.from_module(defs_module=lakehouse.defs, project_root=Path(__file__).parents[1])
    assets = dg.Definitions.merge(
        tree.build_defs(tree.defs_module_path),
        # Steps share the run's process and so its Spark session: a step per process would start an
        # engine per step, and on one machine the engine parallelises within a step anyway.
        dg.Definitions(executor=dg.in_process_executor, component_tree=tree),
    ).map_resolved_asset_specs(func=lambda spec: policies.with_policies(with_declaration(spec)))
    # Every time-partitioned asset of a layer with a partition deadline gets its per-partition freshness check
    freshness = partition_freshness(
        assets.resolve_all_asset_specs(), policies.PARTITION_DEADLINES, policies.PARTITION_FRESHNESS_SEVERITY
    )
    # What the load built (3,000 modules, the dbt manifest, the definitions) lives as long as the process:
    # out of the cyclic collector's reach it is not traversed by each full collection, nor once more at
    # exit, which took 0.5 s of every process that loads the code location (bench/import_time.py).
    gc.freeze()
    return dg.Definitions.merge(assets, freshness)
