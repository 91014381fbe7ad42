"""The Postgres serving store: which Gold columns are served, the tables and indexes that hold them,
and the window sync (upsert on key, prune what Gold no longer has) plus the checksum the asset
checks compare with Gold.

Gold is read with delta-rs (no Spark): the serving copy is small, selected columns of three marts.
A sync is one Postgres transaction: COPY the window's Gold rows into a temporary table, `INSERT ...
ON CONFLICT DO UPDATE` only the rows that differ, then delete the window's rows Gold no longer has.
Re-running a sync over the same window changes nothing (0 rows inserted, updated or deleted).
"""

import time
from dataclasses import dataclass
from datetime import date
from hashlib import md5

import dagster as dg
import pyarrow as pa
from pydantic import Field

from lakehouse import catalog, settings
from lakehouse.lib.lake import DeltaLake, window_predicate

DEFAULT_DSN = settings.DEFAULT_SERVING_DSN


@dataclass(frozen=True)
class ServedTable:
    """A Gold mart's served copy: its columns (name -> Postgres type) and indexes; its key and window are the
    mart's own (the dbt model's `meta.keys` and `partition_by`)."""

    mart: str
    columns: dict[str, str]
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def table(self) -> str:
        return self.mart

    @property
    def keys(self) -> tuple[str, ...]:
        return catalog.marts()[self.mart].keys

    @property
    def window_column(self) -> str | None:
        """None: the mart is rebuilt in full, so the whole table is the window."""
        return catalog.marts()[self.mart].window


TABLES: dict[str, ServedTable] = {
    t.mart: t
    for t in [
        ServedTable(
            mart="customer_360",
            columns={
                "customer_id": "text not null",
                "name_initials": "text",
                "email_masked": "text",
                "phone_masked": "text",
                "country": "text",
                "signup_date": "date",
                "segment": "text",
                "rfm_score": "text",
                "orders_count": "bigint",
                "lifetime_value_usd": "numeric(18,2)",
                "first_order_at": "timestamptz",
                "last_order_at": "timestamptz",
                "sessions_count": "bigint",
                "last_session_at": "timestamptz",
                "tickets_open": "bigint",
                "tickets_closed": "bigint",
            },
            # GET /customers?segment=&country= pages by customer_id within the filter
            indexes=(("segment", "customer_id"), ("country", "customer_id"), ("country", "segment", "customer_id")),
        ),
        ServedTable(
            mart="revenue_daily",
            columns={
                "order_date": "date not null",
                "country": "text not null",
                "category": "text",
                "currency": "text",
                "orders": "bigint",
                "units": "bigint",
                "revenue_usd": "numeric(18,2)",
            },
            # GET /revenue/daily?from=&to=&country=
            indexes=(("country", "order_date"),),
        ),
        ServedTable(
            mart="daily_kpis",
            columns={
                "date_day": "date not null",
                "active_users": "bigint",
                "new_users": "bigint",
                "sessions": "bigint",
                "bounce_rate": "double precision",
                "avg_session_length_seconds": "double precision",
                "orders": "bigint",
                "buyers": "bigint",
                "revenue_usd": "numeric(18,2)",
                "avg_order_value_usd": "numeric(18,2)",
            },
        ),
    ]
}


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ddl(t: ServedTable) -> list[str]:
    """CREATE TABLE / INDEX IF NOT EXISTS: the key is unique with NULLs equal (a Gold key may hold a NULL)."""
    cols = ", ".join(f"{ident(c)} {ty}" for c, ty in t.columns.items())
    keys = ", ".join(ident(k) for k in t.keys)
    statements = [
        f"CREATE TABLE IF NOT EXISTS {ident(t.table)} ({cols}, "
        f"CONSTRAINT {ident(t.table + '_key')} UNIQUE NULLS NOT DISTINCT ({keys}))",
    ]
    for index in t.indexes:
        name = f"{t.table}_by_{'_'.join(index)}"
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {ident(name)} ON {ident(t.table)} ({', '.join(map(ident, index))})"
        )
    return statements


# -- Gold ----------------------------------------------------------------------------------------------------


def gold_window(lake: DeltaLake, t: ServedTable, start: date, end: date) -> pa.Table:
    """The served columns of the mart's rows in [start, end) (all rows for a fully rebuilt mart)."""
    return lake.window_rows("gold", t.mart, t.window_column, start, end, columns=list(t.columns))


def key_text(values) -> str:
    """A key as text, the same in Python and in Postgres (`key_sql`): ISO dates, `\\N` for NULL."""
    return "\x1f".join("\\N" if v is None else v.isoformat() if isinstance(v, date) else str(v) for v in values)


def key_sql(t: ServedTable) -> str:
    return " || chr(31) || ".join(f"coalesce({ident(k)}::text, '\\N')" for k in t.keys)


def row_hash(text: str) -> int:
    """First 60 bits of the md5 of a key: summed over rows, an order-independent checksum."""
    return int(md5(text.encode()).hexdigest()[:15], 16)


def gold_checksum(rows: pa.Table, t: ServedTable) -> tuple[int, str]:
    keys = zip(*(rows.column(k).to_pylist() for k in t.keys), strict=True) if rows.num_rows else []
    return rows.num_rows, str(sum(row_hash(key_text(k)) for k in keys))


