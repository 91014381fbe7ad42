"""`publish/snowflake/<mart>`: each Gold mart published to Snowflake for analysts, through
dagster-snowflake's SnowflakeResource, created in the run (lib/snowflake.py) from SNOWFLAKE_ACCOUNT /
USER / PASSWORD / DATABASE / SCHEMA / WAREHOUSE, and SNOWFLAKE_ROLE if set.

A run publishes its partition window: the mart's rows in the window (every row for the fully rebuilt
customer_360 and rfm_segments), read from Gold with delta-rs, are loaded into a temporary stage table
(`write_pandas`), then one MERGE on the mart's key inserts new rows, updates only rows whose values
changed and deletes the window's rows that Gold no longer has. Re-publishing a window is a no-op:
0 rows merged, 0 deleted. The target table is created on first publish from the Delta schema.
"""

import sys
import time
from datetime import date

import dagster as dg
import pyarrow as pa

from lakehouse import catalog, settings
from lakehouse.catalog import Mart
from lakehouse.lib import partitions
from lakehouse.lib.lake import DeltaLake, window_predicate
from lakehouse.lib.snowflake import LazySnowflakeResource


def snowflake_table(mart: Mart) -> str:
    return mart.name.upper()


def snowflake_resource() -> LazySnowflakeResource:
    """The standard Snowflake settings from the environment (read when a run uses the resource)."""
    optional = {"role": dg.EnvVar(settings.SNOWFLAKE_ROLE)} if settings.snowflake_role_is_set() else {}
    return LazySnowflakeResource(
        account=dg.EnvVar(settings.SNOWFLAKE_ACCOUNT),
        user=dg.EnvVar("SNOWFLAKE_USER"),
        password=dg.EnvVar("SNOWFLAKE_PASSWORD"),
        database=dg.EnvVar("SNOWFLAKE_DATABASE"),
        schema=dg.EnvVar("SNOWFLAKE_SCHEMA"),
        warehouse=dg.EnvVar("SNOWFLAKE_WAREHOUSE"),
        **optional,
    )


def snowflake_type(t: pa.DataType) -> str:
    if pa.types.is_decimal(t):
        return f"NUMBER({t.precision},{t.scale})"
    if pa.types.is_integer(t):
        return "NUMBER(38,0)"
    if pa.types.is_floating(t):
        return "FLOAT"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP_TZ" if t.tz else "TIMESTAMP_NTZ"
    return "VARCHAR"


def create_table_sql(mart: Mart, schema: pa.Schema) -> str:
    columns = ", ".join(f"{f.name.upper()} {snowflake_type(f.type)}" for f in schema)
    return f"CREATE TABLE IF NOT EXISTS {snowflake_table(mart)} ({columns})"


def merge_sql(mart: Mart, stage: str, schema: pa.Schema, start: date, end: date) -> str:
    """One MERGE on the key (NULL-safe) that inserts new rows, updates only rows whose values differ,
    and deletes the window's rows Gold no longer has (they enter the source as tombstones, since
    Snowflake's MERGE has no WHEN NOT MATCHED BY SOURCE). One statement, so one atomic change."""
    columns = [f.name.upper() for f in schema]
    keys = [k.upper() for k in mart.keys]
    values = [c for c in columns if c not in keys]
    on = " AND ".join(f"EQUAL_NULL(t.{k}, s.{k})" for k in keys)
    differs = " OR ".join(f"NOT EQUAL_NULL(t.{c}, s.{c})" for c in values) or "FALSE"
    col_list = ", ".join(columns)
    gone = " AND ".join(f"EQUAL_NULL(g.{k}, t.{k})" for k in keys)
    window = window_predicate(mart.window and f"t.{mart.window.upper()}", start, end)
    source = (
        f"SELECT {col_list}, FALSE AS _TOMBSTONE FROM {stage} "
        f"UNION ALL SELECT {', '.join(f't.{c}' for c in columns)}, TRUE FROM {snowflake_table(mart)} t "
        f"WHERE {window} AND NOT EXISTS (SELECT 1 FROM {stage} g WHERE {gone})"
    )
    return (
        f"MERGE INTO {snowflake_table(mart)} t USING ({source}) s ON {on} "
        "WHEN MATCHED AND s._TOMBSTONE THEN DELETE "
        f"WHEN MATCHED AND ({differs}) THEN UPDATE SET {', '.join(f't.{c} = s.{c}' for c in values)} "
        f"WHEN NOT MATCHED AND NOT s._TOMBSTONE THEN INSERT ({col_list}) "
        f"VALUES ({', '.join(f's.{c}' for c in columns)})"
    )


