"""Apache Spark (JVM) with Delta Lake, reached as every engine is: over Spark Connect.

- `LAKEHOUSE_SPARK_REMOTE=local`: a Spark Connect server on `local[*]`, started as a child process on
  first use and stopped when this process exits (Sail's embedded server, on the JVM).
- `lakehouse spark-cluster`: a standalone master, N workers and a Spark Connect server attached to that
  master, all from the pyspark install; point `LAKEHOUSE_SPARK_REMOTE` at the `sc://` URL it prints.

Both load delta-spark from the Maven cache (resources/jars.py). A server of our own rather than
pyspark's `remote("local")` keeps one code path: the assets and the dbt subprocess reach the engine
by its `sc://` URL, whatever the engine.
"""

import atexit
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

from lakehouse import settings
from lakehouse.lib.jars import DELTA, S3, jars

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    # Small batches on a few cores: Spark's 200 shuffle partitions, and the 50 that Delta uses to rebuild a
    # table's snapshot from its log on every read, would mostly schedule empty tasks (a count of a small
    # table took 3 s instead of 0.5 s).
    "spark.sql.shuffle.partitions": "8",
    "spark.databricks.delta.snapshotPartitions": "4",
    "spark.ui.enabled": "false",
}
CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


class SparkStartError(RuntimeError):
    pass


def spark_home() -> Path:
    return Path(pyspark.__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dying_with_parent(args: list[str]) -> list[str]:
    """`args`, run so that the process gets SIGTERM when its parent dies and a killed run leaves no JVM
    behind (Linux: util-linux's setpriv sets PR_SET_PDEATHSIG, then execs). Not a preexec_fn doing the
    same: Python code between fork and exec, in a process with the Spark Connect client's gRPC threads,
    sometimes aborts the child (gRPC's fork handler: "epoll_wait error: Bad file descriptor")."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", *args] if setpriv else list(args)


@dataclass
class JvmProcess:
    """One Spark JVM (master, worker or Connect server) listening on `port` once started."""

    what: str
    args: list[str]
    port: int
    log: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, timeout: float = 180) -> "JvmProcess":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # Bind to loopback: otherwise Spark picks the first interface's address for its driver and workers.
        env = settings.child_env(
            {"SPARK_HOME": str(spark_home()), "SPARK_NO_DAEMONIZE": "1", "SPARK_LOCAL_IP": "127.0.0.1"},
            drop=("SPARK_REMOTE",),
        )  # the server itself is not a Connect client
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                dying_with_parent(self.args), stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise SparkStartError(
                    f"{self.what} exited with code {self.process.returncode} before listening on "
                    f"{self.port}; its log ({self.log}) ends:\n{self.log_tail()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SparkStartError(
                        f"{self.what} did not listen on {self.port} within {timeout:.0f} s; "
                        f"its log ({self.log}) ends:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.2)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        stop_all([self])


def stop_all(processes: list[JvmProcess], grace: float = 20) -> None:
    """SIGTERM to every JVM at once, then SIGKILL to any still up after `grace` seconds. Not one after
    another: on a loaded machine a JVM can take its whole grace period, and three of them took past a minute."""
    running = [p.process for p in processes if p.process and p.process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + grace
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def conf_args(conf: dict[str, str]) -> list[str]:
    return [arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]


def s3_conf() -> dict[str, str]:
    """s3:// paths through Hadoop's S3A, with the standard AWS variables (as delta-rs and Sail read them)."""
    options = settings.lake_storage_options("s3://")
    conf = {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"
        ),
    }
    if options.get("AWS_ENDPOINT_URL"):  # MinIO, moto: path-style requests to that endpoint
        conf |= {
            "spark.hadoop.fs.s3a.endpoint": options["AWS_ENDPOINT_URL"],
            "spark.hadoop.fs.s3a.path.style.access": "true",
        }
    if options.get("AWS_REGION"):
        conf["spark.hadoop.fs.s3a.endpoint.region"] = options["AWS_REGION"]
    return conf


