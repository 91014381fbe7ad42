"""Silver: typed, deduplicated, conformed tables built from Bronze with Spark."""

import dagster as dg

from lakehouse.lib import partitions


def silver_asset(*, deps: list, **kwargs) -> dg.AssetsDefinition:
    """A Silver asset: group `silver`, daily partitions, and a whole partition range in one Spark run."""
    return dg.asset(
        key_prefix="silver",
        group_name="silver",
        deps=deps,
        partitions_def=partitions.daily,
        backfill_policy=partitions.single_run,
        kinds={"spark", "delta"},
        **kwargs,
    )
