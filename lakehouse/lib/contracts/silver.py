"""Silver contracts: typed, conformed tables. Row rules in the assets quarantine what would break
these; the asset checks prove what was written keeps them.

Column lineage (the UI's column view): a column comes from the column of the same name in the Bronze table
the Silver table is built from (the catalog's `reads`). A column computed from other columns names them,
`metadata=computed_from(...)`: columns of that Bronze table, or `layer/table.column` of another upstream."""

from functools import cache

import pyspark.sql.types as T
from pandera.pyspark import DataFrameModel, Field

from lakehouse.lib.contracts.accepted import (
    CATEGORIES,
    CURRENCIES,
    PRIORITIES,
    TICKET_STATUSES,
)

STRING, TIMESTAMP, DATE = T.StringType(), T.TimestampType(), T.DateType()
ISO_CURRENCY = "^[A-Z]{3}$"


def computed_from(*columns: str) -> dict:
    """Field metadata naming the upstream columns a column is computed from (see the module's docstring)."""
    return {"from": list(columns)}


class Customers(DataFrameModel):
    """Customer history, SCD type 2."""

    customer_id: STRING = Field(nullable=False)
    updated_at: TIMESTAMP = Field(nullable=False, description="Time of this version in the CRM")
    email: STRING = Field(nullable=True, description="PII, masked on the way to Gold")
    phone: STRING = Field(nullable=True, description="PII, masked on the way to Gold")
    first_name: STRING = Field(nullable=True, description="PII, masked on the way to Gold")
    last_name: STRING = Field(nullable=True, description="PII, masked on the way to Gold")
    country: STRING = Field(nullable=True, str_matches="^[A-Z]{2}$")
    signup_date: DATE = Field(nullable=True)
    rescued_data: STRING = Field(alias="_rescued_data", nullable=True, description="Unknown CRM fields as JSON")
    source_file: STRING = Field(alias="_source_file", nullable=False)
    valid_from: TIMESTAMP = Field(
        nullable=False, description="This version holds from...", metadata=computed_from("updated_at")
    )
    valid_to: TIMESTAMP = Field(
        nullable=True, description="...until the next version (null: current)", metadata=computed_from("updated_at")
    )
    is_current: T.BooleanType() = Field(nullable=False, metadata=computed_from("updated_at"))

    class Config:
        name = "silver.customers"
        strict = True
        metadata = {"key": ["customer_id", "valid_from"], "window": None}


class Orders(DataFrameModel):
    """One row per order, latest version, with the amount in USD."""

    order_id: STRING = Field(nullable=False)
    customer_id: STRING = Field(nullable=False, description="References silver.customers")
    order_ts: TIMESTAMP = Field(nullable=False)
    order_date: DATE = Field(
        nullable=False, description="Business date (the partition)", metadata=computed_from("order_ts")
    )
    product_id: STRING = Field(nullable=True)
    category: STRING = Field(nullable=True, isin=list(CATEGORIES))
    quantity: T.IntegerType() = Field(nullable=True, in_range={"min_value": 1, "max_value": 1000})
    amount: T.DecimalType(18, 2) = Field(nullable=False, ge=0, description="In `currency`")
    currency: STRING = Field(nullable=False, isin=list(CURRENCIES))
    fx_rate_to_usd: T.DecimalType(18, 6) = Field(
        nullable=False,
        gt=0,
        description="silver.fx_rates on order_date",
        metadata=computed_from("silver/fx_rates.rate_to_usd"),
    )
    amount_usd: T.DecimalType(18, 2) = Field(
        nullable=False, ge=0, metadata=computed_from("amount", "silver/fx_rates.rate_to_usd")
    )
    status: STRING = Field(nullable=True, isin=["placed", "paid", "shipped", "delivered", "cancelled"])
    updated_at: TIMESTAMP = Field(nullable=True)
    rescued_data: STRING = Field(alias="_rescued_data", nullable=True, description="Unknown order columns as JSON")
    source_file: STRING = Field(alias="_source_file", nullable=False)

    class Config:
        name = "silver.orders"
        strict = True
        metadata = {"key": ["order_id"], "window": "order_date"}


class FxRates(DataFrameModel):
    """Daily rate to USD per currency."""

    rate_date: DATE = Field(nullable=False, metadata=computed_from("date"))
    currency: STRING = Field(nullable=False, str_matches=ISO_CURRENCY)
    rate_to_usd: T.DecimalType(18, 6) = Field(nullable=False, gt=0)
    ingested_at: TIMESTAMP = Field(alias="_ingested_at", nullable=False)
    source_file: STRING = Field(alias="_source_file", nullable=False)

    class Config:
        name = "silver.fx_rates"
        strict = True
        metadata = {"key": ["rate_date", "currency"], "window": "rate_date"}