def publish(conn, mart: Mart, rows: pa.Table, start: date, end: date) -> dict:
    """Load `rows` into a stage table, then MERGE them and prune the window in one statement."""
    import snowflake.connector.pandas_tools as pandas_tools  # module attribute: fakesnow patches it

    stage = f"{snowflake_table(mart)}__STAGE"
    cur = conn.cursor()
    cur.execute(create_table_sql(mart, rows.schema))
    cur.execute(f"CREATE OR REPLACE TEMPORARY TABLE {stage} LIKE {snowflake_table(mart)}")
    if rows.num_rows:
        frame = rows.to_pandas()
        frame.columns = [c.upper() for c in frame.columns]
        pandas_tools.write_pandas(
            conn, frame, stage, quote_identifiers=False, auto_create_table=False, use_logical_type=True
        )
    cur.execute(merge_sql(mart, stage, rows.schema, start, end))
    result = dict(zip((d.name for d in cur.description), cur.fetchone(), strict=True))
    inserted, updated, deleted = (
        int(result.get(f"number of rows {what}", 0)) for what in ("inserted", "updated", "deleted")
    )
    cur.execute(f"DROP TABLE IF EXISTS {stage}")
    cur.execute(f"SELECT COUNT(*) FROM {snowflake_table(mart)}")
    total = int(cur.fetchone()[0])
    return {
        "rows_in_window": rows.num_rows,
        "rows_merged": inserted + updated,
        "rows_inserted": inserted,
        "rows_updated": updated,
        "rows_deleted": deleted,
        "dagster/row_count": total,
    }


def publish_key(mart: str) -> dg.AssetKey:
    return dg.AssetKey(["publish", "snowflake", mart])


def publish_asset(mart: Mart) -> dg.AssetsDefinition:
    scope = f"the run's window of {mart.window}" if mart.window else "all rows (the mart is rebuilt in full)"

    @dg.asset(
        key=publish_key(mart.name),
        deps=[dg.AssetKey(["gold", mart.name])],
        code_version=catalog.code_version(sys.modules[__name__]),
        group_name="publish",
        partitions_def=partitions.daily,
        backfill_policy=partitions.single_run,
        kinds={"snowflake"},
        description=f"gold/{mart.name} published to Snowflake table {snowflake_table(mart)}: MERGE on "
        f"({', '.join(mart.keys)}) of {scope}, then rows Gold no longer has in it deleted.",
    )
    def _publish(
        context: dg.AssetExecutionContext, snowflake: LazySnowflakeResource, lake: DeltaLake
    ) -> dg.MaterializeResult:
        start, end = partitions.window(context)
        started = time.perf_counter()
        rows = lake.window_rows("gold", mart.name, mart.window, start, end)
        with snowflake.get_connection() as conn:
            counts = publish(conn, mart, rows, start, end)
        duration = round(time.perf_counter() - started, 3)
        context.log.info(f"publish/snowflake/{mart.name} [{start}, {end}): {counts} in {duration} s")
        return dg.MaterializeResult(
            metadata={**counts, "duration_s": duration, "table": snowflake_table(mart), "window": f"[{start}, {end})"}
        )

    return _publish


PUBLISH_ASSETS = [publish_asset(m) for m in catalog.marts().values()]
