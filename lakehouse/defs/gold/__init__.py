"""Gold: the dbt marts (dbt.py).

dagster-dbt runs dbt as a CLI, in a subprocess. In this process it imports dbt-core only for its in-process
selection engine and dbt adapter, and Gold uses neither (its selection is the whole project; row counts and
columns come from the Delta tables). That import is ~1 s of every process that loads the code location
(bench/import_time.py), so it is hidden from dagster-dbt, which then takes the path it has for environments
without dbt-core (dbt Fusion's). The dbt CLI is unaffected: it runs in its own process."""

import sys

sys.modules.setdefault("dbt.version", None)  # `from dbt.version import ...` raises ImportError