def connect_server(
    master: str,
    port: int,
    log: Path,
    driver_memory: str = "4g",
    conf: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    s3: bool = False,
) -> JvmProcess:
    """A Spark Connect server with Delta Lake (and, with `s3`, S3A) on `master` (local[*] or spark://host:port)."""
    extra_jars = ",".join(str(j) for bundle in ([DELTA, S3] if s3 else [DELTA]) for j in jars(bundle))
    spark_conf = {
        **DELTA_CONF,
        **(s3_conf() if s3 else {}),
        "spark.connect.grpc.binding.address": host,
        "spark.connect.grpc.binding.port": str(port),
        **(conf or {}),
    }
    args = [
        str(spark_home() / "bin" / "spark-submit"),
        "--master",
        master,
        "--class",
        CONNECT_SERVER_CLASS,
        "--name",
        "lakehouse-spark-connect",
        "--driver-memory",
        driver_memory,
        "--jars",
        extra_jars,
        *conf_args(spark_conf),
        "spark-internal",
    ]
    return JvmProcess("Spark Connect server", args, port, log)


_local_lock = threading.Lock()
_local_server: JvmProcess | None = None


def local_spark_url() -> str:
    """Start one local Apache Spark Connect server (with Delta) per process and reuse it."""
    global _local_server
    with _local_lock:
        if _local_server is None or _local_server.process.poll() is not None:
            port = free_port()
            log = settings.home() / "logs" / f"spark-connect-{os.getpid()}-{port}.log"
            _local_server = connect_server("local[*]", port, log).start()
            atexit.register(_local_server.stop)
    return f"sc://127.0.0.1:{_local_server.port}"


@dataclass
class SparkCluster:
    """A standalone Spark cluster on this host: a master, `workers` workers and a Connect server with Delta.

    `with SparkCluster(workers=2, port=15002) as cluster: cluster.url` - every process is stopped on exit."""

    workers: int = 2
    port: int = 15002
    worker_cores: int = 1
    worker_memory: str = "2g"
    host: str = "127.0.0.1"  # where the Connect server listens (0.0.0.0 in a container)
    s3: bool = False  # s3:// lakes through S3A (fetches the AWS SDK bundle)
    log_dir: Path = Path(".lakehouse/logs/spark-cluster")
    processes: list[JvmProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    @contextmanager
    def running(self) -> Iterator["SparkCluster"]:
        def launch(process: JvmProcess) -> None:
            self.processes.append(process.start())

        try:
            spark_class = str(spark_home() / "bin" / "spark-class")
            master_port = free_port()
            master = f"spark://127.0.0.1:{master_port}"
            launch(
                JvmProcess(
                    "Spark master",
                    [
                        spark_class,
                        "org.apache.spark.deploy.master.Master",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(master_port),
                        "--webui-port",
                        str(free_port()),
                    ],
                    master_port,
                    self.log_dir / "master.log",
                )
            )
            for n in range(1, self.workers + 1):
                port = free_port()
                launch(
                    JvmProcess(
                        f"Spark worker {n}",
                        [
                            spark_class,
                            "org.apache.spark.deploy.worker.Worker",
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(port),
                            "--webui-port",
                            str(free_port()),
                            "--cores",
                            str(self.worker_cores),
                            "--memory",
                            self.worker_memory,
                            master,
                        ],
                        port,
                        self.log_dir / f"worker-{n}.log",
                    )
                )
            cores = self.workers * self.worker_cores
            launch(
                connect_server(
                    master,
                    self.port,
                    self.log_dir / "connect-server.log",
                    driver_memory="2g",
                    conf={
                        "spark.executor.memory": self.worker_memory,
                        "spark.executor.cores": str(self.worker_cores),
                        "spark.cores.max": str(cores),
                        "spark.databricks.delta.snapshotPartitions": str(2 * cores),
                    },
                    host=self.host,
                    s3=self.s3,
                )
            )
            yield self
        finally:
            stop_all(self.processes)
