"""A batch source is one catalog declaration plus its contract: the Bronze asset, the landing sensor's view,
the quality checks, the UI's column schema and maintenance all follow from it, with no other code changed."""

import dagster as dg
import pyspark.sql.types as T
import pytest
from pandera.pyspark import Field

from lakehouse import catalog
from lakehouse.defs import maintenance
from lakehouse.defs.bronze.batch import batch_bronze_asset
from lakehouse.defs.sensors.landing import landed_files
from lakehouse.lib.contracts.bronze import BronzeRow
from lakehouse.lib.quality import quality_checks
from lakehouse.lib.spark import SparkEngine
from lakehouse_tests.helpers import DEFS

STRING = T.StringType()
DAY = "2026-11-01"


class Returns(BronzeRow):
    return_id: STRING = Field(nullable=True)
    order_id: STRING = Field(nullable=True)
    amount: STRING = Field(nullable=True, description="Refunded amount in the order's currency")

    class Config:
        name = "bronze.returns"
        metadata = {"key": [], "id": ["_source_file", "return_id"], "window": "_partition_date"}


RETURNS = catalog.Table(
    "bronze",
    "returns",
    Returns,
    "Product returns as landed each day (CSV).",
    landing="csv",
    checks=("schema_drift", "volume"),
    zorder=("order_id",),
)


@pytest.fixture
def sixth_source(monkeypatch, tmp_path):
    """The catalog with a sixth source declared, and a day of its files in a fresh landing zone."""
    monkeypatch.setattr(catalog, "TABLES", [*catalog.TABLES, RETURNS])
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    folder = tmp_path / "landing" / "returns"
    folder.mkdir(parents=True)
    (folder / f"{DAY}.csv").write_text("return_id,order_id,amount\nR1,O1,10.00\nR2,O2,5.50\nR3,O9,1.25\n")
    return tmp_path


def test_the_landing_sensor_sees_the_new_source(sixth_source):
    files, ignored = landed_files()
    assert list(files) == [f"returns/{DAY}"] and ignored == []


def test_the_new_source_gets_its_contract_drift_and_volume_checks(sixth_source):
    checks = {(key.asset_key.to_user_string(), key.name) for c in quality_checks() for key in c.check_keys}
    assert {
        ("bronze/returns", "contract"),
        ("bronze/returns", "schema_drift"),
        ("bronze/returns", "volume_anomaly"),
    } <= checks


def test_the_new_source_shows_its_contract_as_column_schema(sixth_source):
    spec = catalog.with_declaration(dg.AssetSpec(RETURNS.key))
    columns = [c.name for c in spec.metadata["dagster/column_schema"].columns]
    assert columns[-3:] == ["return_id", "order_id", "amount"]


def test_the_new_source_lands_every_row_and_passes_its_checks(sixth_source, sail_url):
    lake_root = str(sixth_source / "lake")
    from lakehouse.lib.lake import DeltaLake

    lake = DeltaLake(root=lake_root)
    checks = [c for c in quality_checks() if any(k.asset_key == RETURNS.key for k in c.check_keys)]
    result = dg.materialize(
        [batch_bronze_asset(RETURNS), *checks],
        partition_key=DAY,
        resources={"spark": SparkEngine(remote=sail_url), "lake": lake},
    )
    assert result.success
    rows = lake.delta_table("bronze", "returns").to_pyarrow_table().to_pylist()
    assert sorted(r["return_id"] for r in rows) == ["R1", "R2", "R3"]
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {"rows_accounted_for": True, "contract": True, "schema_drift": True, "volume_anomaly": True}
    assert maintenance.zorder_columns("bronze/returns", lake.delta_table("bronze", "returns")) == ["order_id"]


def test_gold_marts_declare_their_grain_and_window_in_their_dbt_models():
    """Publish, serve and maintenance MERGE and z-order on what the models declare; the UI shows it too."""
    grain = {m.name: (m.keys, m.window, m.zorder) for m in catalog.marts().values()}
    assert grain == {
        "churn_features": (("snapshot_date", "customer_id"), "snapshot_date", ("customer_id",)),
        "customer_360": (("customer_id",), None, ("customer_id",)),
        "daily_kpis": (("date_day",), "date_day", ()),
        "product_performance_daily": (("order_date", "product_id", "category"), "order_date", ()),
        "revenue_daily": (("order_date", "country", "category", "currency"), "order_date", ()),
        "rfm_segments": (("customer_id",), None, ("segment", "customer_id")),
    }
    from lakehouse_tests.helpers import DEFS

    spec = next(s for s in DEFS.resolve_all_asset_specs() if s.key == dg.AssetKey(["gold", "revenue_daily"]))
    assert (spec.metadata["lakehouse/keys"], spec.metadata["lakehouse/window"]) == (
        "order_date, country, category, currency",
        "order_date",
    )


def test_every_silver_column_comes_from_columns_its_upstream_contracts_have():
    """A Silver asset's column lineage (its contract's `computed_from`, else the same column of the table it reads)
    names, for every column of its contract, columns that the contracts of its upstream assets have: renaming
    a column on either side fails here, not in the UI."""
    specs = {s.key: s for s in DEFS.resolve_all_asset_specs()}
    for table in (t for t in catalog.TABLES if t.layer == "silver"):
        spec = specs[table.key]
        column_lineage = spec.metadata["dagster/column_lineage"]
        assert list(column_lineage.deps_by_column) == list(table.contract.to_schema().columns), table.path
        upstream = {d.asset_key for d in spec.deps}
        for column, deps in column_lineage.deps_by_column.items():
            assert deps, f"{table.path}.{column} comes from no column"
            for dep in deps:
                source = f"{dep.asset_key.to_user_string()}.{dep.column_name}"
                assert dep.asset_key in upstream, f"{table.path}.{column} comes from {source}, not an upstream asset"
                assert dep.column_name in catalog.table(dep.asset_key.to_user_string()).contract.to_schema().columns, (
                    f"{table.path}.{column} comes from {source}, which that table's contract does not have"
                )
