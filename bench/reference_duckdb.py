"""A speed yardstick: the batch Silver and three Gold marts written directly in DuckDB SQL over the same
landing files the lakehouse reads. It is not part of the platform and writes no Delta: it reads the
landing CSV / JSON lines, applies the same rules as Silver, and writes Parquet.

    python bench/reference_duckdb.py --landing /tmp/x/landing --start 2026-08-01 --days 7 [--out DIR]

What it does, step for step like the Dagster pipeline (lakehouse/silver/*.py, dbt_project/):

- "bronze": every landing line as strings, unknown columns kept as JSON (`_rescued_data`), file name kept;
- silver fx_rates: rules rate_date_is_date, currency_is_iso_code, rate_is_positive_number (first broken
  rule wins, quarantined with it), one rate per (rate_date, currency);
- silver customers: rules customer_id_not_null, updated_at_is_timestamp; versions deduplicated on
  (customer_id, updated_at); SCD2 valid_from / valid_to / is_current over the full history;
- silver orders: rules order_id_not_null, order_ts_is_timestamp, amount_is_number, amount_non_negative,
  customer_exists, fx_rate_available; latest `updated_at` wins per order_id across days; order_date and the FX
  rate from order_ts;
- gold revenue_daily (country as of the order from the SCD2 history), product_performance_daily,
  rfm_segments.

Timings per step and row counts go to stdout as JSON (and to the caller, via run()).
"""

import argparse
import json
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

from lakehouse.dev.generator import ORDER_COLUMNS

CRM_COLUMNS = ["customer_id", "email", "phone", "first_name", "last_name", "country", "signup_date", "updated_at"]
FX_COLUMNS = ["date", "currency", "rate_to_usd"]


def files(landing: Path, source: str, ext: str, start: date, days: int) -> list[str]:
    return [str(landing / source / f"{(start + timedelta(days=i)).isoformat()}.{ext}") for i in range(days)]


def sql_list(paths: list[str]) -> str:
    return "[" + ", ".join(f"'{p}'" for p in paths) + "]"


def json_source(paths: list[str], columns: list[str]) -> str:
    """JSON lines as Bronze rows: known columns as strings, the rest of the object in _rescued_data."""
    extract = ", ".join(f"json ->> '{c}' AS {c}" for c in columns)
    known = ", ".join(f"'{c}'" for c in columns)
    return f"""
        SELECT {extract},
               CASE WHEN len(list_filter(json_keys(json), lambda k: NOT list_contains([{known}], k))) > 0
                    THEN json ELSE NULL END AS _rescued_data,
               filename AS _source_file,
               CAST(regexp_extract(filename, '(\\d{{4}}-\\d{{2}}-\\d{{2}})', 1) AS DATE) AS _partition_date
        FROM read_json_objects({sql_list(paths)}, format = 'newline_delimited', filename = true)"""


def csv_source(paths: list[str], columns: list[str]) -> str:
    cols = ", ".join(columns)
    return f"""
        SELECT {cols}, filename AS _source_file,
               CAST(regexp_extract(filename, '(\\d{{4}}-\\d{{2}}-\\d{{2}})', 1) AS DATE) AS _partition_date
        FROM read_csv({sql_list(paths)}, header = true, all_varchar = true, union_by_name = true,
                      filename = true)"""


def first_failing(rules: list[tuple[str, str]]) -> str:
    whens = " ".join(f"WHEN coalesce({cond}, false) THEN '{name}'" for name, cond in rules)
    return f"CASE {whens} END"


