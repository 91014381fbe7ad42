"""The Customer-360 lakehouse (Dagster code location: lakehouse.definitions; CLI: lakehouse.cli).

The project builds on Dagster APIs marked beta or preview (partitioned asset checks, backfill
policies, `map_resolved_asset_specs`, ...) knowingly; their maturity notices would be printed on every
load and CLI call, so exactly those two categories are silenced here, once, for whatever imports the
package. (They are dagster.BetaWarning and dagster.PreviewWarning, defined in dagster_shared: imported
from there so that `lakehouse --help` does not import all of dagster.)"""

import warnings

from dagster_shared.utils.warnings import BetaWarning, PreviewWarning

warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
