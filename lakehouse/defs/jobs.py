"""Jobs users launch by hand or by schedule (maintenance has its own module). Modules under defs/ import
other definitions as modules, not by name: every name a module holds is loaded as a definition."""

import dagster as dg

from lakehouse.defs.bronze import batch as bronze
from lakehouse.defs.gold import dbt as gold
from lakehouse.defs.silver import customers, fx_rates, orders
from lakehouse.lib import partitions

# Everything the batch sources feed, for one partition window at a time (one run for a whole range).
batch_job = dg.define_asset_job(
    "batch",
    selection=dg.AssetSelection.assets(bronze.crm_customers, bronze.orders, bronze.fx_rates, customers.customers,
                                       fx_rates.fx_rates, orders.orders, gold.gold_dbt),
    partitions_def=partitions.daily,
    description="Bronze, Silver and Gold (dbt) for the batch sources (CRM, orders, FX) over a partition window.",
)
