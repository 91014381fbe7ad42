"""What the tests share besides fixtures: the generated window, the definitions they run, one run of the batch
assets over a range, and readers of the generator's manifest (the oracle) and of the lake."""

from datetime import date, timedelta

import dagster as dg

from lakehouse.definitions import defs
from lakehouse.defs.bronze import batch as bronze_batch
from lakehouse.defs.bronze import streaming as bronze_streaming
from lakehouse.defs.quality import QUALITY_CHECKS
from lakehouse.defs.silver import customers, fx_rates, orders, sessions, support_tickets
from lakehouse.lib.lake import DeltaLake

DEFS = defs()

START = date(2026, 11, 1)
DAYS = 3
SCALE = 0.2
SEED = 7
DAY_KEYS = [(START + timedelta(days=i)).isoformat() for i in range(DAYS)]


# The batch sources' Bronze and Silver assets (Gold is dbt's: tests that want it add it), as declared (no resources).
BATCH_ASSETS = [*bronze_batch.BATCH_BRONZE, customers.customers, fx_rates.fx_rates, orders.orders]
BRONZE = {a.key.path[-1]: a for a in bronze_batch.BATCH_BRONZE}
STREAMING_ASSETS = [
    bronze_streaming.clickstream_events,
    bronze_streaming.support_ticket_changes,
    sessions.sessions,
    support_tickets.support_tickets,
]
__all__ = ["QUALITY_CHECKS"]


def range_tags(first: str, last: str) -> dict:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def materialize(resources: dict, first: str, last: str, selection=None, **kwargs) -> dg.ExecuteInProcessResult:
    """One run of the batch assets and their checks over [first, last], as a backfill of the range would."""
    return dg.materialize(
        [*BATCH_ASSETS, *QUALITY_CHECKS],
        resources=resources,
        selection=selection,
        tags=range_tags(first, last),
        **kwargs,
    )


def day_counts(manifest: dict, source: str, key: str) -> dict[str, int]:
    """A manifest figure per day: `records` or an anomaly name."""
    days = manifest["sources"][source]
    return {d: (v[key] if key in v else v["anomalies"][key]) for d, v in days.items()}


# Landed order rows that are not a Silver order of their own: older versions (re-sent, moved on in a
# later day's file) and the rows each rule quarantines.
ORDER_ROWS_NOT_IN_SILVER = [
    "duplicates",
    "late_updates",
    "resent",
    "null_keys",
    "bad_timestamps",
    "bad_amounts",
    "negative_amounts",
    "unknown_customers",
]


def silver_orders_by_day(manifest: dict) -> dict[str, int]:
    """Silver orders per order date: each day's landed rows less those that are not an order of that day."""
    return {
        day: f["records"] - sum(f["anomalies"][k] for k in ORDER_ROWS_NOT_IN_SILVER)
        for day, f in manifest["sources"]["orders"].items()
    }


def total(manifest: dict, source: str, *keys: str) -> int:
    return sum(sum(day_counts(manifest, source, k).values()) for k in keys)


def rows_by(lake: DeltaLake, layer: str, table: str, column: str) -> dict[str, int]:
    """Row counts per value of `column`, read with delta-rs."""
    t = (
        lake.delta_table(layer, table)
        .to_pyarrow_table(columns=[column])
        .group_by(column)
        .aggregate([([], "count_all")])
    )
    return {str(k): v for k, v in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True)}


def read_rows(lake: DeltaLake, layer: str, table: str) -> list[dict]:
    return lake.delta_table(layer, table).to_pyarrow_table().to_pylist()
