"""Jobs users launch by hand or by schedule (maintenance has its own module). Modules under defs/ import
other definitions as modules, not by name: every name a module holds is loaded as a definition."""

import dagster as dg

from lakehouse import catalog
from lakehouse.lib import partitions

# Everything the batch sources feed, for one partition window at a time (one run for a whole range): their
# Bronze, the Silver built from it, and Gold (one dbt build); publishing and serving follow by automation.
batch_job = dg.define_asset_job(
    "batch",
    selection=(
        dg.AssetSelection.assets(*(t.key for t in catalog.landed())).downstream()
        - dg.AssetSelection.groups("publish", "serve")
    )
    | dg.AssetSelection.groups("gold"),
    partitions_def=partitions.daily,
    description="Bronze, Silver and Gold (dbt) for the batch sources (CRM, orders, FX) over a partition window.",
)
