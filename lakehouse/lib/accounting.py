"""Row accounting: every row a run reads is written, quarantined (per rule), superseded by a newer version of its
key, or dropped because its customer was erased (lib/erasure.py). Each Bronze and Silver asset reports the
figures as metadata and as the asset check `rows_accounted_for`, emitted by the run itself. `written` is what
the Delta commit says it wrote, so a row lost between the plan and the table makes the check fail."""

import dagster as dg
from pyspark.sql import DataFrame

NAME = "rows_accounted_for"


def spec(asset: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        NAME,
        asset=asset,
        description="Rows read = rows written + rows quarantined (per rule) + duplicates superseded + rows erased.",
    )


def account(
    table: str,
    read: int,
    written: int,
    quarantined: dict[str, int] | None = None,
    superseded: int = 0,
    erased: int = 0,
) -> tuple[dict, dg.AssetCheckResult]:
    """(metadata, check result) for one run's rows."""
    quarantined = quarantined or {}
    total = written + sum(quarantined.values()) + superseded + erased
    metadata = {
        "rows_read": read,
        "rows_written": written,
        "rows_quarantined": sum(quarantined.values()),
        **{f"quarantined/{rule}": n for rule, n in quarantined.items()},
        "rows_superseded": superseded,
        "rows_erased": erased,
    }
    return metadata, dg.AssetCheckResult(
        check_name=NAME,
        passed=read == total,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=None
        if read == total
        else f"{table}: {read} row(s) read but {total} accounted for ({written} written, {sum(quarantined.values())} "
        f"quarantined, {superseded} superseded, {erased} erased): {read - total:+d} row(s) unaccounted",
    )


def kept_and_superseded(valid: DataFrame, table: DataFrame, key: list[str], origin: list[str]) -> tuple[int, int]:
    """(keys whose row in `table` came from one of the run's `valid` rows, valid rows whose key `table`
    holds from another version): matched on `key`, and on the `origin` columns that say where a row came
    from. A valid row whose key is missing from the table counts in neither, so the check fails."""
    keys = table.select(*key, *origin)
    held = valid.join(keys.select(*key).distinct(), key, "left_semi").count()
    kept = valid.join(keys, [*key, *origin], "left_semi").select(*key).distinct().count()
    return kept, held - kept
