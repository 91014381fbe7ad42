"""Publishing Gold to Snowflake: the `publish/snowflake/*` assets, run through Dagster with
dagster-snowflake's SnowflakeResource (which the code location's resource creates inside the run).

No local Snowflake exists (and this machine cannot reach one), so fakesnow stands in for it: it patches
`snowflake.connector.connect` and `write_pandas` and runs the Snowflake SQL (MERGE, EQUAL_NULL,
temporary tables) on DuckDB. What is tested here is our SQL and bookkeeping - MERGE on each mart's
key, partition windows, idempotence, metadata - not Snowflake itself."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import dagster as dg
import fakesnow
import pytest

from lakehouse.catalog import marts
from lakehouse.defs.publish.snowflake import PUBLISH_ASSETS, snowflake_resource
from lakehouse.lib.snowflake import LazySnowflakeResource
from lakehouse_tests.helpers import DAY_KEYS, range_tags, read_rows

pytest.register_assert_rewrite("lakehouse_tests.serving_fixtures")
pytest_plugins = ["lakehouse_tests.serving_fixtures"]

DAYS = [date.fromisoformat(d) for d in DAY_KEYS]
# fakesnow notes that it copies Arrow results for DB-API cursors: true, and irrelevant at this size
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")


@pytest.fixture(scope="module")
def snowflake():
    """The Snowflake resource, its connections going to one in-memory fakesnow (DuckDB) database."""
    with fakesnow.patch():
        yield LazySnowflakeResource(
            account="fake", user="fake", password="fake", database="LAKEHOUSE", schema="GOLD", warehouse="COMPUTE_WH"
        )


def publish(lake, snowflake, first: str = DAY_KEYS[0], last: str = DAY_KEYS[-1], marts=None):
    selection = [dg.AssetKey(["publish", "snowflake", m]) for m in marts] if marts else None
    result = dg.materialize(
        PUBLISH_ASSETS,
        resources={"lake": lake, "snowflake": snowflake},
        selection=selection,
        tags=range_tags(first, last),
    )
    assert result.success
    return result


def metadata(result, mart: str) -> dict:
    events = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["publish", "snowflake", mart])
    ]
    assert events
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


def query(snowflake, sql: str) -> list[dict]:
    with snowflake.get_connection() as conn:
        cur = conn.cursor()
        cur.execute(sql)
        names = [d.name.lower() for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def normal(value):
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, Decimal) and value == value.to_integral_value() and value.as_tuple().exponent == 0:
        return int(value)
    return value


def rows(records: list[dict]) -> list[tuple]:
    return sorted((tuple(sorted((k, normal(v)) for k, v in r.items())) for r in records), key=repr)


@pytest.fixture(scope="module")
def published(gold_lake, snowflake):
    return publish(gold_lake, snowflake)


def test_every_mart_is_published_exactly(published, gold_lake, snowflake):
    for name, mart in marts().items():
        want = read_rows(gold_lake, "gold", name)
        assert want, name
        assert rows(query(snowflake, f"SELECT * FROM {mart.name.upper()}")) == rows(want), name
        meta = metadata(published, name)
        assert (meta["rows_merged"], meta["rows_inserted"], meta["rows_deleted"]) == (len(want), len(want), 0)
        assert meta["dagster/row_count"] == len(want) and meta["duration_s"] > 0 and meta["table"] == mart.name.upper()


def test_republishing_merges_nothing(published, gold_lake, snowflake):
    before = {m.name.upper(): rows(query(snowflake, f"SELECT * FROM {m.name.upper()}")) for m in marts().values()}
    result = publish(gold_lake, snowflake)
    for name, mart in marts().items():
        meta = metadata(result, name)
        assert (meta["rows_merged"], meta["rows_deleted"]) == (0, 0), name
        assert meta["rows_in_window"] > 0
        assert rows(query(snowflake, f"SELECT * FROM {mart.name.upper()}")) == before[mart.name.upper()]


def test_a_day_publishes_its_window_only(published, gold_lake, snowflake):
    """Re-publishing one day repairs that day (an edited row, a row Gold lacks) and nothing else."""
    day, outside = DAYS[1], DAYS[0] - timedelta(days=1)
    with snowflake.get_connection() as conn:
        cur = conn.cursor()
        cur.execute(f"UPDATE DAILY_KPIS SET ORDERS = ORDERS + 100 WHERE DATE_DAY = '{day}'")
        cur.execute(f"UPDATE DAILY_KPIS SET ORDERS = ORDERS + 100 WHERE DATE_DAY = '{DAYS[2]}'")
        for when in (day, outside):
            cur.execute(
                "INSERT INTO REVENUE_DAILY (ORDER_DATE, COUNTRY, CATEGORY, CURRENCY, ORDERS, UNITS, REVENUE, "
                f"REVENUE_USD) VALUES ('{when}', 'ZZ', NULL, 'USD', 1, 1, 1.00, 1.00)"
            )
    result = publish(gold_lake, snowflake, day.isoformat(), day.isoformat(), marts=["daily_kpis", "revenue_daily"])
    assert metadata(result, "daily_kpis")["rows_updated"] == 1 and metadata(result, "daily_kpis")["rows_in_window"] == 1
    meta = metadata(result, "revenue_daily")
    assert (meta["rows_merged"], meta["rows_deleted"]) == (0, 1)
    assert meta["rows_in_window"] == sum(r["order_date"] == day for r in read_rows(gold_lake, "gold", "revenue_daily"))
    stray = query(snowflake, "SELECT ORDER_DATE FROM REVENUE_DAILY WHERE COUNTRY = 'ZZ'")
    assert [r["order_date"] for r in stray] == [outside]  # outside the window: not touched
    kpis = {r["date_day"]: r["orders"] for r in query(snowflake, "SELECT DATE_DAY, ORDERS FROM DAILY_KPIS")}
    gold_kpis = {r["date_day"]: r["orders"] for r in read_rows(gold_lake, "gold", "daily_kpis")}
    assert kpis[day] == gold_kpis[day] and kpis[DAYS[2]] == gold_kpis[DAYS[2]] + 100
    # the whole window puts everything back
    with snowflake.get_connection() as conn:
        conn.cursor().execute("DELETE FROM REVENUE_DAILY WHERE COUNTRY = 'ZZ'")
    publish(gold_lake, snowflake, marts=["daily_kpis"])
    assert rows(query(snowflake, "SELECT * FROM DAILY_KPIS")) == rows(read_rows(gold_lake, "gold", "daily_kpis"))


def test_publish_assets_sit_downstream_of_each_gold_mart():
    from lakehouse_tests.helpers import DEFS

    graph = DEFS.resolve_asset_graph()
    for name in marts():
        node = graph.get(dg.AssetKey(["publish", "snowflake", name]))
        assert node.parent_keys == {dg.AssetKey(["gold", name])}
        assert node.group_name == "publish" and node.backfill_policy == dg.BackfillPolicy.single_run()


def test_snowflake_is_configured_by_the_standard_settings(monkeypatch):
    settings = {
        "SNOWFLAKE_ACCOUNT": "acme-eu1",
        "SNOWFLAKE_USER": "loader",
        "SNOWFLAKE_PASSWORD": "pw",
        "SNOWFLAKE_DATABASE": "ANALYTICS",
        "SNOWFLAKE_SCHEMA": "GOLD",
        "SNOWFLAKE_WAREHOUSE": "WH",
    }
    for k, v in settings.items():
        monkeypatch.setenv(k, v)
    resource = snowflake_resource()
    config = resource.process_config_and_initialize()
    assert (config.account, config.user, config.database, config.schema_, config.warehouse) == (
        "acme-eu1",
        "loader",
        "ANALYTICS",
        "GOLD",
        "WH",
    )
    # ... and hands them to dagster-snowflake's SnowflakeResource inside the run
    built = config.snowflake_resource()
    assert (built.account, built.user, built.password, built.database, built.schema_, built.warehouse, built.role) == (
        "acme-eu1",
        "loader",
        "pw",
        "ANALYTICS",
        "GOLD",
        "WH",
        None,
    )


def test_snowflake_role_is_used_when_set(monkeypatch):
    for k in (
        "SNOWFLAKE_ACCOUNT",
        "SNOWFLAKE_USER",
        "SNOWFLAKE_PASSWORD",
        "SNOWFLAKE_DATABASE",
        "SNOWFLAKE_SCHEMA",
        "SNOWFLAKE_WAREHOUSE",
    ):
        monkeypatch.setenv(k, "x")
    monkeypatch.setenv("SNOWFLAKE_ROLE", "PUBLISHER")
    assert snowflake_resource().process_config_and_initialize().snowflake_resource().role == "PUBLISHER"
