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


def spark_remote() -> str:
    """`sail` (embedded, default), `local` (JVM Spark from the pyspark wheel) or `sc://host:port`."""
    return os.environ.get("LAKEHOUSE_SPARK_REMOTE", "sail")
