"""A real PostgreSQL server for the test session: Debian's `postgresql` binaries (.ci/run installs them)
run a throwaway cluster in a temporary folder on a free 127.0.0.1 port with trust auth, stopped at the
end. Set LAKEHOUSE_TEST_PG_HOST (and _PORT, _USER, _PASSWORD) to use a server of your own instead.

Postgres refuses to run as root: as root (CI), the cluster belongs to the `postgres` user the Debian
package creates, and its commands run through `runuser`."""

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from lakehouse_tests.remote_fixtures import free_port


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str = ""

    def dsn(self, database: str = "postgres") -> str:
        auth = f"{self.user}:{self.password}" if self.password else self.user
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"


def postgres_bin() -> Path:
    """The newest installed server's bin folder (pg_ctl on PATH is often only Debian's wrapper)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError(
            "PostgreSQL is not installed: apt-get install postgresql (.ci/run does), "
            "or set LAKEHOUSE_TEST_PG_HOST to a server of your own"
        )
    return Path(initdb).parent


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    if os.environ.get("LAKEHOUSE_TEST_PG_HOST"):
        yield PostgresServer(
            os.environ["LAKEHOUSE_TEST_PG_HOST"],
            int(os.environ.get("LAKEHOUSE_TEST_PG_PORT", "5432")),
            os.environ.get("LAKEHOUSE_TEST_PG_USER", "postgres"),
            os.environ.get("LAKEHOUSE_TEST_PG_PASSWORD", ""),
        )
        return
    # Not under pytest's temporary folders: as root those are closed to the `postgres` user.
    bin_dir, data, port = postgres_bin(), Path(tempfile.mkdtemp(prefix="lakehouse-test-pg-")), free_port()
    as_owner: list[str] = []
    if os.geteuid() == 0:
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(data, "postgres")
    subprocess.run(
        [
            *as_owner,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "lakehouse",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c max_connections=200"
    subprocess.run(
        [
            *as_owner,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(data / "server.log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresServer("127.0.0.1", port, "lakehouse")
    finally:
        subprocess.run(
            [*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(data, ignore_errors=True)