class Sessions(DataFrameModel):
    """Clickstream sessions: a user's events with no gap over 30 minutes."""

    session_id: STRING = Field(nullable=False, metadata=computed_from("user_id", "event_ts"))
    user_id: STRING = Field(nullable=False)
    session_start: TIMESTAMP = Field(nullable=False, metadata=computed_from("event_ts"))
    session_end: TIMESTAMP = Field(nullable=False, metadata=computed_from("event_ts"))
    session_date: DATE = Field(
        nullable=False, description="Day the session started", metadata=computed_from("event_ts")
    )
    duration_seconds: T.LongType() = Field(nullable=False, ge=0, metadata=computed_from("event_ts"))
    page_count: T.IntegerType() = Field(
        nullable=False, ge=1, description="Events in the session", metadata=computed_from("event_id")
    )
    page_views: T.IntegerType() = Field(nullable=False, ge=0, metadata=computed_from("event_type"))
    is_bounce: T.BooleanType() = Field(
        nullable=False, description="A single-event session", metadata=computed_from("event_id")
    )
    last_event_received_at: TIMESTAMP = Field(nullable=True, metadata=computed_from("kafka_timestamp"))
    bronze_ingested_at: TIMESTAMP = Field(
        alias="_bronze_ingested_at", nullable=False, metadata=computed_from("_ingested_at")
    )

    class Config:
        name = "silver.sessions"
        strict = True
        metadata = {"key": ["session_id"], "window": "session_date"}


class SupportTickets(DataFrameModel):
    """Current state of every ticket from its CDC stream (soft deletes flagged)."""

    ticket_id: STRING = Field(nullable=False)
    seq: T.IntegerType() = Field(nullable=False, ge=1)
    op: STRING = Field(nullable=False, isin=["c", "u", "d"])
    customer_id: STRING = Field(nullable=True)
    status: STRING = Field(nullable=True, isin=list(TICKET_STATUSES))
    priority: STRING = Field(nullable=True, isin=list(PRIORITIES))
    subject: STRING = Field(nullable=True)
    rescued_data: STRING = Field(alias="_rescued_data", nullable=True)
    changed_at: TIMESTAMP = Field(nullable=True)
    is_deleted: T.BooleanType() = Field(nullable=False, metadata=computed_from("op"))
    kafka_epoch: T.IntegerType() = Field(nullable=False)
    kafka_partition: T.IntegerType() = Field(nullable=False)
    kafka_offset: T.LongType() = Field(nullable=False)
    kafka_timestamp: TIMESTAMP = Field(nullable=True)
    bronze_ingested_at: TIMESTAMP = Field(
        alias="_bronze_ingested_at",
        nullable=False,
        description="When Bronze landed the change applied (Silver's watermark)",
        metadata=computed_from("_ingested_at"),
    )

    class Config:
        name = "silver.support_tickets"
        strict = True
        metadata = {"key": ["ticket_id"], "window": None}


class Quarantine(DataFrameModel):
    """Rows a Silver table's rules refused: each with the first rule it broke, why, and its original record."""

    partition_date: DATE = Field(alias="_partition_date", nullable=False, description="The row's landing or ingest day")
    rule: STRING = Field(alias="_rule", nullable=False, description="The first rule the row broke")
    column: STRING = Field(alias="_column", nullable=False, description="The column the rule is about")
    reason: STRING = Field(alias="_reason", nullable=False, description="`<table>.<column> breaks <rule>: ...`")
    record: STRING = Field(alias="_record", nullable=False, description="The original record as JSON")
    source_file: STRING = Field(alias="_source_file", nullable=False, description="Landing file, or Kafka position")
    quarantined_at: TIMESTAMP = Field(alias="_quarantined_at", nullable=False)

    class Config:
        strict = True
        metadata = {"key": [], "id": ["_source_file", "_rule"], "window": "_partition_date"}


@cache
def quarantine_contract(table: str) -> type[Quarantine]:
    """The quarantine contract named for `silver.<table>_quarantine` (names appear in check failures)."""
    config = type("Config", (Quarantine.Config,), {"name": f"silver.{table}_quarantine"})
    return type(f"{table.title().replace('_', '')}Quarantine", (Quarantine,), {"Config": config})
