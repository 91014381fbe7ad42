"""Silver: typed, deduplicated and conformed rows; every rejected row quarantined with its rule.
Expected figures come from the generator's manifest, never from the pipeline itself."""

import itertools
from collections import Counter
from decimal import Decimal

from lakehouse_tests.helpers import (
    DAY_KEYS,
    day_counts,
    read_rows,
    rows_by,
    silver_orders_by_day,
    total,
)

# Which injected anomaly each quarantine rule must catch.
ORDER_RULES = {
    "order_id_not_null": "null_keys",
    "order_ts_is_timestamp": "bad_timestamps",
    "amount_is_number": "bad_amounts",
    "amount_non_negative": "negative_amounts",
    "customer_exists": "unknown_customers",
}
CUSTOMER_RULES = {"customer_id_not_null": "null_keys", "updated_at_is_timestamp": "bad_timestamps"}
FX_RULES = {"currency_is_iso_code": "bad_currencies", "rate_is_positive_number": "bad_rates"}


def quarantined_by_rule(lake, table: str) -> dict[str, int]:
    return dict(Counter(r["_rule"] for r in read_rows(lake, "silver", f"{table}_quarantine")))


def test_orders_are_landed_minus_duplicates_minus_quarantined_per_day(batch_run, manifest, lake):
    assert rows_by(lake, "silver", "orders", "order_date") == silver_orders_by_day(manifest)


def test_each_order_rule_quarantines_exactly_the_injected_rows(batch_run, manifest, lake):
    assert quarantined_by_rule(lake, "orders") == {r: total(manifest, "orders", a) for r, a in ORDER_RULES.items()}


def test_quarantine_names_table_column_and_rule_and_keeps_the_record(batch_run, lake):
    row = next(r for r in read_rows(lake, "silver", "orders_quarantine") if r["_rule"] == "amount_non_negative")
    assert row["_column"] == "amount"
    assert row["_reason"] == "silver.orders.amount breaks amount_non_negative: must be >= 0"
    assert '"amount":"-' in row["_record"] and row["_source_file"].endswith(".csv")


def test_duplicate_orders_keep_the_latest_update(batch_run, manifest, lake):
    paid = [r for r in read_rows(lake, "silver", "orders") if r["status"] == "paid"]
    assert len(paid) == total(manifest, "orders", "duplicates")
    assert all((r["updated_at"] - r["order_ts"]).total_seconds() == 3600 for r in paid)


def test_order_ids_are_unique(batch_run, lake):
    ids = [r["order_id"] for r in read_rows(lake, "silver", "orders")]
    assert len(ids) == len(set(ids))


def test_amount_usd_uses_the_days_fx_rate(batch_run, lake):
    rates = {(r["rate_date"], r["currency"]): r["rate_to_usd"] for r in read_rows(lake, "silver", "fx_rates")}
    orders = read_rows(lake, "silver", "orders")
    for order in orders:
        expected = (order["amount"] * rates[(order["order_date"], order["currency"])]).quantize(Decimal("0.01"))
        assert order["amount_usd"] == expected, order["order_id"]
    assert {o["amount_usd"] for o in orders if o["currency"] == "USD"} <= {o["amount"] for o in orders}


def test_fx_rates_hold_one_row_per_day_and_currency(batch_run, lake):
    rows = read_rows(lake, "silver", "fx_rates")
    assert len(rows) == len(DAY_KEYS) * 8
    assert len({(r["rate_date"], r["currency"]) for r in rows}) == len(rows)


def test_each_fx_rule_quarantines_exactly_the_injected_rows(batch_run, manifest, lake):
    assert quarantined_by_rule(lake, "fx_rates") == {r: total(manifest, "fx_rates", a) for r, a in FX_RULES.items()}


def test_customers_hold_one_version_per_valid_distinct_record(batch_run, manifest, lake):
    expected = total(manifest, "crm_customers", "records") - total(
        manifest, "crm_customers", "duplicates", *CUSTOMER_RULES.values()
    )
    assert len(read_rows(lake, "silver", "customers")) == expected


def test_each_customer_rule_quarantines_exactly_the_injected_rows(batch_run, manifest, lake):
    expected = {r: total(manifest, "crm_customers", a) for r, a in CUSTOMER_RULES.items()}
    assert quarantined_by_rule(lake, "customers") == expected


def test_scd2_exactly_one_current_version_per_customer_and_it_is_the_latest(batch_run, lake):
    by_customer: dict[str, list[dict]] = {}
    for row in read_rows(lake, "silver", "customers"):
        by_customer.setdefault(row["customer_id"], []).append(row)
    for customer_id, versions in by_customer.items():
        current = [v for v in versions if v["is_current"]]
        assert len(current) == 1, customer_id
        assert current[0]["valid_to"] is None
        assert current[0]["valid_from"] == max(v["valid_from"] for v in versions)


def test_scd2_versions_chain_without_gaps_or_overlaps(batch_run, lake):
    by_customer: dict[str, list[dict]] = {}
    for row in read_rows(lake, "silver", "customers"):
        by_customer.setdefault(row["customer_id"], []).append(row)
    for versions in by_customer.values():
        versions.sort(key=lambda v: v["valid_from"])
        for earlier, later in itertools.pairwise(versions):
            assert earlier["valid_to"] == later["valid_from"] and not earlier["is_current"]


def test_late_updates_join_history_by_their_own_timestamp(batch_run, manifest, lake):
    late = [
        r
        for r in read_rows(lake, "silver", "customers")
        if r["valid_from"].date().isoformat() < r["_source_file"].rsplit("/", 1)[1][:10]
    ]
    assert len(late) == total(manifest, "crm_customers", "late_updates") > 0


def test_materialisation_metadata_reports_counts_for_the_ui(batch_run, manifest):
    [orders] = [m for m in batch_run.get_asset_materialization_events() if m.asset_key.path == ["silver", "orders"]][:1]
    metadata = {k: v.value for k, v in orders.materialization.metadata.items()}
    assert metadata["rows_quarantined"] == sum(total(manifest, "orders", a) for a in ORDER_RULES.values())
    assert metadata["rows_superseded"] == total(manifest, "orders", "duplicates", "late_updates", "resent")
    assert metadata["quarantined/customer_exists"] == total(manifest, "orders", "unknown_customers")
    landed = sum(day_counts(manifest, "orders", "records").values())
    assert metadata["rows_read"] == landed
    assert (
        metadata["dagster/row_count"]
        == metadata["rows_written"]
        == landed - metadata["rows_quarantined"] - metadata["rows_superseded"]
    )


def test_every_silver_orders_run_accounts_for_each_landed_row(batch_run):
    [check] = [
        c
        for c in batch_run.get_asset_check_evaluations()
        if c.asset_key.path == ["silver", "orders"] and c.check_name == "rows_accounted_for"
    ]
    assert check.passed
