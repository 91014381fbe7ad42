"""The `lakehouse` code location: Bronze -> Silver (-> Gold) assets, the resources they share and the
jobs users launch. Load it with `dagster dev -w workspace.yaml` or `-m lakehouse.definitions`."""

import dagster as dg

from lakehouse import partitions, settings
from lakehouse.bronze import batch as bronze_batch
from lakehouse.resources.lake import DeltaLake
from lakehouse.resources.spark import SparkEngine
from lakehouse.silver import customers, fx_rates, orders

BATCH_ASSETS = [
    *dg.load_assets_from_modules([bronze_batch]),
    customers.customers,
    fx_rates.fx_rates,
    orders.orders,
]

# Everything the batch sources feed, for one partition window at a time (one run for a whole range).
batch_job = dg.define_asset_job(
    "batch",
    selection=dg.AssetSelection.assets(*BATCH_ASSETS),
    partitions_def=partitions.daily,
    description="Bronze and Silver for the batch sources (CRM, orders, FX) over a partition window.",
)

defs = dg.Definitions(
    assets=BATCH_ASSETS,
    jobs=[batch_job],
    resources={
        "spark": SparkEngine(remote=settings.spark_remote()),
        "lake": DeltaLake(root=settings.lake_root()),
    },
)
