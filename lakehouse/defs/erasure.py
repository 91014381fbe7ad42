"""`forget`: erase customers from every layer and store (the GDPR/CCPA right to erasure; docs/runbooks.md).

One op, in this order, so that a re-run after a failure finishes the work: the register first (every ingest
from then on drops the customers), then the landing files, the serving store, Snowflake where configured,
the lake's tables (Gold, Silver and quarantine, Bronze; one commit each), and last each touched table's
history (vacuum and log cleanup), so that no earlier Delta version can be read back with their rows.

Ids reach the job as config (the UI's launchpad) or, from `lakehouse forget`, already hashed, so that the run's
stored config names nobody. The ids themselves are found again in the tables and kept in memory only; the
event log gets counts per table, never an id.
"""

import os
import re
from pathlib import Path

import dagster as dg
from deltalake import CommitProperties, DeltaTable
from pydantic import Field

from lakehouse import catalog, settings
from lakehouse.defs.gold import dbt as gold  # noqa: F401 - parses the manifest publish reads its marts from
from lakehouse.defs.publish import snowflake as publish
from lakehouse.defs.serve import postgres as serve
from lakehouse.lib import erasure, serving
from lakehouse.lib.lake import DeltaLake, retry_on_commit_conflict

RUN_KEY = "lakehouse/erasure_run"  # commit metadata of an erasure's DELETE/UPDATE: the history still to purge


class ForgetConfig(dg.Config):
    customer_ids: list[str] = Field(default=[], description="Customer ids to erase, e.g. C0001234")
    customer_id_hashes: list[str] = Field(
        default=[], description="The same as the register stores them (lakehouse forget passes these)"
    )


def lake_tables() -> list[tuple[str, str, str | None, bool]]:
    """(layer, table, subject column, streaming) of every lake table that can hold a customer, Gold first."""
    marts = [("gold", m.name, m.subject, False) for m in catalog.marts().values() if m.subject]
    declared = [(t.layer, t.name, t.subject, t.layer == "bronze" and not t.landing) for t in catalog.all_tables()]
    return marts + sorted(declared, key=lambda t: t[0] != "silver")


def find(lake: DeltaLake, landing: Path, wanted: set[str]) -> dict[str, str]:
    """{hash: id} for the wanted hashes whose customer some table or landing file still names."""
    named: set[str] = set()
    for layer, table, subject, _ in lake_tables():
        if lake.exists(layer, table):
            named |= erasure.ids_held(lake.delta_table(layer, table), subject)
    for path in landing.glob("*/*"):
        named |= erasure.ids_in(path.read_text(errors="replace"))
    return {h: i for i in named if (h := erasure.subject_hash(i)) in wanted}


