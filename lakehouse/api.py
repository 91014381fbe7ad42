"""The read API over the Postgres serving store (`lakehouse serve`; OpenAPI docs at /docs).

- Async end to end: one asyncpg connection pool per process, one query per request (no N+1), rows
  serialised to JSON by Postgres itself (`row_to_json`), so the hot path does little Python work.
- API keys with per-key scopes, sent as `X-API-Key`. Keys come from LAKEHOUSE_API_KEYS (JSON) or the
  JSON file named by LAKEHOUSE_API_KEYS_FILE, each `{"name", "key" | "sha256", "scopes"}`. Scopes:
  `customers:read`, `revenue:read`, `kpis:read`, and `pii` for the customer contact fields (masked
  email and phone, name initials); a key without `pii` gets customers without them, and asking for
  them explicitly (`?include=contact`) is a 403. A missing or unknown key is a 401.
- Bad parameters are 4xx with a message saying what is wrong: 422 for values of the wrong type or
  format (FastAPI's validation errors), 400 for an unknown query parameter or a date range that is
  reversed or too long, 404 for an unknown customer.
- `GET /customers` pages by keyset: `next_cursor` is the last customer id of the page, and the next page
  starts after it, so pages never skip or repeat a customer even while rows change.
"""

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel

from lakehouse import settings

SCOPES = {
    "customers:read": "read customer profiles and lists",
    "revenue:read": "read daily revenue",
    "kpis:read": "read daily KPIs",
    "pii": "read customer contact fields (masked email and phone, name initials), and PII columns in previews",
    "catalog:read": "list the lake's tables, their schemas, history and freshness, and preview rows",
}
SEGMENTS = ("champions", "loyal", "new_customers", "at_risk", "hibernating", "needs_attention", "no_orders")
MAX_DAYS = 366
MAX_LIMIT = 500

CONTACT_COLUMNS = ["name_initials", "email_masked", "phone_masked"]
CUSTOMER_COLUMNS = [
    "customer_id",
    "country",
    "signup_date",
    "segment",
    "rfm_score",
    "orders_count",
    "lifetime_value_usd",
    "first_order_at",
    "last_order_at",
    "sessions_count",
    "last_session_at",
    "tickets_open",
    "tickets_closed",
]


# -- API keys -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    name: str
    scopes: frozenset[str]


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_keys(config: str | list | dict) -> dict[str, ApiKey]:
    """Keys by the sha256 of the key: `[{"name", "key" | "sha256", "scopes": [...]}]` (or `{"keys": [...]}`)."""
    entries = json.loads(config) if isinstance(config, str) else config
    if isinstance(entries, dict):
        entries = entries.get("keys", [])
    keys = {}
    for entry in entries:
        unknown = set(entry.get("scopes", [])) - set(SCOPES)
        if unknown:
            raise ValueError(
                f"API key {entry.get('name')!r}: unknown scopes {sorted(unknown)} (known: {sorted(SCOPES)})"
            )
        digest = entry.get("sha256") or key_hash(entry["key"])
        keys[digest.lower()] = ApiKey(entry.get("name", digest[:8]), frozenset(entry.get("scopes", [])))
    return keys


def keys_from_env() -> dict[str, ApiKey]:
    """LAKEHOUSE_API_KEYS, else LAKEHOUSE_API_KEYS_FILE (settings.api_keys_config); none if neither is set."""
    config = settings.api_keys_config()
    return parse_keys(config) if config else {}


api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key; its scopes decide what it reads."
)


def require(scope: str) -> Callable:
    async def authorise(request: Request, key: Annotated[str | None, Depends(api_key_header)]) -> ApiKey:
        if not key:
            raise HTTPException(
                401, "missing API key: send it in the X-API-Key header", headers={"WWW-Authenticate": "ApiKey"}
            )
        found = request.app.state.keys.get(key_hash(key))
        if found is None:
            raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "ApiKey"})
        if scope not in found.scopes:
            raise HTTPException(403, f"API key {found.name!r} lacks the scope {scope!r} needed here")
        reject_unknown_parameters(request)
        return found

    return authorise


# -- Response shapes (for the OpenAPI document; rows are serialised by Postgres) ---------------------------


class Error(BaseModel):
    detail: str


class Customer(BaseModel):
    customer_id: str
    country: str | None
    signup_date: date | None
    segment: str | None
    rfm_score: str | None
    orders_count: int | None
    lifetime_value_usd: float | None
    first_order_at: datetime | None
    last_order_at: datetime | None
    sessions_count: int | None
    last_session_at: datetime | None
    tickets_open: int | None
    tickets_closed: int | None
    name_initials: str | None = None
    email_masked: str | None = None
    phone_masked: str | None = None


