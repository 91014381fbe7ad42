"""The Silver orders transform on hand-made Bronze rows, runnable on any Spark Connect engine.
`python -m lakehouse_tests.engine_probe <remote>` prints its result as JSON (used to run it on JVM Spark
in a process of its own, apart from the suite's Sail session)."""

import json
import sys
from datetime import date, datetime

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.defs.silver.orders import RULES, conform, with_references
from lakehouse.lib.rules import classify, passed
from lakehouse.lib.spark import spark_session

DAY = date(2026, 11, 1)
COLUMNS = ["order_id", "customer_id", "order_ts", "amount", "currency", "status", "updated_at"]
BRONZE = [
    ("O1", "C1", "2026-11-01T10:00:00Z", "10.00", "EUR", "placed", "2026-11-01T10:00:00Z"),
    ("O1", "C1", "2026-11-01T10:00:00Z", "10.00", "EUR", "paid", "2026-11-01T11:00:00Z"),  # later version wins
    ("O2", "C2", "2026-11-01T12:30:00Z", "5.50", "USD", "placed", "2026-11-01T12:30:00Z"),
    (None, "C1", "2026-11-01T13:00:00Z", "1.00", "USD", "placed", "2026-11-01T13:00:00Z"),
    ("O3", "C1", "yesterday", "1.00", "USD", "placed", "2026-11-01T13:00:00Z"),
    ("O4", "C1", "2026-11-01T14:00:00Z", "1O.00", "USD", "placed", "2026-11-01T14:00:00Z"),
    ("O5", "C2", "2026-11-01T15:00:00Z", "-3.00", "USD", "placed", "2026-11-01T15:00:00Z"),
    ("O6", "C9", "2026-11-01T16:00:00Z", "3.00", "USD", "placed", "2026-11-01T16:00:00Z"),
    ("O7", "C2", "2026-11-01T17:00:00Z", "3.00", "JPY", "placed", "2026-11-01T17:00:00Z"),
]


def silver_orders(spark: SparkSession) -> dict:
    bronze = spark.createDataFrame(BRONZE, COLUMNS).select(
        *COLUMNS,
        F.lit("P1").alias("product_id"),
        F.lit("books").alias("category"),
        F.lit("1").alias("quantity"),
        F.lit(None).cast("string").alias("_rescued_data"),
        F.lit("f.csv").alias("_source_file"),
        F.lit(DAY).alias("_partition_date"),
        F.current_timestamp().alias("_ingested_at"),
    )
    customers = spark.createDataFrame([("C1",), ("C2",)], ["customer_id"])
    rates = spark.sql(
        "SELECT DATE'2026-11-01' AS rate_date, * FROM VALUES ('EUR', 1.08BD), ('USD', 1.0BD) "
        "AS r(currency, rate_to_usd)"
    ).withColumn("rate_to_usd", F.col("rate_to_usd").cast("decimal(18,6)"))
    classified = classify(with_references(bronze, customers, rates), RULES, "silver.orders")
    rejected = {r["order_id"] or "<null>": r["_rule"] for r in classified.where("_rule IS NOT NULL").collect()}
    kept = conform(passed(classified)).select("order_id", "status", "amount_usd", "order_ts").collect()
    return {
        "rejected": rejected,
        "kept": {r["order_id"]: [r["status"], str(r["amount_usd"]), r["order_ts"].isoformat()] for r in kept},
    }


EXPECTED = {
    "rejected": {
        "<null>": "order_id_not_null",
        "O3": "order_ts_is_timestamp",
        "O4": "amount_is_number",
        "O5": "amount_non_negative",
        "O6": "customer_exists",
        "O7": "fx_rate_available",
    },
    "kept": {
        "O1": ["paid", "10.80", datetime(2026, 11, 1, 10).isoformat()],
        "O2": ["placed", "5.50", datetime(2026, 11, 1, 12, 30).isoformat()],
    },
}

if __name__ == "__main__":
    print(json.dumps(silver_orders(spark_session(sys.argv[1]))))