FX_RULES = [
    ("rate_date_is_date", "try_cast(date AS DATE) IS NULL"),
    ("currency_is_iso_code", "NOT coalesce(regexp_full_match(currency, '[A-Z]{3}'), false)"),
    ("rate_is_positive_number", "NOT coalesce(try_cast(rate_to_usd AS DECIMAL(18,6)) > 0, false)"),
]
CRM_RULES = [
    ("customer_id_not_null", "customer_id IS NULL OR trim(customer_id) = ''"),
    ("updated_at_is_timestamp", "try_cast(updated_at AS TIMESTAMP) IS NULL"),
]
AMOUNT = "try_cast(amount AS DECIMAL(18,2))"
ORDER_RULES = [
    ("order_id_not_null", "order_id IS NULL OR trim(order_id) = ''"),
    ("order_ts_is_timestamp", "try_cast(order_ts AS TIMESTAMP) IS NULL"),
    ("amount_is_number", f"{AMOUNT} IS NULL"),
    ("amount_non_negative", f"{AMOUNT} < 0"),
    ("customer_exists", "_known_customer IS NULL"),
    ("fx_rate_available", "fx_rate_to_usd IS NULL"),
]


def steps(landing: Path, start: date, days: int, out: Path) -> list[tuple[str, str]]:
    """(name, SQL) in order; each statement materialises one table (in DuckDB or as Parquet)."""
    fx, crm, orders = (
        files(landing, "fx_rates", "csv", start, days),
        files(landing, "crm_customers", "jsonl", start, days),
        files(landing, "orders", "csv", start, days),
    )
    return [
        ("bronze_fx_rates", f"CREATE TABLE bronze_fx AS {csv_source(fx, FX_COLUMNS)}"),
        ("bronze_crm_customers", f"CREATE TABLE bronze_crm AS {json_source(crm, CRM_COLUMNS)}"),
        ("bronze_orders", f"CREATE TABLE bronze_orders AS {csv_source(orders, ORDER_COLUMNS + ['coupon_code'])}"),
        (
            "silver_fx_rates",
            f"""
            CREATE TABLE fx_classified AS SELECT *, {first_failing(FX_RULES)} AS _rule FROM bronze_fx;
            CREATE TABLE silver_fx AS
            SELECT CAST(date AS DATE) AS rate_date, currency, CAST(rate_to_usd AS DECIMAL(18,6)) AS rate_to_usd
            FROM fx_classified WHERE _rule IS NULL
            QUALIFY row_number() OVER (PARTITION BY rate_date, currency ORDER BY _source_file DESC) = 1""",
        ),
        (
            "silver_customers",
            f"""
            CREATE TABLE crm_classified AS SELECT *, {first_failing(CRM_RULES)} AS _rule FROM bronze_crm;
            CREATE TABLE silver_customers AS
            WITH versions AS (
                SELECT customer_id, CAST(updated_at AS TIMESTAMP) AS updated_at, email, phone, first_name,
                       last_name, country, try_cast(signup_date AS DATE) AS signup_date, _rescued_data, _source_file
                FROM crm_classified WHERE _rule IS NULL
                QUALIFY row_number() OVER (PARTITION BY customer_id, CAST(updated_at AS TIMESTAMP)
                                           ORDER BY _source_file DESC) = 1)
            SELECT *, updated_at AS valid_from,
                   lead(updated_at) OVER (PARTITION BY customer_id ORDER BY updated_at) AS valid_to,
                   lead(updated_at) OVER (PARTITION BY customer_id ORDER BY updated_at) IS NULL AS is_current
            FROM versions""",
        ),
        (
            "silver_orders",
            f"""
            CREATE TABLE orders_classified AS
            WITH referenced AS (
                SELECT o.*, k._known_customer, r.rate_to_usd AS fx_rate_to_usd
                FROM bronze_orders o
                LEFT JOIN (SELECT DISTINCT customer_id, true AS _known_customer FROM silver_customers) k
                       ON o.customer_id = k.customer_id
                LEFT JOIN silver_fx r ON r.rate_date = CAST(try_cast(o.order_ts AS TIMESTAMP) AS DATE)
                                     AND r.currency = o.currency)
            SELECT *, {first_failing(ORDER_RULES)} AS _rule FROM referenced;
            CREATE TABLE silver_orders AS
            SELECT order_id, customer_id, CAST(order_ts AS TIMESTAMP) AS order_ts,
                   CAST(CAST(order_ts AS TIMESTAMP) AS DATE) AS order_date,
                   product_id, category, try_cast(quantity AS INT) AS quantity, {AMOUNT} AS amount, currency,
                   fx_rate_to_usd, CAST(round({AMOUNT} * fx_rate_to_usd, 2) AS DECIMAL(18,2)) AS amount_usd, status,
                   try_cast(updated_at AS TIMESTAMP) AS updated_at, coupon_code, _source_file
            FROM orders_classified WHERE _rule IS NULL
            QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY try_cast(updated_at AS TIMESTAMP) DESC NULLS LAST,
                                      _partition_date, _source_file) = 1""",
        ),
        (
            "silver_quarantine",
            """
            CREATE TABLE silver_quarantine AS
            SELECT 'fx_rates' AS _table, _partition_date, _rule,
                   to_json(struct_pack(date, currency, rate_to_usd)) AS _record,
                   _source_file FROM fx_classified WHERE _rule IS NOT NULL
            UNION ALL
            SELECT 'customers', _partition_date, _rule, to_json(struct_pack(customer_id, email, phone, first_name,
                   last_name, country, signup_date, updated_at, _rescued_data)), _source_file
            FROM crm_classified WHERE _rule IS NOT NULL
            UNION ALL
            SELECT 'orders', _partition_date, _rule, to_json(struct_pack(order_id, customer_id, order_ts, product_id,
                   category, quantity, amount, currency, status, updated_at, coupon_code)), _source_file
            FROM orders_classified WHERE _rule IS NOT NULL""",
        ),
        (
            "write_silver",
            f"""
            COPY silver_orders TO '{out}/silver/orders'
                (FORMAT parquet, PARTITION_BY (order_date), OVERWRITE_OR_IGNORE);
            COPY silver_customers TO '{out}/silver/customers.parquet' (FORMAT parquet);
            COPY silver_fx TO '{out}/silver/fx_rates.parquet' (FORMAT parquet);
            COPY silver_quarantine TO '{out}/silver/quarantine.parquet' (FORMAT parquet)""",
        ),
        (
            "gold_revenue_daily",
            f"""
            CREATE TABLE orders_enriched AS
            SELECT o.*, v.country
            FROM silver_orders o LEFT JOIN silver_customers v ON o.customer_id = v.customer_id
            QUALIFY row_number() OVER (
                PARTITION BY o.order_id
                ORDER BY CASE WHEN v.valid_from <= o.order_ts THEN 0 ELSE 1 END,
                         CASE WHEN v.valid_from <= o.order_ts THEN v.valid_from END DESC, v.valid_from) = 1;
            COPY (
                SELECT order_date, coalesce(country, 'unknown') AS country, category, currency, count(*) AS orders,
                       CAST(sum(quantity) AS BIGINT) AS units, CAST(sum(amount) AS DECIMAL(18,2)) AS revenue,
                       CAST(sum(amount_usd) AS DECIMAL(18,2)) AS revenue_usd
                FROM orders_enriched GROUP BY ALL
            ) TO '{out}/gold/revenue_daily.parquet' (FORMAT parquet)""",
        ),
        (
            "gold_product_performance_daily",
            f"""
            COPY (
                WITH by_product AS (
                    SELECT order_date, product_id, category, count(*) AS orders, CAST(sum(quantity) AS BIGINT) AS units,
                           count(DISTINCT customer_id) AS customers,
                           CAST(sum(amount_usd) AS DECIMAL(18,2)) AS revenue_usd
                    FROM silver_orders GROUP BY ALL)
                SELECT *, CAST(revenue_usd / units AS DECIMAL(18,2)) AS avg_unit_price_usd,
                       dense_rank() OVER (PARTITION BY order_date ORDER BY revenue_usd DESC) AS revenue_rank
                FROM by_product
            ) TO '{out}/gold/product_performance_daily.parquet' (FORMAT parquet)""",
        ),
        (
            "gold_rfm_segments",
            f"""
            COPY (
                WITH stats AS (
                    SELECT s.customer_id, count(*) AS frequency, CAST(sum(amount_usd) AS DECIMAL(18,2)) AS monetary_usd,
                           max(order_date) AS last_order_date
                    FROM silver_orders s SEMI JOIN (SELECT customer_id FROM silver_customers WHERE is_current) c
                         ON s.customer_id = c.customer_id
                    GROUP BY s.customer_id),
                as_of AS (SELECT max(order_date) AS as_of_date FROM silver_orders),
                scored AS (
                    SELECT stats.customer_id, as_of_date, as_of_date - last_order_date AS recency_days, frequency,
                           monetary_usd,
                           ntile(5) OVER (ORDER BY as_of_date - last_order_date DESC, customer_id) AS r_score,
                           ntile(5) OVER (ORDER BY frequency, customer_id) AS f_score,
                           ntile(5) OVER (ORDER BY monetary_usd, customer_id) AS m_score
                    FROM stats CROSS JOIN as_of)
                SELECT *, concat(r_score, f_score, m_score) AS rfm_score,
                       CASE WHEN r_score >= 4 AND f_score >= 4 AND m_score >= 4 THEN 'champions'
                            WHEN r_score >= 3 AND f_score >= 4 THEN 'loyal'
                            WHEN r_score >= 4 AND f_score <= 2 THEN 'new_customers'
                            WHEN r_score <= 2 AND f_score >= 3 THEN 'at_risk'
                            WHEN r_score <= 2 AND f_score <= 2 THEN 'hibernating'
                            ELSE 'needs_attention' END AS segment
                FROM scored
            ) TO '{out}/gold/rfm_segments.parquet' (FORMAT parquet)""",
        ),
    ]


