"""Serving Gold: the `serve/*` assets sync Gold into a real Postgres (a throwaway database on
127.0.0.1:5432, skipped with the reason when unreachable), and the read API answers from it.

Expected values come from the Gold Delta tables, read with delta-rs; the API is also fuzzed with
schemathesis against its own OpenAPI document (a bounded number of examples per operation)."""

import re
import shutil
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from lakehouse.defs.serve.postgres import SERVE_ASSETS, SERVE_CHECKS
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.serving import TABLES, ServingDatabase
from lakehouse_tests.helpers import DAY_KEYS, range_tags, read_rows

pytest.register_assert_rewrite("lakehouse_tests.serving_fixtures")
pytest_plugins = ["lakehouse_tests.serving_fixtures"]

from lakehouse_tests.serving_fixtures import ANALYST_KEY, APP_KEY, FINANCE_KEY  # noqa: E402

DAYS = [date.fromisoformat(d) for d in DAY_KEYS]
CONTACT = {"name_initials", "email_masked", "phone_masked"}


def sync(lake: DeltaLake, dsn: str, first: str = DAY_KEYS[0], last: str = DAY_KEYS[-1]) -> dg.ExecuteInProcessResult:
    """One run of the serve assets and their checks over [first, last]."""
    return dg.materialize(
        [*SERVE_ASSETS, *SERVE_CHECKS],
        resources={"lake": lake, "serving": ServingDatabase(dsn=dsn)},
        tags=range_tags(first, last),
    )


def metadata(result: dg.ExecuteInProcessResult, mart: str) -> dict:
    """The materialisation's metadata (a range run records one materialisation per day, all alike)."""
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(["serve", mart])]
    assert events
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.asset_key.path[-1]: e.passed for e in result.get_asset_check_evaluations()}


def served(dsn: str, mart: str) -> list[dict]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(f'SELECT * FROM "{TABLES[mart].table}"').fetchall()


def gold(lake: DeltaLake, mart: str) -> list[dict]:
    columns = list(TABLES[mart].columns)
    return [{c: r[c] for c in columns} for r in read_rows(lake, "gold", mart)]


def canonical(rows: list[dict]) -> list[tuple]:
    return sorted((tuple(sorted(r.items())) for r in rows), key=repr)


@pytest.fixture(scope="module")
def synced(gold_lake, serving_dsn) -> dg.ExecuteInProcessResult:
    result = sync(gold_lake, serving_dsn)
    assert result.success
    return result


# -- Sync --------------------------------------------------------------------------------------------------


def test_sync_copies_the_selected_gold_columns_exactly(synced, gold_lake, serving_dsn):
    for mart in TABLES:
        want, got = gold(gold_lake, mart), served(serving_dsn, mart)
        assert want, mart
        assert canonical(got) == canonical(want), mart
        meta = metadata(synced, mart)
        assert meta["rows_inserted"] == len(want) and meta["rows_deleted"] == 0
        assert meta["dagster/row_count"] == len(want) and meta["duration_s"] >= 0
    assert checks(synced) == {"customer_360": True, "revenue_daily": True, "daily_kpis": True}


def test_serving_tables_are_indexed_for_the_api_filters(synced, serving_dsn):
    with psycopg.connect(serving_dsn) as conn:
        indexes = {
            r[0]: r[1] for r in conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
        }
    assert any("(segment, customer_id)" in d for d in indexes.values())
    assert any("(country, customer_id)" in d for d in indexes.values())
    assert any("revenue_daily" in d and "(country, order_date)" in d for d in indexes.values())
    assert any("UNIQUE" in d and "daily_kpis" in d for d in indexes.values())


def test_resync_changes_nothing(synced, gold_lake, serving_dsn):
    before = {m: canonical(served(serving_dsn, m)) for m in TABLES}
    result = sync(gold_lake, serving_dsn)
    assert result.success
    for mart in TABLES:
        meta = metadata(result, mart)
        assert (meta["rows_upserted"], meta["rows_deleted"]) == (0, 0), mart
        assert meta["rows_unchanged"] == meta["rows_in_window"] > 0
        assert canonical(served(serving_dsn, mart)) == before[mart]
    assert all(checks(result).values())


