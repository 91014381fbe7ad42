"""Silver contracts: typed, conformed tables. Row rules in the assets quarantine what would break
these; the asset checks prove what was written keeps them."""

import pyspark.sql.types as T
from pandera.pyspark import DataFrameModel, Field

from lakehouse.sources.generator import CATEGORIES, CURRENCIES

STRING, TIMESTAMP, DATE = T.StringType(), T.TimestampType(), T.DateType()
ISO_CURRENCY = "^[A-Z]{3}$"


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
    valid_from: TIMESTAMP = Field(nullable=False, description="This version holds from...")
    valid_to: TIMESTAMP = Field(nullable=True, description="...until the next version (null: current)")
    is_current: T.BooleanType() = Field(nullable=False)

    class Config:
        name = "silver.customers"
        strict = True
        metadata = {"key": ["customer_id", "valid_from"], "window": None}


class Orders(DataFrameModel):
    """One row per order, latest version, with the amount in USD."""

    order_id: STRING = Field(nullable=False)
    customer_id: STRING = Field(nullable=False, description="References silver.customers")
    order_ts: TIMESTAMP = Field(nullable=False)
    order_date: DATE = Field(nullable=False, description="Business date (the partition)")
    product_id: STRING = Field(nullable=True)
    category: STRING = Field(nullable=True, isin=CATEGORIES)
    quantity: T.IntegerType() = Field(nullable=True, in_range={"min_value": 1, "max_value": 1000})
    amount: T.DecimalType(18, 2) = Field(nullable=False, ge=0, description="In `currency`")
    currency: STRING = Field(nullable=False, isin=list(CURRENCIES))
    fx_rate_to_usd: T.DecimalType(18, 6) = Field(nullable=False, gt=0, description="silver.fx_rates on order_date")
    amount_usd: T.DecimalType(18, 2) = Field(nullable=False, ge=0)
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

    rate_date: DATE = Field(nullable=False)
    currency: STRING = Field(nullable=False, str_matches=ISO_CURRENCY)
    rate_to_usd: T.DecimalType(18, 6) = Field(nullable=False, gt=0)
    ingested_at: TIMESTAMP = Field(alias="_ingested_at", nullable=False)
    source_file: STRING = Field(alias="_source_file", nullable=False)

    class Config:
        name = "silver.fx_rates"
        strict = True
        metadata = {"key": ["rate_date", "currency"], "window": "rate_date"}
