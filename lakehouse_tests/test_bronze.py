"""Bronze keeps every landed record, untyped, with where it came from and what did not fit."""

from lakehouse_tests.helpers import DAY_KEYS, day_counts, read_rows, rows_by, total

BATCH_SOURCES = ["crm_customers", "orders", "fx_rates"]


def test_bronze_holds_every_landed_record_per_day(batch_run, manifest, lake):
    for source in BATCH_SOURCES:
        assert rows_by(lake, "bronze", source, "_partition_date") == day_counts(manifest, source, "records")


def test_unknown_columns_are_rescued_not_dropped(batch_run, manifest, lake):
    for source in ("crm_customers", "orders"):
        rescued = [r["_rescued_data"] for r in read_rows(lake, "bronze", source) if r["_rescued_data"]]
        assert len(rescued) == total(manifest, source, "unknown_columns")
    coupon = [r["_rescued_data"] for r in read_rows(lake, "bronze", "orders") if r["_rescued_data"]][0]
    assert coupon.startswith('{"coupon_code":"SAVE')


def test_source_columns_stay_strings(batch_run, lake):
    fields = {f.name: f.type.type for f in lake.delta_table("bronze", "orders").schema().fields}
    assert fields["amount"] == fields["order_ts"] == fields["quantity"] == "string"


def test_rows_carry_their_ingestion_columns(batch_run, lake):
    rows = read_rows(lake, "bronze", "fx_rates")
    assert {r["_run_id"] for r in rows} == {batch_run.run_id}
    assert {r["_source_file"].rsplit("/", 1)[1] for r in rows} == {f"{d}.csv" for d in DAY_KEYS}
    assert all(r["_ingested_at"] is not None for r in rows)


def test_bronze_is_partitioned_by_landing_date(batch_run, lake):
    assert lake.delta_table("bronze", "orders").metadata().partition_columns == ["_partition_date"]
