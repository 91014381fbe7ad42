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
    # Steps share the run's process and so its Spark session: a step per process would start an
    # engine per step, and on one machine the engine parallelises within a step anyway.
    executor=dg.in_process_executor,
    resources={
        "spark": SparkEngine(remote=settings.spark_remote()),
        "lake": DeltaLake(root=settings.lake_root()),
    },
)