class CustomerPage(BaseModel):
    items: list[Customer]
    next_cursor: str | None


class RevenueDay(BaseModel):
    order_date: date
    country: str
    orders: int
    units: int | None
    revenue_usd: float | None


class RevenueDays(BaseModel):
    items: list[RevenueDay]


class KpiDay(BaseModel):
    date_day: date
    active_users: int | None
    new_users: int | None
    sessions: int | None
    bounce_rate: float | None
    avg_session_length_seconds: float | None
    orders: int | None
    buyers: int | None
    revenue_usd: float | None
    avg_order_value_usd: float | None


class KpiDays(BaseModel):
    items: list[KpiDay]


class Health(BaseModel):
    status: str
    database: str


def errors(*codes: int) -> dict:
    return {code: {"model": Error} for code in codes}


def pool(request: Request):
    """The serving database's connection pool; 503 when the API started without reaching the database."""
    if request.app.state.pool is None:
        raise HTTPException(503, f"serving database unavailable: {request.app.state.pool_error}")
    return request.app.state.pool


def json_response(body: str) -> Response:
    return Response(body, media_type="application/json")


# -- Queries ---------------------------------------------------------------------------------------------------


def customer_select(contact: bool) -> str:
    return ", ".join(CUSTOMER_COLUMNS + (CONTACT_COLUMNS if contact else []))


def reject_unknown_parameters(request: Request) -> None:
    """A misspelt filter (`?segmnt=`) is a 400, not silently ignored. (Called from the auth dependency
    rather than being a dependency of its own: every dependency costs time on the hot path.)"""
    if not request.scope.get("query_string"):
        return
    route = request.scope.get("route")
    if route is None:
        return
    known = {p.alias for p in route.dependant.query_params} | {
        p.alias for d in route.dependant.dependencies for p in d.query_params
    }
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        accepted = ", ".join(sorted(known)) or "none"
        raise HTTPException(400, f"unknown query parameter(s) {', '.join(map(repr, unknown))}; accepted: {accepted}")


def date_range(start: date, end: date) -> None:
    if end < start:
        raise HTTPException(400, f"`to` ({end}) is before `from` ({start})")
    if (end - start).days >= MAX_DAYS:
        raise HTTPException(400, f"date range too long: at most {MAX_DAYS} days per request")


# -- The app ------------------------------------------------------------------------------------------------------

ID_PATTERN = r"^[A-Za-z0-9_-]+$"
CustomerId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN, description="CRM customer id")]
FromDate = Annotated[date, Query(alias="from", description="first day, YYYY-MM-DD (inclusive)")]
ToDate = Annotated[date, Query(alias="to", description="last day, YYYY-MM-DD (inclusive)")]
Country = Annotated[str | None, Query(pattern=r"^[A-Z]{2}$|^unknown$", description="ISO 3166 alpha-2 code")]


router = APIRouter()


@router.get("/health", response_model=Health, responses=errors(400, 503), tags=["ops"])
async def health(request: Request) -> Response:
    """Liveness and database reachability (no key needed)."""
    reject_unknown_parameters(request)
    try:
        await pool(request).fetchval("SELECT 1")
    except HTTPException:
        raise
    except Exception as error:  # noqa: BLE001 - any database failure means unavailable
        raise HTTPException(503, f"serving database unavailable: {type(error).__name__}") from None
    return json_response('{"status":"ok","database":"ok"}')


@router.get(
    "/customers/{customer_id}", response_model=Customer, responses=errors(400, 401, 403, 404), tags=["customers"]
)
async def get_customer(
    request: Request,
    customer_id: CustomerId,
    key: Annotated[ApiKey, Depends(require("customers:read"))],
    include: Annotated[Literal["contact"] | None, Query(description="`contact` needs the pii scope")] = None,
) -> Response:
    """One customer's profile. Contact fields are included for keys with the `pii` scope."""
    if include == "contact" and "pii" not in key.scopes:
        raise HTTPException(403, f"API key {key.name!r} lacks the scope 'pii' needed for include=contact")
    contact = "pii" in key.scopes
    body = await pool(request).fetchval(
        f"SELECT row_to_json(c)::text FROM (SELECT {customer_select(contact)} FROM customer_360 "
        "WHERE customer_id = $1) c",
        customer_id,
    )
    if body is None:
        raise HTTPException(404, f"customer {customer_id!r} not found")
    return json_response(body)


