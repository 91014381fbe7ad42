"""What a user sees in the UI: assets grouped by layer, every asset partitioned by day, and Spark
assets that take a whole partition range in one run; and loading the code location is quiet."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from lakehouse.lib import partitions
from lakehouse_tests.helpers import DEFS

SPECS = list(DEFS.resolve_all_asset_specs())
STREAMING_BRONZE = {dg.AssetKey(["bronze", "clickstream_events"]), dg.AssetKey(["bronze", "support_ticket_changes"])}


def test_the_code_location_loads():
    dg.Definitions.validate_loadable(DEFS)


def test_assets_are_grouped_by_their_layer():
    assert {spec.key.path[0] for spec in SPECS} >= {"bronze", "silver"}
    assert all(spec.group_name == spec.key.path[0] for spec in SPECS)


def test_batch_layers_hold_the_expected_assets():
    keys = {spec.key.to_user_string() for spec in SPECS}
    assert keys >= {
        "bronze/crm_customers",
        "bronze/orders",
        "bronze/fx_rates",
        "silver/customers",
        "silver/orders",
        "silver/fx_rates",
    }


def test_every_asset_is_partitioned_by_day():
    assert all(spec.partitions_def == partitions.daily for spec in SPECS)


def test_a_partition_range_runs_as_one_run_per_asset():
    """Streaming Bronze is the exception: a run consumes Kafka offsets, not a range of days."""
    graph = DEFS.resolve_asset_graph()
    for key in graph.get_all_asset_keys() - STREAMING_BRONZE:
        assert graph.get(key).backfill_policy == dg.BackfillPolicy.single_run(), key


def test_silver_orders_reads_customers_and_fx_rates():
    graph = DEFS.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey(["silver", "orders"])).parent_keys}
    assert parents == {"bronze/orders", "silver/customers", "silver/fx_rates"}


def test_dg_lists_and_checks_the_project_defs_folder():
    """`dg` finds the code location from pyproject's [tool.dg] and loads lakehouse/defs/ as Dagster's layout expects."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    checked = subprocess.run(["dg", "check", "defs"], cwd=repo, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0 and "All definitions loaded successfully" in checked.stdout, checked.stderr[-2000:]
    listed = subprocess.run(["dg", "list", "defs", "--json"], cwd=repo, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assets = {a["asset_key"] for a in json.loads(listed.stdout)["assets"]}
    assert {"bronze/orders", "silver/orders", "silver/orders_quarantine", "gold/customer_360"} <= assets


QUIET_LOAD = """
import sys
from lakehouse.definitions import defs

defs().get_repository_def()
print(" ".join(m for m in ("dbt", "dagster_snowflake", "snowflake.core", "snowflake.snowpark", "dagster_aws", "psycopg",
                           "asyncpg", "fastapi", "lakehouse.dev.generator", "lakehouse.dev.broker",
                           "lakehouse.dev.producer") if m in sys.modules))
"""


def test_loading_the_code_location_is_quiet_and_leaves_heavy_integrations_unimported():
    """No warnings on stderr (the Beta/Preview notices are silenced in lakehouse/__init__.py), and the
    integrations that only runs use are imported by those runs, not by every load; dbt-core is not imported at
    all (dagster-dbt runs the dbt CLI in a subprocess); the demo code (generator, dev broker, producer) is never
    imported by the code location."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", QUIET_LOAD],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    assert done.stdout.split() == []


def test_every_asset_has_owners_a_domain_and_a_code_version():
    for spec in SPECS:
        assert spec.owners and spec.tags.get("domain") and spec.code_version, spec.key


def test_exactly_the_tables_with_personal_data_are_tagged_pii():
    """Contact fields (Bronze and Silver customers, and the quarantine that keeps their records) and the
    Customer-360 mart with its masked contact fields, wherever it is served."""
    tagged = {spec.key.to_user_string() for spec in SPECS if "pii" in spec.tags}
    assert tagged == {
        "bronze/crm_customers",
        "silver/customers",
        "silver/customers_quarantine",
        "gold/customer_360",
        "publish/snowflake/customer_360",
        "serve/customer_360",
    }
