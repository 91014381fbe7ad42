"""Bronze contracts: the columns each source promises, all strings (types are untrusted on landing),
plus the ingestion columns every Bronze row carries. The landing reader takes its column lists from here."""

import pyspark.sql.types as T
from pandera.pyspark import DataFrameModel, Field

STRING = T.StringType()


# pandera skips attributes that start with "_", so the ingestion columns are declared through aliases.
class BronzeRow(DataFrameModel):
    """Ingestion columns: where a row came from, when, and what did not fit the contract."""

    rescued_data: STRING = Field(
        alias="_rescued_data", nullable=True, description="Unknown source columns as JSON (schema drift)"
    )
    source_file: STRING = Field(alias="_source_file", nullable=False, description="Landing file the row was read from")
    partition_date: T.DateType() = Field(
        alias="_partition_date", nullable=False, description="Landing day (the partition)"
    )
    ingested_at: T.TimestampType() = Field(
        alias="_ingested_at", nullable=False, description="When the run read the row"
    )
    run_id: STRING = Field(alias="_run_id", nullable=False, description="Dagster run that ingested the row")

    class Config:
        strict = True  # a column neither declared nor rescued is drift the reader failed to catch


class CrmCustomers(BronzeRow):
    customer_id: STRING = Field(nullable=True, description="CRM customer id")
    email: STRING = Field(nullable=True, description="PII")
    phone: STRING = Field(nullable=True, description="PII")
    first_name: STRING = Field(nullable=True, description="PII")
    last_name: STRING = Field(nullable=True, description="PII")
    country: STRING = Field(nullable=True, description="ISO 3166 country code")
    signup_date: STRING = Field(nullable=True, description="YYYY-MM-DD")
    updated_at: STRING = Field(nullable=True, description="ISO-8601 time of this version (watermark)")

    class Config:
        name = "bronze.crm_customers"
        metadata = {"key": [], "id": ["_source_file", "customer_id"], "window": "_partition_date"}


class Orders(BronzeRow):
    order_id: STRING = Field(nullable=True)
    customer_id: STRING = Field(nullable=True)
    order_ts: STRING = Field(nullable=True, description="ISO-8601 order time")
    product_id: STRING = Field(nullable=True)
    category: STRING = Field(nullable=True)
    quantity: STRING = Field(nullable=True)
    amount: STRING = Field(nullable=True, description="Decimal amount in `currency`")
    currency: STRING = Field(nullable=True)
    status: STRING = Field(nullable=True)
    updated_at: STRING = Field(nullable=True, description="ISO-8601 time of this version of the order")

    class Config:
        name = "bronze.orders"
        metadata = {"key": [], "id": ["_source_file", "order_id"], "window": "_partition_date"}


class FxRates(BronzeRow):
    date: STRING = Field(nullable=True, description="YYYY-MM-DD")
    currency: STRING = Field(nullable=True)
    rate_to_usd: STRING = Field(nullable=True)

    class Config:
        name = "bronze.fx_rates"
        metadata = {"key": [], "id": ["_source_file", "currency"], "window": "_partition_date"}


def source_columns(model: type[BronzeRow]) -> list[str]:
    """The columns the source itself sends (the contract less the ingestion columns)."""
    ingestion = set(BronzeRow.to_schema().columns)
    return [c for c in model.to_schema().columns if c not in ingestion]


class KafkaRow(DataFrameModel):
    """What every streaming Bronze row carries: its raw message, its place in Kafka, and when it landed."""

    rescued_data: STRING = Field(alias="_rescued_data", nullable=True, description="Unknown fields as JSON")
    raw: STRING = Field(alias="_raw", nullable=True, description="The message payload as received")
    parse_error: STRING = Field(alias="_parse_error", nullable=True, description="Why the payload is unusable")
    kafka_topic: STRING = Field(nullable=False)
    kafka_topic_id: STRING = Field(nullable=True, description="The topic's id: a recreated topic gets a new one")
    kafka_epoch: T.IntegerType() = Field(
        nullable=False, ge=0, description="Bumped by `lakehouse kafka-epoch` after a reset"
    )
    kafka_partition: T.IntegerType() = Field(nullable=False, ge=0)
    kafka_offset: T.LongType() = Field(nullable=False, ge=0)
    kafka_key: STRING = Field(nullable=True)
    kafka_timestamp: T.TimestampType() = Field(nullable=True, description="Produce time set by Kafka")
    ingested_at: T.TimestampType() = Field(alias="_ingested_at", nullable=False)
    ingest_date: T.DateType() = Field(alias="_ingest_date", nullable=False, description="Ingest day (the partition)")
    run_id: STRING = Field(alias="_run_id", nullable=False)

    class Config:
        strict = True


class ClickstreamEvents(KafkaRow):
    event_id: STRING = Field(nullable=True)
    user_id: STRING = Field(nullable=True, description="Customer id or anonymous visitor id")
    event_type: STRING = Field(nullable=True)
    page: STRING = Field(nullable=True)
    product_id: STRING = Field(nullable=True)
    event_ts: STRING = Field(nullable=True, description="ISO-8601 event time (may be late)")

    class Config:
        name = "bronze.clickstream_events"
        # Kafka's (epoch, partition, offset) is the key: a replayed batch must not land twice.
        metadata = {"key": ["kafka_topic", "kafka_epoch", "kafka_partition", "kafka_offset"], "window": "_ingest_date"}


class SupportTicketChanges(KafkaRow):
    op: STRING = Field(nullable=True, description="c / u / d")
    ticket_id: STRING = Field(nullable=True)
    seq: STRING = Field(nullable=True, description="Per-ticket change sequence number")
    customer_id: STRING = Field(nullable=True)
    status: STRING = Field(nullable=True)
    priority: STRING = Field(nullable=True)
    subject: STRING = Field(nullable=True)
    changed_at: STRING = Field(nullable=True)

    class Config:
        name = "bronze.support_ticket_changes"
        metadata = {"key": ["kafka_topic", "kafka_epoch", "kafka_partition", "kafka_offset"], "window": "_ingest_date"}
