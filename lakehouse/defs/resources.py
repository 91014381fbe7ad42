"""The resources every asset shares: the Spark engine, the Delta lake, Kafka, dbt, Snowflake and the
Postgres serving store, configured from lakehouse.settings. Values that may hold a secret (the serving
DSN, a Spark Connect URL with a token, the Snowflake credentials) are dg.EnvVar when set: Dagster
resolves them when a run starts, and the UI shows the variable's name instead of its value."""

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
    return dg.Definitions(
        resources={
            # LAKEHOUSE_SPARK_REMOTE, else the embedded Sail engine
            "spark": SparkEngine(
                remote=dg.EnvVar(settings.SPARK_REMOTE)
                if settings.spark_remote_is_set()
                else settings.DEFAULT_SPARK_REMOTE
            ),
            "lake": DeltaLake(root=settings.lake_root()),
            "kafka": KafkaResource(),  # LAKEHOUSE_KAFKA_BOOTSTRAP, else 127.0.0.1:9092
            "dbt": dbt_resource(),
            "snowflake": snowflake_resource(),  # SNOWFLAKE_ACCOUNT/USER/PASSWORD/DATABASE/SCHEMA/WAREHOUSE
            # LAKEHOUSE_SERVING_DSN, else the local `lakehouse_serving` database
            "serving": ServingDatabase(
                dsn=dg.EnvVar(settings.SERVING_DSN) if settings.serving_dsn_is_set() else settings.DEFAULT_SERVING_DSN
            ),
        }
    )
