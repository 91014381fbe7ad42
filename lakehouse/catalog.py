"""Every Bronze and Silver table of the lakehouse, declared once.

A declaration says what the table is (layer, name, contract: columns, key and window column), where a batch
source lands (its file format), which quality checks it gets beyond its contract, the columns maintenance
z-orders on, and whether its rule-breaking rows go to a quarantine table. The Bronze assets of batch sources,
the landing sensor, the quality checks, the UI's column schemas and column lineage (the Silver contracts'
`computed_from`) and maintenance derive from this list; a Silver table's transform lives in defs/silver/.
Gold marts are declared in their dbt models' `meta` (dbt_project/).

Adding a batch source: a contract in lib/contracts/bronze.py, a `Table` here with `landing=`, and, for its
Silver table, a transform in defs/silver/.
"""

import hashlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dagster as dg
from pandera.pyspark import DataFrameModel

from lakehouse.lib.contracts import bronze, silver
from lakehouse.lib.contracts.evaluate import column_schema, column_sources, window_column


@dataclass(frozen=True)
class Table:
    layer: str
    name: str
    contract: type[DataFrameModel]
    description: str = ""
    landing: str | None = None  # a batch source's landing file format: "jsonl" or "csv"
    checks: tuple[str, ...] = ()  # beyond the contract: "schema_drift", "volume", "quarantine_share", or a named one
    reads: str | None = None  # the Bronze table a Silver table is built from (what quarantine_share compares with)
    quarantine: bool = False  # rows that break a rule go to `<name>_quarantine`, with the reason
    zorder: tuple[str, ...] = ()  # what queries filter or join on, besides the partition column
    domain: str = ""  # the business domain the table belongs to (a tag in the UI)
    record_pii: bool = False  # a quarantine table whose `_record` JSON keeps its parent's personal data
    subject: str | None = None  # the column naming the customer a row is about (what erasure matches)

    @property
    def path(self) -> str:
        return f"{self.layer}/{self.name}"

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey([self.layer, self.name])

    @property
    def pii_columns(self) -> tuple[str, ...]:
        """The columns with personal data: those the contract describes as PII, and a quarantine's `_record`."""
        described = [n for n, c in self.contract.to_schema().columns.items() if (c.description or "").startswith("PII")]
        return (*described, *(["_record"] if self.record_pii else []))

    @property
    def pii(self) -> bool:
        return bool(self.pii_columns)

    @property
    def column_lineage(self) -> dg.TableColumnLineage | None:
        """Where each column comes from, as the contract declares it (`computed_from`), for the UI's column view.
        None for a table landed from outside the lake (Bronze) or a quarantine."""
        if self.reads is None:
            return None
        return dg.TableColumnLineage(
            {
                column: [dg.TableColumnDep(dg.AssetKey(table.split("/")), name) for table, name in sources]
                for column, sources in column_sources(self.contract, self.reads).items()
            }
        )

    @property
    def window(self) -> str | None:
        """The column a partition window filters on (None: a check covers the whole table)."""
        return window_column(self.contract)


KAFKA_ZORDER = ("kafka_partition", "kafka_offset")

TABLES = [
    # Batch sources: files landed once a day, read as they are.
    Table(
        "bronze",
        "crm_customers",
        bronze.CrmCustomers,
        "CRM customer records as exported each day (JSON lines), untyped, nothing dropped.",
        landing="jsonl",
        checks=("schema_drift", "volume"),
        domain="customer",
        subject="customer_id",
    ),
    Table(
        "bronze",
        "orders",
        bronze.Orders,
        "E-commerce orders as landed each day (CSV), untyped, nothing dropped.",
        landing="csv",
        checks=("schema_drift", "volume"),
        domain="sales",
        subject="customer_id",
    ),
    Table(
        "bronze",
        "fx_rates",
        bronze.FxRates,
        "Daily FX rates to USD as landed (CSV), untyped, nothing dropped.",
        landing="csv",
        domain="finance",
    ),
    # Streaming sources: Kafka micro-batches (defs/bronze/streaming.py).
    Table(
        "bronze", "clickstream_events", bronze.ClickstreamEvents, zorder=KAFKA_ZORDER, domain="web", subject="user_id"
    ),
    Table(
        "bronze",
        "support_ticket_changes",
        bronze.SupportTicketChanges,
        zorder=KAFKA_ZORDER,
        domain="support",
        subject="customer_id",
    ),
    # Silver: typed, deduplicated, conformed (defs/silver/).
    Table(
        "silver",
        "customers",
        silver.Customers,
        reads="bronze/crm_customers",
        quarantine=True,
        checks=("quarantine_share", "one_current_version"),
        zorder=("customer_id", "valid_from"),
        domain="customer",
        subject="customer_id",
    ),
    Table(
        "silver",
        "orders",
        silver.Orders,
        reads="bronze/orders",
        quarantine=True,
        checks=("volume", "quarantine_share", "customers_exist"),
        zorder=("customer_id", "order_ts"),
        domain="sales",
        subject="customer_id",
    ),
    Table(
        "silver",
        "fx_rates",
        silver.FxRates,
        reads="bronze/fx_rates",
        quarantine=True,
        checks=("quarantine_share",),
        zorder=("rate_date", "currency"),
        domain="finance",
    ),
    Table(
        "silver",
        "sessions",
        silver.Sessions,
        reads="bronze/clickstream_events",
        quarantine=True,
        zorder=("user_id", "session_start"),
        domain="web",
        subject="user_id",
    ),
    Table(
        "silver",
        "support_tickets",
        silver.SupportTickets,
        reads="bronze/support_ticket_changes",
        quarantine=True,
        zorder=("customer_id", "ticket_id"),
        domain="support",
        subject="customer_id",
    ),
]


