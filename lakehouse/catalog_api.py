"""The data catalog on the read API: the lake's tables, read straight from Delta with delta-rs (no engine, no
serving database), described by lakehouse.catalog (contracts, domains, personal data) and the Gold marts'
dbt declarations.

- `GET /tables`: every table with its layer, rows, Delta version and last update.
- `GET /tables/{layer}/{name}`: its columns (the contract's, or Delta's for a mart), owners, domain, Delta
  history (version, operation, rows written) and freshness against its layer's SLA.
- `GET /tables/{layer}/{name}/preview?limit=`: sample rows, at most MAX_PREVIEW; columns that hold personal
  data are withheld (and named) unless the key has the `pii` scope.

A key needs the `catalog:read` scope, as the other routes need theirs."""

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel

from lakehouse import catalog, policies, settings
from lakehouse.api import ApiKey, errors, require
from lakehouse.lib.contracts.evaluate import column_schema
from lakehouse.lib.lake import LAYERS, DeltaLake, table_row_count

MAX_PREVIEW = 100
HISTORY = 20  # the newest commits shown
NAME = r"^[a-z][a-z0-9_]{0,62}$"
Layer = Annotated[str, Path(pattern="^(bronze|silver|gold)$", description="bronze, silver or gold")]
Name = Annotated[str, Path(pattern=NAME, description="table name")]
CatalogKey = Annotated[ApiKey, Depends(require("catalog:read"))]  # the API's key check (api.py mounts this router)


class Table(BaseModel):
    layer: str
    name: str
    rows: int
    version: int
    last_updated: datetime | None


class Tables(BaseModel):
    items: list[Table]


class Column(BaseModel):
    name: str
    type: str
    nullable: bool
    description: str | None
    pii: bool


class Commit(BaseModel):
    version: int
    timestamp: datetime | None
    operation: str
    rows_written: int | None


class Freshness(BaseModel):
    age_seconds: float | None
    sla_seconds: float | None
    fresh: bool | None


class TableDetail(Table):
    description: str
    domain: str
    pii: bool
    owners: list[str]
    columns: list[Column]
    history: list[Commit]
    freshness: Freshness


class Preview(BaseModel):
    columns: list[str]
    withheld: list[str]
    rows: list[dict[str, Any]]


router = APIRouter(tags=["catalog"])


def lake() -> DeltaLake:
    return DeltaLake(root=settings.lake_root())


def declared(layer: str, name: str) -> dict:
    """What lakehouse.catalog (or a mart's dbt model) declares: description, domain, pii, PII columns, contract."""
    table = next((t for t in catalog.all_tables() if t.path == f"{layer}/{name}"), None)
    if table:
        return {
            "description": table.description,
            "domain": table.domain,
            "pii": table.pii,
            "pii_columns": list(table.pii_columns),
            "contract": table.contract,
        }
    mart = catalog.marts().get(name) if layer == "gold" else None
    if mart:
        return {
            "description": "",
            "domain": mart.domain,
            "pii": mart.pii,
            "pii_columns": list(mart.pii_columns),
            "contract": None,
        }
    return {"description": "", "domain": "", "pii": False, "pii_columns": [], "contract": None}


def opened(layer: str, name: str):
    the_lake = lake()
    if layer not in LAYERS or not the_lake.exists(layer, name):
        raise HTTPException(404, f"no table {layer}/{name} in the lake")
    return the_lake.delta_table(layer, name)


def commit_time(commit: dict) -> datetime | None:
    stamp = commit.get("timestamp")
    return datetime.fromtimestamp(stamp / 1000, UTC) if stamp else None


def summary(layer: str, name: str, dt) -> dict:
    return {
        "layer": layer,
        "name": name,
        "rows": table_row_count(dt),
        "version": dt.version(),
        "last_updated": commit_time(dt.history(1)[0]),
    }


def freshness(layer: str, last_updated: datetime | None) -> dict:
    policy = policies.FRESHNESS.get(layer)
    sla = policy.fail_window.to_timedelta().total_seconds() if policy else None
    age = (datetime.now(UTC) - last_updated).total_seconds() if last_updated else None
    return {"age_seconds": age, "sla_seconds": sla, "fresh": None if age is None or sla is None else age <= sla}


def columns(dt, facts: dict) -> list[dict]:
    """The contract's columns as the UI shows them (column_schema), or Delta's for a table without a contract."""
    if facts["contract"] is not None:
        found = [
            (c.name, c.type, c.constraints.nullable, c.description) for c in column_schema(facts["contract"]).columns
        ]
    else:
        found = [(f.name, str(f.type), f.nullable, None) for f in dt.schema().fields]
    return [
        {"name": name, "type": kind, "nullable": nullable, "description": about, "pii": name in facts["pii_columns"]}
        for name, kind, nullable, about in found
    ]


def history(dt) -> list[dict]:
    return [
        {
            "version": c.get("version", 0),
            "timestamp": commit_time(c),
            "operation": c.get("operation", ""),
            "rows_written": int(m["numOutputRows"])
            if "numOutputRows" in (m := c.get("operationMetrics") or {})
            else None,
        }
        for c in dt.history(HISTORY)
    ]


@router.get("/tables", response_model=Tables, responses=errors(400, 401, 403))
def list_tables(key: CatalogKey) -> Response:
    """Every table of the lake: layer, rows, Delta version, last update."""
    the_lake = lake()
    items = [
        summary(layer, name, the_lake.delta_table(layer, name))
        for layer in LAYERS
        for name in the_lake.table_names(layer)
    ]
    return Response(Tables(items=items).model_dump_json(), media_type="application/json")


@router.get("/tables/{layer}/{name}", response_model=TableDetail, responses=errors(400, 401, 403, 404))
def get_table(layer: Layer, name: Name, key: CatalogKey) -> Response:
    """A table's columns (from its contract), owners, domain, Delta history and freshness against its SLA."""
    dt = opened(layer, name)
    facts, head = declared(layer, name), summary(layer, name, dt)
    detail = TableDetail(
        **head,
        description=facts["description"],
        domain=facts["domain"],
        pii=facts["pii"],
        owners=policies.OWNERS.get(layer, []),
        columns=columns(dt, facts),
        history=history(dt),
        freshness=freshness(layer, head["last_updated"]),
    )
    return Response(detail.model_dump_json(), media_type="application/json")


@router.get("/tables/{layer}/{name}/preview", response_model=Preview, responses=errors(400, 401, 403, 404))
def preview(
    layer: Layer,
    name: Name,
    key: CatalogKey,
    limit: Annotated[int, Query(ge=1, le=MAX_PREVIEW, description=f"rows, at most {MAX_PREVIEW}")] = 10,
) -> Response:
    """Sample rows. Columns with personal data are withheld unless the key has the `pii` scope."""
    dt = opened(layer, name)
    names = [f.name for f in dt.schema().fields]
    withheld = [] if "pii" in key.scopes else [c for c in declared(layer, name)["pii_columns"] if c in names]
    shown = [c for c in names if c not in withheld]
    rows = dt.to_pyarrow_dataset().head(limit, columns=shown).to_pylist()
    body = json.dumps({"columns": shown, "withheld": withheld, "rows": rows}, default=str)
    return Response(body, media_type="application/json")
