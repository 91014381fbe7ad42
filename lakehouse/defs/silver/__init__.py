"""Silver: typed, deduplicated, conformed tables built from Bronze with Spark, each with its quarantine table."""

import functools
import inspect

import dagster as dg

from lakehouse import catalog
from lakehouse.lib import accounting, partitions


def silver_asset(*, deps: list, automation_condition: dg.AutomationCondition | None = None, **kwargs):
    """A Silver table's asset, named after the decorated function: group `silver`, daily partitions, a whole
    partition range in one Spark run, the rows_accounted_for check, and (where the catalog declares one) its
    quarantine table as a second asset of the same step, since the step's rules write both."""

    def decorator(fn) -> dg.AssetsDefinition:
        table = catalog.table(f"silver/{fn.__name__}")
        specs = [
            dg.AssetSpec(
                table.key,
                deps=deps,
                code_version=catalog.code_version(inspect.getmodule(fn), table.contract),
                description=inspect.getdoc(fn),
                group_name="silver",
                kinds={"spark", "delta"},
                automation_condition=automation_condition,
            )
        ]
        quarantine = catalog.quarantine_table(table) if table.quarantine else None
        if quarantine:
            specs.append(
                dg.AssetSpec(
                    quarantine.key,
                    deps=deps,
                    code_version=catalog.code_version(inspect.getmodule(fn), quarantine.contract),
                    description=quarantine.description,
                    group_name="silver",
                    kinds={"spark", "delta"},
                    skippable=True,
                    automation_condition=automation_condition,
                )
            )

        @dg.multi_asset(
            name=f"silver__{table.name}",
            specs=specs,
            check_specs=[accounting.spec(table.key)],
            partitions_def=partitions.daily,
            backfill_policy=partitions.single_run,
            can_subset=True,
            **kwargs,
        )
        @functools.wraps(fn)
        def _asset(context: dg.AssetExecutionContext, **resources):
            result = fn(context, **resources)
            if table.key in context.selected_asset_keys:
                yield dg.MaterializeResult(
                    asset_key=table.key, metadata=result.metadata, check_results=result.check_results
                )
            if quarantine and quarantine.key in context.selected_asset_keys:
                yield dg.MaterializeResult(
                    asset_key=quarantine.key,
                    metadata=resources["lake"].write_metadata(quarantine.layer, quarantine.name),
                )

        return _asset

    return decorator