def quarantine_table(table: Table) -> Table:
    """Where `table`'s rule-breaking rows go: the original record as JSON, the rule, the column and the reason."""
    return Table(
        table.layer,
        f"{table.name}_quarantine",
        silver.quarantine_contract(table.name),
        f"Rows of {table.path} that broke a rule, each with the rule, the column, the reason and the original record.",
        domain=table.domain,
        record_pii=table.pii,
    )


def all_tables() -> list[Table]:
    """The declared tables and their quarantine tables."""
    return [*TABLES, *(quarantine_table(t) for t in TABLES if t.quarantine)]


def landed() -> list[Table]:
    """The batch sources: Bronze tables landed as files."""
    return [t for t in TABLES if t.landing]


def table(path: str) -> Table:
    """The declaration of `layer/name`."""
    return next(t for t in all_tables() if t.path == path)


def with_declaration(spec: dg.AssetSpec) -> dg.AssetSpec:
    """What the catalog declares about the asset's table: its contract as the column schema the UI shows (types,
    nullability, rules, descriptions), a Silver table's column lineage from its contract, and its domain and `pii`
    as tags. A mart's copies (publish, serve) carry the mart's tags."""
    declared = {t.key: t for t in all_tables()}.get(spec.key)
    if declared is not None:
        columns = {"dagster/column_schema": column_schema(declared.contract)}
        if declared.column_lineage is not None:
            columns["dagster/column_lineage"] = declared.column_lineage
        return spec.merge_attributes(metadata=columns, tags=governance_tags(declared.domain, declared.pii))
    mart = marts().get(spec.key.path[-1]) if spec.key.path[0] in ("gold", "publish", "serve") else None
    return spec.merge_attributes(tags=governance_tags(mart.domain, mart.pii)) if mart else spec


def governance_tags(domain: str, pii: bool) -> dict[str, str]:
    return {"domain": domain, **({"pii": ""} if pii else {})}


def code_version(*code: object) -> str:
    """A version of the code that computes an asset: a digest of the source of `code` (modules, functions, the
    contract class). The UI marks an asset whose code changed since its last materialisation."""
    sources = []
    for obj in code:
        try:
            sources.append(inspect.getsource(obj))
        except (OSError, TypeError):  # a class made at run time (a quarantine contract): its name stands in
            sources.append(repr(obj))
    return hashlib.sha1("\0".join(sources).encode()).hexdigest()[:12]


# -- Gold ------------------------------------------------------------------------------------------------------

DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"


@dataclass(frozen=True)
class Mart:
    """A Gold mart as its dbt model declares it."""

    name: str
    keys: tuple[str, ...]  # `meta.keys`: the grain, what publish and serve MERGE on
    window: str | None  # `partition_by`: the days a run replaces; None: rebuilt in full, so served in full
    zorder: tuple[str, ...] = ()  # `meta.zorder`
    domain: str = ""  # `meta.domain`
    pii_columns: tuple[str, ...] = ()  # `meta.pii_columns`: columns with personal data (masked or not)
    subject: str | None = None  # `meta.subject`: the column naming the customer a row is about

    @property
    def path(self) -> str:
        return f"gold/{self.name}"

    @property
    def pii(self) -> bool:
        return bool(self.pii_columns)


def marts_of(manifest: Mapping) -> dict[str, Mart]:
    """The marts of a dbt manifest: the models whose `meta` names their keys."""
    models = sorted(
        (n for n in manifest["nodes"].values() if n["resource_type"] == "model" and "keys" in n["config"]["meta"]),
        key=lambda n: n["name"],
    )
    return {
        n["name"]: Mart(
            n["name"],
            tuple(n["config"]["meta"]["keys"]),
            n["config"].get("partition_by"),
            tuple(n["config"]["meta"].get("zorder", ())),
            n["config"]["meta"].get("domain", ""),
            tuple(n["config"]["meta"].get("pii_columns", ())),
            n["config"]["meta"].get("subject"),
        )
        for n in models
    }


@cache
def marts() -> dict[str, Mart]:
    """The Gold marts of the dbt project's manifest (parsed when the code location loads: defs/gold/dbt.py)."""
    return marts_of(json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text()))
