"""The resources every asset shares: the Spark engine, the Delta lake, Kafka, dbt, Snowflake and the
Postgres serving store, configured from lakehouse.settings."""

import dagster as dg

from lakehouse import settings
from lakehouse.defs.gold.dbt import dbt_resource
from lakehouse.defs.publish.snowflake import snowflake_resource
from lakehouse.lib.kafka import KafkaResource
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.serving import ServingDatabase
from lakehouse.lib.spark import SparkEngine


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={
        "spark": SparkEngine(remote=settings.spark_remote()),
        "lake": DeltaLake(root=settings.lake_root()),
        "kafka": KafkaResource(),  # LAKEHOUSE_KAFKA_BOOTSTRAP, else 127.0.0.1:9092
        "dbt": dbt_resource(),
        "snowflake": snowflake_resource(),  # SNOWFLAKE_ACCOUNT/USER/PASSWORD/DATABASE/SCHEMA/WAREHOUSE
        "serving": ServingDatabase(dsn=settings.serving_dsn()),  # LAKEHOUSE_SERVING_DSN
    })
