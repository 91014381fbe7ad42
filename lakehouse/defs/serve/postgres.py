"""`serve/<mart>` assets: selected columns of three Gold marts synced into the Postgres serving store
that the read API (lakehouse/serve/api.py) queries, and a check per table that the copy matches Gold.

Partition-aware like Gold: a run syncs its partition window (the whole range in one run); the fully
rebuilt customer_360 is synced whole whatever the window.
"""

import sys

import dagster as dg

from lakehouse import catalog
from lakehouse.lib import partitions, serving
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.serving import TABLES, ServingDatabase


def serve_key(mart: str) -> dg.AssetKey:
    return dg.AssetKey(["serve", mart])


def serve_asset(mart: str) -> dg.AssetsDefinition:
    t = TABLES[mart]
    scope = f"days in the run's window by {t.window_column}" if t.window_column else "all rows (rebuilt in full)"

    @dg.asset(
        key=serve_key(mart),
        deps=[dg.AssetKey(["gold", mart])],
        code_version=catalog.code_version(sys.modules[__name__], serving),
        group_name="serve",
        partitions_def=partitions.daily,
        backfill_policy=partitions.single_run,
        kinds={"postgres"},
        description=f"gold/{mart} ({', '.join(t.columns)}) upserted on ({', '.join(t.keys)}) into the "
        f"Postgres serving table `{t.table}`: {scope}.",
    )
    def _serve(context: dg.AssetExecutionContext, serving: ServingDatabase, lake: DeltaLake) -> dg.MaterializeResult:
        start, end = partitions.window(context)
        metadata = serving.sync_window(lake, mart, start, end)
        context.log.info(f"serve/{mart} [{start}, {end}): {metadata}")
        return dg.MaterializeResult(metadata={**metadata, "window": f"[{start}, {end})", "table": t.table})

    return _serve


def matches_gold_check(mart: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=serve_key(mart),
        name="matches_gold",
        partitions_def=partitions.daily,
        description=f"The serving copy of gold/{mart} has Gold's rows for the window: same count and the "
        "same checksum of the key columns.",
    )
    def _check(
        context: dg.AssetCheckExecutionContext, serving: ServingDatabase, lake: DeltaLake
    ) -> dg.AssetCheckResult:
        start, end = partitions.check_window(context)
        result = serving.compare_window(lake, mart, start, end)
        return dg.AssetCheckResult(
            passed=bool(result.pop("matches")),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={**result, "window": f"[{start}, {end})"},
        )

    return _check


SERVE_ASSETS = [serve_asset(mart) for mart in TABLES]
SERVE_CHECKS = [matches_gold_check(mart) for mart in TABLES]