def run(landing: Path, start: date, days: int, out: Path | None = None, threads: int | None = None) -> dict:
    """Run every step in a fresh in-memory DuckDB; returns wall time, per-step times and row counts."""
    cleanup = out is None
    out = Path(out or tempfile.mkdtemp(prefix="duckdb-reference-"))
    shutil.rmtree(out, ignore_errors=True)
    (out / "silver").mkdir(parents=True)
    (out / "gold").mkdir(parents=True)
    started = time.perf_counter()
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    timings = {}
    for name, sql in steps(Path(landing), start, days, out):
        t = time.perf_counter()
        con.execute(sql)
        timings[name] = round(time.perf_counter() - t, 3)
    wall = round(time.perf_counter() - started, 3)
    count = lambda table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
    rows = {
        t: count(t)
        for t in [
            "bronze_fx",
            "bronze_crm",
            "bronze_orders",
            "silver_fx",
            "silver_customers",
            "silver_orders",
            "silver_quarantine",
        ]
    }
    con.close()
    if cleanup:
        shutil.rmtree(out, ignore_errors=True)
    layer = lambda prefix: round(sum(v for k, v in timings.items() if k.startswith(prefix)), 3)  # noqa: E731
    return {
        "engine": f"duckdb {duckdb.__version__}",
        "wall_s": wall,
        "steps_s": timings,
        "layers_s": {
            "bronze": layer("bronze"),
            "silver": layer("silver") + layer("write_silver"),
            "gold": layer("gold"),
        },
        "rows": rows,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--landing", required=True, type=Path)
    p.add_argument("--start", default="2026-08-01")
    p.add_argument("--days", type=int, required=True)
    p.add_argument("--out", type=Path, default=None, help="where the Parquet goes (default: a temporary folder)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    result = run(args.landing, date.fromisoformat(args.start), args.days, args.out, args.threads)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