# -- Postgres ------------------------------------------------------------------------------------------------


def window_sql(t: ServedTable, start: date, end: date, alias: str = "") -> str:
    return window_predicate(t.window_column and f"{alias}{ident(t.window_column)}", start, end)


def serving_checksum(conn, t: ServedTable, start: date, end: date) -> tuple[int, str]:
    row = conn.execute(
        f"SELECT count(*), coalesce(sum(('x' || substr(md5({key_sql(t)}), 1, 15))::bit(60)::bigint), 0)::text "
        f"FROM {ident(t.table)} WHERE {window_sql(t, start, end)}"
    ).fetchone()
    return int(row[0]), row[1]


def ensure_database(dsn: str) -> None:
    """Create the serving database if it does not exist yet (connects to `postgres` on the same server)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    name = params.get("dbname")
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
        return
    except psycopg.OperationalError as error:
        if not name or "does not exist" not in str(error):
            raise
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True, connect_timeout=5) as admin:
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            pass


def create_tables(conn) -> None:
    for t in TABLES.values():
        for statement in ddl(t):
            conn.execute(statement)


def sync(conn, t: ServedTable, rows: pa.Table, start: date, end: date) -> dict:
    """Upsert `rows` (Gold's window) into the served table and delete the window's rows Gold lacks.

    Runs in the caller's transaction; returns the counts for the materialisation's metadata."""
    cols = list(t.columns)
    col_list = ", ".join(map(ident, cols))
    stage = f"stage_{t.table}"
    conn.execute(f"CREATE TEMP TABLE {ident(stage)} (LIKE {ident(t.table)}) ON COMMIT DROP")
    with conn.cursor().copy(f"COPY {ident(stage)} ({col_list}) FROM STDIN") as copy:
        for row in zip(*(rows.column(c).to_pylist() for c in cols), strict=True) if rows.num_rows else []:
            copy.write_row(row)
    values = [c for c in cols if c not in t.keys]
    keys = ", ".join(map(ident, t.keys))
    changed = " OR ".join(f"t.{ident(c)} IS DISTINCT FROM excluded.{ident(c)}" for c in values) or "false"
    upserted = conn.execute(
        f"INSERT INTO {ident(t.table)} AS t ({col_list}) SELECT {col_list} FROM {ident(stage)} "
        f"ON CONFLICT ({keys}) DO UPDATE SET {', '.join(f'{ident(c)} = excluded.{ident(c)}' for c in values)} "
        f"WHERE {changed} RETURNING (xmax = 0)"
    ).fetchall()
    inserted = sum(1 for (is_insert,) in upserted if is_insert)
    matches = " AND ".join(f"s.{ident(k)} IS NOT DISTINCT FROM t.{ident(k)}" for k in t.keys)
    deleted = conn.execute(
        f"DELETE FROM {ident(t.table)} t WHERE {window_sql(t, start, end, 't.')} "
        f"AND NOT EXISTS (SELECT 1 FROM {ident(stage)} s WHERE {matches})"
    ).rowcount
    conn.execute(f"DROP TABLE {ident(stage)}")
    return {
        "rows_in_window": rows.num_rows,
        "rows_upserted": len(upserted),
        "rows_inserted": inserted,
        "rows_updated": len(upserted) - inserted,
        "rows_deleted": deleted,
        "rows_unchanged": rows.num_rows - len(upserted),
    }


class ServingDatabase(dg.ConfigurableResource):
    """The Postgres database the API reads (LAKEHOUSE_SERVING_DSN, else the local `lakehouse_serving`)."""

    dsn: str = Field(default=DEFAULT_DSN, description="libpq connection string or URL (LAKEHOUSE_SERVING_DSN)")
    create_database: bool = Field(default=True, description="CREATE DATABASE on first use if it is missing")

    def connect(self):
        import psycopg

        if self.create_database:
            ensure_database(self.dsn)
        conn = psycopg.connect(self.dsn, connect_timeout=10)
        return conn

    def sync_window(self, lake: DeltaLake, mart: str, start: date, end: date) -> dict:
        t = TABLES[mart]
        started = time.perf_counter()
        rows = gold_window(lake, t, start, end)
        with self.connect() as conn:  # one transaction: commits on success, rolls back on error
            create_tables(conn)
            counts = sync(conn, t, rows, start, end)
            total = conn.execute(f"SELECT count(*) FROM {ident(t.table)}").fetchone()[0]
        return {**counts, "dagster/row_count": int(total), "duration_s": round(time.perf_counter() - started, 3)}

    def compare_window(self, lake: DeltaLake, mart: str, start: date, end: date) -> dict:
        t = TABLES[mart]
        want = gold_checksum(gold_window(lake, t, start, end), t)
        with self.connect() as conn:
            create_tables(conn)
            got = serving_checksum(conn, t, start, end)
        return {
            "gold_rows": want[0],
            "serving_rows": got[0],
            "gold_key_checksum": want[1],
            "serving_key_checksum": got[1],
            "matches": want == got,
        }