def test_a_day_resync_repairs_its_window_and_leaves_other_days_alone(synced, gold_lake, serving_dsn):
    day, other = DAYS[1], DAYS[0] - timedelta(days=1)
    serving = ServingDatabase(dsn=serving_dsn)
    with psycopg.connect(serving_dsn) as conn:
        conn.execute(
            "UPDATE revenue_daily SET revenue_usd = revenue_usd + 1 WHERE ctid = "
            "(SELECT ctid FROM revenue_daily WHERE order_date = %s LIMIT 1)",
            (day,),
        )
        conn.execute(
            "DELETE FROM revenue_daily WHERE ctid = "
            "(SELECT ctid FROM revenue_daily WHERE order_date = %s OFFSET 1 LIMIT 1)",
            (day,),
        )
        for when in (day, other):  # a row Gold never had, inside and outside the window
            conn.execute(
                "INSERT INTO revenue_daily (order_date, country, category, currency, orders, units, "
                "revenue_usd) VALUES (%s, 'ZZ', NULL, 'USD', 1, 1, 1.00)",
                (when,),
            )
    broken = serving.compare_window(gold_lake, "revenue_daily", day, day + timedelta(days=1))
    assert not broken["matches"] and broken["serving_rows"] == broken["gold_rows"]  # same count, different keys

    result = sync(gold_lake, serving_dsn, day.isoformat(), day.isoformat())
    assert result.success and all(checks(result).values())
    meta = metadata(result, "revenue_daily")
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_deleted"]) == (1, 1, 1)
    got = served(serving_dsn, "revenue_daily")
    assert [r["order_date"] for r in got if r["country"] == "ZZ"] == [other]  # outside the window: untouched
    assert canonical([r for r in got if r["country"] != "ZZ"]) == canonical(gold(gold_lake, "revenue_daily"))
    with psycopg.connect(serving_dsn) as conn:
        conn.execute("DELETE FROM revenue_daily WHERE country = 'ZZ'")


def test_check_fails_when_the_serving_copy_drifts_from_gold(synced, gold_lake, serving_dsn, tmp_path):
    """Gold gains a customer the serving copy lacks: the check sees it, the next sync fixes it."""
    lake = DeltaLake(root=str(tmp_path / "lake"))
    shutil.copytree(Path(gold_lake.root) / "gold" / "customer_360", tmp_path / "lake" / "gold" / "customer_360")
    from deltalake import write_deltalake

    table = lake.delta_table("gold", "customer_360").to_pyarrow_table()
    extra = table.slice(0, 1)
    extra = extra.set_column(0, extra.schema.field(0), [["ZZ-NEW-CUSTOMER"]])
    write_deltalake(lake.path("gold", "customer_360"), extra, mode="append")
    serving = ServingDatabase(dsn=serving_dsn)
    assert not serving.compare_window(lake, "customer_360", DAYS[0], DAYS[-1])["matches"]
    result = dg.materialize(
        [*SERVE_ASSETS, *SERVE_CHECKS],
        resources={"lake": lake, "serving": serving},
        selection=[dg.AssetKey(["serve", "customer_360"])],
        partition_key=DAY_KEYS[0],
    )
    assert result.success and metadata(result, "customer_360")["rows_inserted"] == 1
    assert serving.compare_window(lake, "customer_360", DAYS[0], DAYS[-1])["matches"]
    with psycopg.connect(serving_dsn) as conn:
        conn.execute("DELETE FROM customer_360 WHERE customer_id = 'ZZ-NEW-CUSTOMER'")
    assert serving.compare_window(gold_lake, "customer_360", DAYS[0], DAYS[-1])["matches"]


# -- The API -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(synced, api_server):
    with httpx.Client(base_url=api_server.url, timeout=10) as c:
        yield c


def test_health_needs_no_key(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}