def forget_landing_files(landing: Path, ids: set[str]) -> dict[str, int]:
    """Rewrite every landing file without the lines that name `ids` (a CSV keeps its header); {source: lines
    removed}. A file keeps its modification time, so the landing sensor does not land the day again."""
    theirs = re.compile(erasure.pattern(ids).pattern.encode(), re.IGNORECASE)  # bytes: a file is kept as it is
    removed: dict[str, int] = {}
    for path in sorted(landing.glob("*/*")):
        lines = path.read_bytes().splitlines(keepends=True)
        header = lines[:1] if path.suffix == ".csv" else []
        kept = header + [line for line in lines[len(header) :] if not theirs.search(line)]
        if len(kept) < len(lines):
            stat = path.stat()
            temporary = path.with_name(path.name + ".erasure")
            temporary.write_bytes(b"".join(kept))
            os.utime(temporary, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            temporary.replace(path)
            removed[path.parent.name] = removed.get(path.parent.name, 0) + len(lines) - len(kept)
    return removed


def forget_in_serving(store: serving.ServingDatabase, ids: set[str], log) -> dict[str, int] | None:
    """Delete the customers' rows from the served marts; None when no serving store is configured or running."""
    try:
        conn = store.connect()
    except Exception as error:
        if "serving" in settings.configured_targets():
            raise
        log.info(f"serving store not configured and not reachable ({type(error).__name__}): nothing to erase there")
        return None
    deleted = {}
    with conn:
        serving.create_tables(conn)
        for t in serving.TABLES.values():
            subject = catalog.marts()[t.mart].subject
            if subject:
                sql = f"DELETE FROM {serving.ident(t.table)} WHERE upper(trim({subject})) = ANY(%s)"
                deleted[t.mart] = conn.execute(sql, [sorted(ids)]).rowcount
    return deleted


def forget_in_snowflake(snowflake, ids: set[str]) -> dict[str, int]:
    """Delete the customers' rows from the published marts (that exist)."""
    deleted = {}
    in_list = ", ".join(erasure.sql_text(i) for i in sorted(ids))
    with snowflake.get_connection() as conn:
        cursor = conn.cursor()
        for mart in catalog.marts().values():
            if mart.subject:
                table = publish.snowflake_table(mart)
                cursor.execute(f"SELECT 1 FROM information_schema.tables WHERE table_name = '{table}'")
                if cursor.fetchall():
                    cursor.execute(f"DELETE FROM {table} WHERE UPPER(TRIM({mart.subject})) IN ({in_list})")
                    deleted[mart.name] = cursor.rowcount
    return deleted


def forget_in_table(dt_factory, subject: str | None, streaming: bool, ids: set[str], run_id: str) -> int:
    """Delete the rows that name `ids` (a streaming table's become tombstones), in one commit; rows changed."""
    columns = [f.name for f in dt_factory().schema().fields]
    predicate = erasure.delete_predicate(ids, subject, columns)
    if predicate is None:
        return 0
    commit = CommitProperties(custom_metadata={RUN_KEY: run_id})
    metrics: dict = {}

    def write():
        dt = dt_factory()
        if streaming:
            metrics.update(
                dt.update(updates=erasure.tombstone_updates(columns), predicate=predicate, commit_properties=commit)
            )
        else:
            metrics.update(dt.delete(predicate, commit_properties=commit))

    retry_on_commit_conflict(write)
    return int(metrics.get("num_updated_rows" if streaming else "num_deleted_rows", 0))


def purge_history(dt_factory) -> bool:
    """If the table's log still holds an erasure's commit: delete every file no longer in the table (vacuum
    with no retention) and every log entry before a new checkpoint, whose statistics and predicates name the
    customers. Time travel to before the erasure ends here. Returns whether there was anything to purge."""
    dt = dt_factory()
    if not any(RUN_KEY in commit for commit in dt.history()):
        return False
    dt.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    retention = dt.metadata().configuration.get("delta.logRetentionDuration", "interval 30 days")
    dt.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
    dt = dt_factory()
    dt.create_checkpoint()
    dt.cleanup_metadata()
    dt_factory().alter.set_table_properties({"delta.logRetentionDuration": retention})
    return True


def forget_op(snowflake_configured: bool) -> dg.OpDefinition:
    resources = {"lake", "serving", *(["snowflake"] if snowflake_configured else [])}

    @dg.op(
        name="forget_customers",
        required_resource_keys=resources,
        description="Erase customers from the register's next ingest on, the landing files, the serving store, "
        "Snowflake where configured, every lake table and its history.",
    )
    def forget_customers(context: dg.OpExecutionContext, config: ForgetConfig) -> dg.Output:
        lake: DeltaLake = context.resources.lake
        asked = {f"customer_ids[{n}]": erasure.subject_hash(i) for n, i in enumerate(config.customer_ids)}
        asked |= {f"hash {h[:12]}": h for h in config.customer_id_hashes}
        if not asked:
            raise dg.Failure("forget: no customer given (config customer_ids or customer_id_hashes)")
        register = lake.erasure_register()
        found, registered_before = find(lake, settings.landing_dir(), set(asked.values())), register.hashes()
        unknown = [label for label, h in asked.items() if h not in found and h not in registered_before]
        if unknown:
            raise dg.Failure(
                f"forget: no table, landing file or register entry names {', '.join(unknown)}; nothing was erased"
            )
        ids = set(found.values())
        registered = register.add(asked.values(), context.run_id)
        removed: dict[dg.AssetKey, dict[str, int]] = {}  # per asset: erasure/* figures
        if ids:
            for source, n in forget_landing_files(settings.landing_dir(), ids).items():
                removed[dg.AssetKey(["bronze", source])] = {"erasure/landing_lines_removed": n}
            for mart, n in (forget_in_serving(context.resources.serving, ids, context.log) or {}).items():
                removed[serve.serve_key(mart)] = {"erasure/rows_removed": n}
            if snowflake_configured:
                for mart, n in forget_in_snowflake(context.resources.snowflake, ids).items():
                    removed[publish.publish_key(mart)] = {"erasure/rows_removed": n}
        purged = []
        for layer, table, subject, streaming in lake_tables():
            if not lake.exists(layer, table):
                continue

            def dt_factory(layer=layer, table=table) -> DeltaTable:
                return lake.delta_table(layer, table)

            with lake.lock(layer, table):  # streaming ingest holds it across its commit: vacuum cannot race it
                if ids:
                    n = forget_in_table(dt_factory, subject, streaming, ids, context.run_id)
                    removed.setdefault(dg.AssetKey([layer, table]), {})["erasure/rows_removed"] = n
                if purge_history(dt_factory):
                    purged.append(f"{layer}/{table}")
        for key, figures in removed.items():
            context.log_event(
                dg.AssetObservation(
                    asset_key=key, metadata={**figures, "erasure/customers": len(ids), "erasure/run": context.run_id}
                )
            )
        context.log.info(f"forget: {len(ids)} customer(s) found, {registered} newly registered, {len(purged)} purged")
        return dg.Output(
            None,
            metadata={
                "customers_asked": len(asked),
                "customers_found": len(ids),
                "newly_registered": registered,
                "rows_removed": dg.MetadataValue.json(
                    {k.to_user_string(): sum(f.values()) for k, f in removed.items() if sum(f.values())}
                ),
                "history_purged": dg.MetadataValue.json(purged),
            },
        )

    return forget_customers


def forget_job(snowflake_configured: bool) -> dg.JobDefinition:
    @dg.job(
        name="forget",
        description="Erase customers everywhere (lakehouse forget C0001234 ...): docs/runbooks.md, erasure requests.",
        tags={"lakehouse/kind": "governance"},
    )
    def forget():
        forget_op(snowflake_configured)()

    return forget


forget = forget_job("snowflake" in settings.configured_targets())
