"""The Spark resource: a Spark Connect session for the assets.

Every transform uses only the Spark Connect API, so the same code runs on:
  - `sail`: the embedded Sail engine, started in this process on first use (default);
  - `local`: Apache Spark (JVM) from the pyspark wheel with delta-spark, through a Spark Connect server
    this process starts on first use (resources/jvm_spark.py);
  - `sc://host:port`: any remote Spark Connect cluster (Spark 4 + delta-spark, Databricks, Sail,
    `lakehouse spark-cluster`).
"""

import atexit
import threading
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field, PrivateAttr

from lakehouse import settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_sail_lock = threading.Lock()
_sail_server = None  # held for the life of the process: the server shuts down when collected


def embedded_sail_url() -> str:
    """Start one Sail server per process and reuse it: start-up costs ~1 s, a query ~ms."""
    global _sail_server
    with _sail_lock:
        if _sail_server is None:
            from pysail.spark import SparkConnectServer

            settings.keep_embedded_sail_sessions()  # Sail's default ends a session idle for 15 minutes
            server = SparkConnectServer(ip="127.0.0.1", port=0)
            server.start(background=True)
            _sail_server = server
    _, port = _sail_server.listening_address
    return f"sc://127.0.0.1:{port}"


def connect_url(remote: str) -> str:
    if remote == "sail":
        return embedded_sail_url()
    if remote == "local":
        from lakehouse.lib.jvm_spark import local_spark_url

        return local_spark_url()
    if remote.startswith("sc://"):
        return remote
    raise ValueError(f"LAKEHOUSE_SPARK_REMOTE must be 'sail', 'local' or 'sc://host:port', got {remote!r}")


_sessions: dict[str, "SparkSession"] = {}  # one Connect session per endpoint and process


def spark_session(remote: str, spark_config: dict | None = None) -> "SparkSession":
    from pyspark.sql import SparkSession

    # UTC everywhere: partitions are UTC days and source timestamps end in Z.
    url = connect_url(remote)
    builder = SparkSession.builder.remote(url).config("spark.sql.session.timeZone", "UTC")
    for key, value in (spark_config or {}).items():
        builder = builder.config(key, value)
    # getOrCreate() hands back the process's existing session whatever its endpoint, so a second
    # endpoint (a remote cluster next to the embedded engine) would silently run on the first one.
    with _sail_lock:
        session = _sessions.get(url)
        if session is not None and not session.is_stopped:
            try:
                for key, value in {"spark.sql.session.timeZone": "UTC", **(spark_config or {})}.items():
                    session.conf.set(key, value)
                return session
            except Exception:  # noqa: BLE001 - the server ended the session (idle timeout, restart): start anew
                pass
        session = _sessions[url] = builder.create()
        # No Spark ML here, and Sail has no ML cache: pyspark's exit hook that clears it would only log a
        # "GRPC Error: ml command" there. Exit hooks run last-registered first, so closing the client's
        # channel here, after pyspark registered its hook, leaves that hook nothing to send.
        atexit.register(session.client.close)
    return session


class SparkEngine(dg.ConfigurableResource):
    """A Spark Connect session for the assets; see the module docstring for `remote`."""

    remote: str = Field(default=settings.DEFAULT_SPARK_REMOTE, description="sail | local | sc://host:port")
    spark_config: dict = Field(default={}, description="Extra Spark conf passed to the session builder")

    _session: "SparkSession | None" = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._session = spark_session(self.remote, self.spark_config)

    @property
    def spark_session(self) -> "SparkSession":
        """The session `setup_for_execution` opened (None before)."""
        return self._session