def test_get_customer_returns_the_gold_row(client, gold_lake):
    rows = {r["customer_id"]: r for r in gold(gold_lake, "customer_360")}
    customer_id = sorted(rows)[len(rows) // 2]
    r = client.get(f"/customers/{customer_id}", headers={"X-API-Key": APP_KEY})
    assert r.status_code == 200
    body, want = r.json(), rows[customer_id]
    assert set(body) == set(want)
    assert body["lifetime_value_usd"] == float(want["lifetime_value_usd"])
    assert body["signup_date"] == want["signup_date"].isoformat()
    assert {k: body[k] for k in CONTACT} == {k: want[k] for k in CONTACT}
    for column in ("last_order_at", "first_order_at"):
        assert (body[column] is None) == (want[column] is None)
        if want[column] is not None:
            assert datetime.fromisoformat(body[column]) == want[column]
    assert (body["segment"], body["orders_count"], body["country"]) == (
        want["segment"],
        want["orders_count"],
        want["country"],
    )


def test_an_analyst_key_gets_no_contact_fields_and_cannot_ask_for_them(client, gold_lake):
    customer_id = gold(gold_lake, "customer_360")[0]["customer_id"]
    r = client.get(f"/customers/{customer_id}", headers={"X-API-Key": ANALYST_KEY})
    assert r.status_code == 200 and not CONTACT & set(r.json())
    r = client.get(f"/customers/{customer_id}", params={"include": "contact"}, headers={"X-API-Key": ANALYST_KEY})
    assert r.status_code == 403 and "pii" in r.json()["detail"]
    page = client.get("/customers", params={"limit": 5}, headers={"X-API-Key": ANALYST_KEY}).json()
    assert page["items"] and not any(CONTACT & set(item) for item in page["items"])
    page = client.get("/customers", params={"limit": 5}, headers={"X-API-Key": APP_KEY}).json()
    assert all(CONTACT <= set(item) for item in page["items"])


def test_missing_unknown_and_unauthorised_keys(client):
    r = client.get("/customers/C1")
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"] and r.headers["www-authenticate"] == "ApiKey"
    r = client.get("/customers/C1", headers={"X-API-Key": "not-a-key"})
    assert r.status_code == 401 and r.json()["detail"] == "unknown API key"
    r = client.get("/customers/C1", headers={"X-API-Key": FINANCE_KEY})
    assert (
        r.status_code == 403 and r.json()["detail"] == "API key 'finance' lacks the scope 'customers:read' needed here"
    )
    r = client.get("/kpis/daily", params={"from": DAY_KEYS[0], "to": DAY_KEYS[-1]}, headers={"X-API-Key": FINANCE_KEY})
    assert r.status_code == 200


def test_unknown_customer_is_404(client):
    r = client.get("/customers/NOPE-404", headers={"X-API-Key": APP_KEY})
    assert r.status_code == 404 and "NOPE-404" in r.json()["detail"]


def pages(client, limit: int, **filters) -> list[list[str]]:
    ids, cursor = [], None
    while True:
        params = {"limit": limit, **filters, **({"cursor": cursor} if cursor else {})}
        r = client.get("/customers", params=params, headers={"X-API-Key": APP_KEY})
        assert r.status_code == 200, r.text
        body = r.json()
        ids.append([item["customer_id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return ids
        assert len(body["items"]) == limit


@pytest.mark.parametrize(
    "filters",
    [{}, {"segment": "no_orders"}, {"country": "most_common"}, {"segment": "most_common", "country": "most_common"}],
)
def test_pagination_covers_every_customer_once_in_order(client, gold_lake, filters):
    rows = gold(gold_lake, "customer_360")
    common = {c: max({r[c] for r in rows}, key=lambda v: sum(r[c] == v for r in rows)) for c in ("segment", "country")}
    filters = {k: common[k] if v == "most_common" else v for k, v in filters.items()}
    want = sorted(r["customer_id"] for r in rows if all(r[k] == v for k, v in filters.items()))
    assert want
    got = pages(client, 37, **filters)
    flat = [i for page in got for i in page]
    assert flat == sorted(flat) and len(flat) == len(set(flat))  # in order, no duplicates
    assert set(flat) == set(want)  # no gaps
    assert len(got) == -(-len(want) // 37) or (len(want) % 37 == 0 and len(got) == len(want) // 37 + 1)


def test_a_page_is_stable_while_rows_are_added_before_the_cursor(client, serving_dsn):
    """Keyset pagination: a row inserted behind the cursor neither shifts nor repeats later pages."""
    first = client.get("/customers", params={"limit": 10}, headers={"X-API-Key": APP_KEY}).json()
    with psycopg.connect(serving_dsn) as conn:
        conn.execute(
            "INSERT INTO customer_360 (customer_id, country, segment) VALUES ('0000-early', 'ZZ', 'no_orders')"
        )
    try:
        second = client.get(
            "/customers", params={"limit": 10, "cursor": first["next_cursor"]}, headers={"X-API-Key": APP_KEY}
        ).json()
    finally:
        with psycopg.connect(serving_dsn) as conn:
            conn.execute("DELETE FROM customer_360 WHERE customer_id = '0000-early'")
    assert second["items"][0]["customer_id"] > first["items"][-1]["customer_id"]


@pytest.mark.parametrize(
    "path,params,status,needle",
    [
        ("/customers", {"cursor": "%%%"}, 422, "cursor"),
        ("/customers", {"cursor": "x" * 65}, 422, "cursor"),
        ("/customers", {"limit": 0}, 422, "limit"),
        ("/customers", {"limit": 501}, 422, "limit"),
        ("/customers", {"limit": "ten"}, 422, "limit"),
        ("/customers", {"segment": "whales"}, 422, "segment"),
        ("/customers", {"country": "fr"}, 422, "country"),
        ("/customers/bad id!", {}, 422, "customer_id"),
        ("/customers/" + "x" * 65, {}, 422, "customer_id"),
        ("/revenue/daily", {"from": "2026-11-03", "to": "2026-11-01"}, 400, "before"),
        ("/revenue/daily", {"from": "2025-01-01", "to": "2026-11-01"}, 400, "too long"),
        ("/revenue/daily", {"to": "2026-11-01"}, 422, "from"),
        ("/revenue/daily", {"from": "2026-11-31", "to": "2026-12-01"}, 422, "from"),
        ("/kpis/daily", {"from": "yesterday", "to": "2026-11-01"}, 422, "from"),
        ("/customers", {"segmnt": "loyal"}, 400, "unknown query parameter(s) 'segmnt'; accepted: country, cursor"),
        ("/health", {"verbose": "1"}, 400, "unknown query parameter(s) 'verbose'"),
    ],
)
def test_bad_parameters_get_a_clear_4xx(client, path, params, status, needle):
    r = client.get(path, params=params, headers={"X-API-Key": APP_KEY})
    assert r.status_code == status, r.text
    assert needle in r.text


def test_revenue_daily_sums_gold_per_day_and_country(client, gold_lake):
    want = defaultdict(lambda: [0, 0, Decimal(0)])
    for r in gold(gold_lake, "revenue_daily"):
        w = want[(r["order_date"].isoformat(), r["country"])]
        w[0] += r["orders"]
        w[1] += r["units"]
        w[2] += r["revenue_usd"]
    r = client.get("/revenue/daily", params={"from": DAY_KEYS[0], "to": DAY_KEYS[-1]}, headers={"X-API-Key": APP_KEY})
    assert r.status_code == 200
    got = {
        (i["order_date"], i["country"]): [i["orders"], i["units"], Decimal(str(i["revenue_usd"]))]
        for i in r.json()["items"]
    }
    assert got == dict(want)
    country = sorted({k[1] for k in want})[0]
    one = client.get(
        "/revenue/daily",
        params={"from": DAY_KEYS[1], "to": DAY_KEYS[1], "country": country},
        headers={"X-API-Key": ANALYST_KEY},
    ).json()["items"]
    assert [(i["order_date"], i["country"]) for i in one] == [k for k in sorted(want) if k == (DAY_KEYS[1], country)]


def test_kpis_daily_are_the_gold_rows(client, gold_lake):
    want = {r["date_day"].isoformat(): r for r in gold(gold_lake, "daily_kpis")}
    r = client.get("/kpis/daily", params={"from": DAY_KEYS[0], "to": DAY_KEYS[-1]}, headers={"X-API-Key": APP_KEY})
    items = r.json()["items"]
    assert [i["date_day"] for i in items] == sorted(want)
    for item in items:
        w = want[item["date_day"]]
        assert (item["orders"], item["buyers"], item["active_users"]) == (w["orders"], w["buyers"], w["active_users"])
        assert Decimal(str(item["revenue_usd"])) == w["revenue_usd"]
    empty = client.get("/kpis/daily", params={"from": "2020-01-01", "to": "2020-01-31"}, headers={"X-API-Key": APP_KEY})
    assert empty.status_code == 200 and empty.json() == {"items": []}


def test_openapi_document_lists_every_route_and_the_key_scheme(client):
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {
        "/health",
        "/customers/{customer_id}",
        "/customers",
        "/revenue/daily",
        "/kpis/daily",
        "/tables",
        "/tables/{layer}/{name}",
        "/tables/{layer}/{name}/preview",
    }
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert client.get("/docs").status_code == 200


# -- The catalog: the lake's tables, read with delta-rs --------------------------------------------------------

SILVER_CONTACT = ["email", "phone", "first_name", "last_name"]


def test_the_catalog_lists_every_table_with_its_rows_and_version(client, gold_lake):
    r = client.get("/tables", headers={"X-API-Key": ANALYST_KEY})
    assert r.status_code == 200
    listed = {(t["layer"], t["name"]): t for t in r.json()["items"]}
    expected = {(t["layer"], t["name"]) for t in gold_lake.tables()}
    assert set(listed) == expected and ("silver", "orders_quarantine") in listed and ("gold", "customer_360") in listed
    for layer, name in [("silver", "orders"), ("gold", "revenue_daily")]:
        dt = gold_lake.delta_table(layer, name)
        assert (listed[layer, name]["rows"], listed[layer, name]["version"]) == (
            len(read_rows(gold_lake, layer, name)),
            dt.version(),
        )


def test_a_table_shows_its_contract_owners_history_and_freshness(client, gold_lake):
    from lakehouse.lib.contracts.silver import Customers

    r = client.get("/tables/silver/customers", headers={"X-API-Key": ANALYST_KEY})
    assert r.status_code == 200
    table = r.json()
    assert [c["name"] for c in table["columns"]] == list(Customers.to_schema().columns)
    assert sorted(c["name"] for c in table["columns"] if c["pii"]) == sorted(SILVER_CONTACT)
    assert (table["domain"], table["pii"], table["owners"]) == ("customer", True, ["team:data-platform"])
    versions = [c["version"] for c in table["history"]]
    assert versions[0] == gold_lake.delta_table("silver", "customers").version() and versions == sorted(versions)[::-1]
    assert table["freshness"]["sla_seconds"] == 7200 and table["freshness"]["fresh"] is True


def test_a_preview_withholds_personal_data_without_the_pii_scope(client, gold_lake):
    params = {"limit": 3}
    without = client.get("/tables/silver/customers/preview", params=params, headers={"X-API-Key": ANALYST_KEY}).json()
    assert sorted(without["withheld"]) == sorted(SILVER_CONTACT) and not set(SILVER_CONTACT) & set(without["columns"])
    assert len(without["rows"]) == 3 and all(set(row) == set(without["columns"]) for row in without["rows"])
    full = client.get("/tables/silver/customers/preview", params=params, headers={"X-API-Key": APP_KEY}).json()
    assert full["withheld"] == [] and set(SILVER_CONTACT) <= set(full["columns"])
    mart = client.get("/tables/gold/customer_360/preview", headers={"X-API-Key": ANALYST_KEY}).json()
    assert sorted(mart["withheld"]) == ["email_masked", "name_initials", "phone_masked"]


def test_the_catalog_has_the_apis_auth_rules_and_bounds(client):
    assert client.get("/tables").status_code == 401
    assert client.get("/tables", headers={"X-API-Key": FINANCE_KEY}).status_code == 403  # no catalog:read
    assert client.get("/tables/silver/nothing", headers={"X-API-Key": APP_KEY}).status_code == 404
    too_many = client.get("/tables/silver/orders/preview", params={"limit": 101}, headers={"X-API-Key": APP_KEY})
    assert too_many.status_code == 422


def test_the_catalog_works_without_the_serving_database(gold_lake):
    from fastapi.testclient import TestClient

    from lakehouse.api import create_app, parse_keys
    from lakehouse_tests.serving_fixtures import KEYS_CONFIG

    app = create_app(dsn="postgresql://127.0.0.1:1/nowhere", keys=parse_keys(KEYS_CONFIG))
    with TestClient(app) as offline:
        assert offline.get("/tables", headers={"X-API-Key": APP_KEY}).status_code == 200
        assert offline.get("/health").status_code == 503
        assert (
            offline.get(
                "/kpis/daily", params={"from": "2026-11-01", "to": "2026-11-02"}, headers={"X-API-Key": APP_KEY}
            ).status_code
            == 503
        )


# -- Fuzzing ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_schema(synced, api_server):
    return schemathesis.openapi.from_url(f"{api_server.url}/openapi.json")


fuzzed = schemathesis.pytest.from_fixture("api_schema")


def out_of_range(query: dict | None) -> bool:
    """A from/to pair the API must reject with 400 although each value is schema-valid: OpenAPI cannot
    express `to >= from` or the 366-day cap, so these cases are checked for that 400 instead."""
    try:
        start, end = (
            date.fromisoformat(query[k])
            for k in ("from", "to")
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", str((query or {}).get(k)))
        )
    except (ValueError, TypeError):
        return False
    return end < start or (end - start).days >= 366


@fuzzed.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_fuzzed_against_its_openapi_spec(case):
    """No 5xx, documented status codes, responses that match the spec, schema-valid requests accepted
    and invalid ones rejected, for generated parameters."""
    if out_of_range(case.query):
        response = case.call(headers={"X-API-Key": APP_KEY})
        # 401 if the case dropped or replaced the key, 422 if it also broke another parameter
        assert response.status_code in (400, 401, 422), response.text
        if response.status_code == 400:
            assert "`to`" in response.text or "too long" in response.text or "unknown query" in response.text
        return
    case.call_and_validate(headers={"X-API-Key": APP_KEY})
