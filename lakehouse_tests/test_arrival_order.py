"""Silver is independent of arrival order and run order: an order updated in a later day's file stays one
order (the latest update wins, in the partition of its own date), and running the days one by one in any
order, re-running any of them, or running one range gives the same tables.

The landing files are the generator's, plus hand-written updates of day-1 orders in later files: one that
arrives two days late, and one whose stale version arrives after the newer one. Expected values come from
the generator's manifest and from those hand-written lines."""

import csv
import io
from contextlib import contextmanager
from datetime import date, timedelta

import dagster as dg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.dev.generator import generate, landing_file
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.spark import SparkEngine
from lakehouse_tests.helpers import (
    BATCH_ASSETS,
    range_tags,
    read_rows,
    silver_orders_by_day,
)
from lakehouse_tests.test_idempotence import snapshot

START = date(2026, 10, 1)
DAYS = [START + timedelta(days=i) for i in range(3)]
KEYS = [d.isoformat() for d in DAYS]


def read_csv(path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def append_rows(path, header: list[str], rows: list[dict]) -> None:
    out = io.StringIO()
    csv.DictWriter(out, header, lineterminator="\n").writerows(rows)
    with open(path, "a") as f:
        f.write(out.getvalue())


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> dict:
    """Three generated days; day 1's first placed order is delivered (in day 3's file) and its second is
    paid on day 2, with a stale 'placed' version of it re-sent in day 3's file."""
    home = tmp_path_factory.mktemp("arrival")
    manifest = generate(home / "landing", START, len(DAYS), 0.1, 11)
    header, day1 = read_csv(landing_file(home / "landing", "orders", DAYS[0]))
    first, second = [
        r for r in day1 if r["status"] == "placed" and r["order_id"].startswith("O") and "X" not in r["order_id"]
    ][:2]
    delivered = {**first, "status": "delivered", "updated_at": f"{KEYS[2]}T09:00:00Z"}
    paid = {**second, "status": "paid", "updated_at": f"{KEYS[1]}T08:00:00Z"}
    stale = {**second, "status": "placed", "updated_at": second["updated_at"]}
    append_rows(landing_file(home / "landing", "orders", DAYS[1]), header, [paid])
    append_rows(landing_file(home / "landing", "orders", DAYS[2]), header, [delivered, stale])
    return {
        "home": home,
        "manifest": manifest,
        "expected_per_day": silver_orders_by_day(manifest),
        "updated": {first["order_id"]: ("delivered", KEYS[0]), second["order_id"]: ("paid", KEYS[0])},
    }


@contextmanager
def landing_home(home):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAKEHOUSE_HOME", str(home))
        yield


def run_days(landing: dict, sail_url: str, lake: DeltaLake, runs: list[tuple[int, int]]) -> list:
    """Each run is (first day, last day) of the batch assets, in the order given."""
    resources, results = {"spark": SparkEngine(remote=sail_url), "lake": lake}, []
    with landing_home(landing["home"]):
        for first, last in runs:
            results.append(dg.materialize(BATCH_ASSETS, resources=resources, tags=range_tags(KEYS[first], KEYS[last])))
            assert results[-1].success
    return results


@pytest.fixture(scope="module")
def range_run(landing, sail_url, tmp_path_factory) -> DeltaLake:
    lake = DeltaLake(root=str(tmp_path_factory.mktemp("range") / "lake"))
    run_days(landing, sail_url, lake, [(0, 2)])
    return lake


def silver(lake: DeltaLake) -> dict[str, list]:
    return {name: rows for name, rows in snapshot(lake).items() if name.startswith("silver.")}


def test_an_order_updated_on_a_later_day_stays_one_order_in_its_own_date(landing, range_run):
    orders = read_rows(range_run, "silver", "orders")
    by_id = {o["order_id"]: o for o in orders}
    assert len(by_id) == len(orders)
    for order_id, (status, order_date) in landing["updated"].items():
        assert (by_id[order_id]["status"], by_id[order_id]["order_date"].isoformat()) == (status, order_date)
    per_day = {d: sum(o["order_date"].isoformat() == d for o in orders) for d in KEYS}
    assert per_day == landing["expected_per_day"]  # the later days' updates added no order


def test_day_by_day_in_reverse_gives_the_range_runs_tables(landing, range_run, sail_url, tmp_path):
    lake = DeltaLake(root=str(tmp_path / "lake"))
    run_days(landing, sail_url, lake, [(2, 2), (1, 1), (0, 0)])
    assert silver(lake) == silver(range_run)


def test_a_later_days_update_marks_its_orders_own_day_changed(landing, sail_url, tmp_path):
    """Day 3's file delivers a day-1 order: its run records a materialisation of day 1 of silver/orders
    too, so Gold's day 1 shows as stale in the UI."""
    lake = DeltaLake(root=str(tmp_path / "lake"))
    *_, day3, again = run_days(landing, sail_url, lake, [(0, 0), (1, 1), (2, 2), (2, 2)])
    _, rows = read_csv(landing_file(landing["home"] / "landing", "orders", DAYS[2]))
    moved_on = {r["order_ts"][:10] for r in rows if r["status"] in ("shipped", "delivered", "cancelled")}
    assert KEYS[0] in moved_on and KEYS[2] not in moved_on
    assert silver_orders_partitions(day3) == moved_on | {KEYS[2]}
    assert silver_orders_partitions(again) == {KEYS[2]}  # a re-run changes no other day


def silver_orders_partitions(result) -> set[str]:
    return {
        e.partition
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["silver", "orders"])
    }


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    runs=st.lists(st.sampled_from([(0, 0), (1, 1), (2, 2), (0, 1), (1, 2)]), min_size=3, max_size=5).filter(
        lambda runs: {d for first, last in runs for d in range(first, last + 1)} == {0, 1, 2}
    )
)
def test_any_run_order_with_reruns_gives_the_range_runs_tables(landing, range_run, sail_url, tmp_path_factory, runs):
    lake = DeltaLake(root=str(tmp_path_factory.mktemp("order") / "lake"))
    run_days(landing, sail_url, lake, runs)
    assert silver(lake) == silver(range_run), runs
