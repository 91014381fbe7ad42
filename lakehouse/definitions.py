"""The `lakehouse` code location: Bronze -> Silver (-> Gold) assets, the resources they share and the
jobs users launch. Load it with `dagster dev -w workspace.yaml` or `-m lakehouse.definitions`."""

import dagster as dg

from lakehouse import partitions, policies, settings
from lakehouse.bronze import batch as bronze_batch
from lakehouse.bronze import streaming as bronze_streaming
from lakehouse.checks.quality import quality_checks
from lakehouse.contracts import with_contract_schema
from lakehouse.gold import dbt as gold
from lakehouse.maintenance import MAINTENANCE_SCHEDULES, maintenance
from lakehouse.publish.snowflake import PUBLISH_ASSETS, snowflake_resource
from lakehouse.resources.kafka import KafkaResource
from lakehouse.resources.lake import DeltaLake
from lakehouse.resources.spark import SparkEngine
from lakehouse.sensors import SENSORS as KAFKA_SENSORS
from lakehouse.sensors.kafka import streaming_automation_sensor
from lakehouse.sensors.alerts import check_failure_alerts, run_failure_alerts
from lakehouse.sensors.landing import landing_files_sensor
from lakehouse.serve.assets import SERVE_ASSETS, SERVE_CHECKS
from lakehouse.serve.store import ServingDatabase, serving_dsn
from lakehouse.silver import customers, fx_rates, orders, sessions, support_tickets

BATCH_ASSETS = [
    *dg.load_assets_from_modules([bronze_batch]),
    customers.customers,
    fx_rates.fx_rates,
    orders.orders,
]

# Kafka topics -> Bronze micro-batches (requested by the Kafka sensors) -> Silver (declarative automation).
STREAMING_ASSETS = [
    bronze_streaming.clickstream_events,
    bronze_streaming.support_ticket_changes,
    sessions.sessions,
    support_tickets.support_tickets,
]

# The dbt models (dbt_project/), one asset each in group `gold`, with dbt tests as asset checks.
GOLD_ASSETS = [gold.gold_dbt]

# Gold served on: published to Snowflake (group `publish`) and synced to the Postgres serving store
# behind the read API (group `serve`, with a matches-Gold check per table).
SERVING_ASSETS = [*PUBLISH_ASSETS, *SERVE_ASSETS]

# Everything the batch sources feed, for one partition window at a time (one run for a whole range).
batch_job = dg.define_asset_job(
    "batch",
    selection=dg.AssetSelection.assets(*BATCH_ASSETS, *GOLD_ASSETS),
    partitions_def=partitions.daily,
    description="Bronze, Silver and Gold (dbt) for the batch sources (CRM, orders, FX) over a partition window.",
)

# Contracts, drift, volume, quarantine share, referential integrity and SCD2 checks for Bronze and Silver.
QUALITY_CHECKS = quality_checks()

defs = dg.Definitions(
    assets=[*BATCH_ASSETS, *STREAMING_ASSETS, *GOLD_ASSETS, *SERVING_ASSETS],
    asset_checks=[*QUALITY_CHECKS, *SERVE_CHECKS],
    sensors=[*KAFKA_SENSORS, policies.automation_sensor(streaming_automation_sensor.asset_selection),
             landing_files_sensor, run_failure_alerts, check_failure_alerts],
    jobs=[batch_job, maintenance],  # maintenance: delta-rs compaction, z-order, vacuum (nightly/weekly)
    schedules=MAINTENANCE_SCHEDULES,
    # Steps share the run's process and so its Spark session: a step per process would start an
    # engine per step, and on one machine the engine parallelises within a step anyway.
    executor=dg.in_process_executor,
    resources={
        "spark": SparkEngine(remote=settings.spark_remote()),
        "lake": DeltaLake(root=settings.lake_root()),
        "kafka": KafkaResource(),  # LAKEHOUSE_KAFKA_BOOTSTRAP, else 127.0.0.1:9092
        "dbt": gold.dbt_resource(),
        "snowflake": snowflake_resource(),  # SNOWFLAKE_ACCOUNT/USER/PASSWORD/DATABASE/SCHEMA/WAREHOUSE
        "serving": ServingDatabase(dsn=serving_dsn()),  # LAKEHOUSE_SERVING_DSN
    },
    # Every asset gets its contract as column schema, and its layer's freshness SLA and automation.
).map_resolved_asset_specs(func=lambda spec: policies.with_policies(with_contract_schema(spec)))
