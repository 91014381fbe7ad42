"""Where the platform keeps its state. Everything is read from the environment so the
same code location runs on a laptop, in CI and in a deployment without edits."""

import os
from pathlib import Path


def home() -> Path:
    """LAKEHOUSE_HOME holds landing files, the lake and the Dagster instance."""
    return Path(os.environ.get("LAKEHOUSE_HOME", ".lakehouse")).resolve()


def landing_dir() -> Path:
    return home() / "landing"


def lake_root() -> str:
    """A local folder by default; LAKEHOUSE_LAKE_ROOT may point elsewhere (s3://bucket/prefix)."""
    return os.environ.get("LAKEHOUSE_LAKE_ROOT") or str(home() / "lake")


def lake_storage_options(root: str | None = None) -> dict[str, str]:
    """delta-rs storage options for the lake root, from the standard AWS variables (the same ones boto3,
    dagster-aws and Sail read): AWS_ENDPOINT_URL (MinIO, moto, ...), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN, AWS_REGION. Empty for a local root; unset variables are left to delta-rs's own
    credential chain (instance profile, IRSA, ~/.aws)."""
    if not (root or lake_root()).startswith(("s3://", "s3a://")):
        return {}
    names = ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"]
    options = {name: os.environ[name] for name in names if os.environ.get(name)}
    if "AWS_REGION" not in options and os.environ.get("AWS_DEFAULT_REGION"):
        options["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"]
    if options.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"  # a local S3 API (MinIO, moto) without TLS
    return options


def spark_remote() -> str:
    """`sail` (embedded, default), `local` (JVM Spark from the pyspark wheel) or `sc://host:port`."""
    return os.environ.get("LAKEHOUSE_SPARK_REMOTE", "sail")


def jars_cache() -> Path:
    """Where Maven-fetched JVM jars (Delta for Apache Spark, Apache Kafka) are kept between runs."""
    return Path(os.environ.get("LAKEHOUSE_JARS_CACHE") or Path.home() / ".cache" / "lakehouse" / "jars")