@router.get("/customers", response_model=CustomerPage, responses=errors(400, 401, 403), tags=["customers"])
async def list_customers(
    request: Request,
    key: Annotated[ApiKey, Depends(require("customers:read"))],
    segment: Annotated[Literal[SEGMENTS] | None, Query(description="RFM segment")] = None,  # type: ignore[valid-type]
    country: Country = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")] = 50,
    cursor: Annotated[
        str | None,
        Query(min_length=1, max_length=64, pattern=ID_PATTERN, description="next_cursor of the previous page"),
    ] = None,
) -> Response:
    """Customers ordered by id, filtered by segment and/or country, a page at a time (keyset pagination:
    pages never skip or repeat a customer, however deep)."""
    conditions, args = [], []
    for column, value in (("segment", segment), ("country", country)):
        if value is not None:
            args.append(value)
            conditions.append(f"{column} = ${len(args)}")
    if cursor is not None:
        args.append(cursor)
        conditions.append(f"customer_id > ${len(args)}")
    args.append(limit + 1)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = await pool(request).fetch(
        f"SELECT c.customer_id, row_to_json(c)::text AS body FROM (SELECT {customer_select('pii' in key.scopes)} "
        f"FROM customer_360 {where} ORDER BY customer_id LIMIT ${len(args)}) c ORDER BY c.customer_id",
        *args,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = json.dumps(rows[-1]["customer_id"]) if more else "null"
    return json_response('{"items":[' + ",".join(r["body"] for r in rows) + '],"next_cursor":' + next_cursor + "}")


@router.get("/revenue/daily", response_model=RevenueDays, responses=errors(400, 401, 403), tags=["revenue"])
async def revenue_daily(
    request: Request,
    _: Annotated[ApiKey, Depends(require("revenue:read"))],
    start: FromDate,
    end: ToDate,
    country: Country = None,
) -> Response:
    """USD revenue, orders and units per day and customer country, over [from, to] (at most 366 days)."""
    date_range(start, end)
    args: list = [start, end]
    where = "order_date BETWEEN $1 AND $2"
    if country is not None:
        args.append(country)
        where += " AND country = $3"
    body = await pool(request).fetchval(
        "SELECT '[' || coalesce(string_agg(row_to_json(r)::text, ',' ORDER BY r.order_date, r.country), '') "
        "|| ']' FROM ("
        "SELECT order_date, country, sum(orders)::bigint AS orders, sum(units)::bigint AS units, "
        f"sum(revenue_usd) AS revenue_usd FROM revenue_daily WHERE {where} GROUP BY order_date, country) r",
        *args,
    )
    return json_response('{"items":' + body + "}")


@router.get("/kpis/daily", response_model=KpiDays, responses=errors(400, 401, 403), tags=["kpis"])
async def kpis_daily(
    request: Request,
    _: Annotated[ApiKey, Depends(require("kpis:read"))],
    start: FromDate,
    end: ToDate,
) -> Response:
    """Active and new users, sessions, bounce rate, session length, orders, buyers and revenue per day."""
    date_range(start, end)
    body = await pool(request).fetchval(
        "SELECT '[' || coalesce(string_agg(row_to_json(k)::text, ',' ORDER BY k.date_day), '') || ']' "
        "FROM (SELECT * FROM daily_kpis "
        "WHERE date_day BETWEEN $1 AND $2) k",
        start,
        end,
    )
    return json_response('{"items":' + body + "}")


def create_app(dsn: str | None = None, keys: dict[str, ApiKey] | None = None, pool_size: int = 10) -> FastAPI:
    """The API over the serving database at `dsn` (default LAKEHOUSE_SERVING_DSN), with these keys."""
    dsn = dsn or settings.serving_dsn()
    keys = keys_from_env() if keys is None else keys

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import asyncpg

        try:
            app.state.pool = await asyncpg.create_pool(
                dsn,
                min_size=2,
                max_size=pool_size,
                server_settings={"timezone": "UTC", "application_name": "lakehouse-api"},
            )
        except (OSError, asyncpg.PostgresError) as error:  # the catalog routes read the lake, not the database
            app.state.pool, app.state.pool_error = None, f"{type(error).__name__}: {error}"
        try:
            yield
        finally:
            if app.state.pool is not None:
                await app.state.pool.close()

    app = FastAPI(
        title="Lakehouse serving API",
        version="1.0.0",
        description="Customer-360, daily revenue and daily KPIs from the lakehouse's Gold marts, served from Postgres.",
        lifespan=lifespan,
    )
    app.state.keys = keys
    app.include_router(router)
    from lakehouse import catalog_api  # its routes use this module's key check

    app.include_router(catalog_api.router)
    return app


def app_from_env() -> FastAPI:
    """The factory `lakehouse serve` runs: DSN and keys from the environment."""
    keys = keys_from_env()
    if not keys:
        raise SystemExit("no API keys: set LAKEHOUSE_API_KEYS (JSON) or LAKEHOUSE_API_KEYS_FILE (see docs/serving.md)")
    return create_app(keys=keys)
