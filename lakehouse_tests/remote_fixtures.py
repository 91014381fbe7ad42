"""Fixtures for running beyond one process: a local S3 API (moto server) and a standalone Sail Spark Connect
server, each a real subprocess on a free 127.0.0.1 port, stopped when the test session ends.

moto runs as a subprocess, not as `ThreadedMotoServer` in the test process: delta-rs calls such as
`DeltaTable.is_deltatable` block while holding the GIL, so a server thread of the same process could never
answer them (measured: a deadlock)."""

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

BUCKET = "lakehouse-test"
SAIL_LOGS: dict[str, Path] = {}  # url -> the server's log, to prove which engine ran a query
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


@contextmanager
def subprocess_server(args: list[str], what: str, port: int, log: Path, env: dict | None = None):
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        wait_for_port(port, process, what)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def sail_server(log: Path, env: dict | None = None):
    """`sail spark server` in a process of its own, standing in for a remote Spark Connect cluster.
    It reads AWS_* from ITS environment for s3:// paths, so pass them in `env`."""
    port = free_port()
    args = [sys.executable, "-m", "pysail", "spark", "server", "--ip", "127.0.0.1", "--port", str(port)]
    url = f"sc://127.0.0.1:{port}"
    SAIL_LOGS[url] = log
    with subprocess_server(args, "sail spark server", port, log, {"RUST_LOG": "info", **(env or {})}):
        yield url


@pytest.fixture(scope="session")
def s3_env(tmp_path_factory) -> dict[str, str]:
    """A moto S3 server with one bucket; returns the standard AWS variables that reach it."""
    import boto3

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with subprocess_server(args, "moto server", port, log):
        env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", **CREDENTIALS}
        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=BUCKET)
        yield env


@pytest.fixture(scope="session")
def remote_sail_url(s3_env, tmp_path_factory) -> str:
    """One standalone Sail server for the session, able to reach the moto bucket (AWS_ALLOW_HTTP: no TLS)."""
    log = tmp_path_factory.mktemp("sail") / "sail.log"
    with sail_server(log, {**s3_env, "AWS_ALLOW_HTTP": "true"}) as url:
        yield url
        from lakehouse.lib import spark as spark_module

        session = spark_module._sessions.pop(url, None)
        if session is not None:  # close the client before its server goes, or it retries for minutes
            session.stop()
