"""Session fixtures for the publishing and serving tests (a pytest plugin: test modules name it in
`pytest_plugins`, so the session-scoped Gold build and database are shared between them).

- `gold_lake`: the session lake (conftest's `batch_run`) with Gold built over the whole window in
  one run, as test_gold builds it.
- `serving_dsn`: a throwaway database on the local Postgres (127.0.0.1:5432, trust auth), dropped
  at the end; the tests that need it are skipped, with the reason, when Postgres is unreachable.
- `api_server`: the read API under uvicorn on a free port, in a thread, stopped at the end.
"""

import hashlib
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import pytest

from lakehouse.resources.lake import DeltaLake
from lakehouse_tests.conftest import DAY_KEYS

PG_HOST, PG_PORT = os.environ.get("LAKEHOUSE_TEST_PG_HOST", "127.0.0.1"), int(os.environ.get("LAKEHOUSE_TEST_PG_PORT", "5432"))
ADMIN_DSN = f"postgresql://{PG_HOST}:{PG_PORT}/postgres"

APP_KEY, ANALYST_KEY, FINANCE_KEY = "app-key-" + uuid.uuid4().hex, "analyst-key-" + uuid.uuid4().hex, "fin-" + uuid.uuid4().hex
KEYS_CONFIG = [
    {"name": "app", "key": APP_KEY, "scopes": ["customers:read", "revenue:read", "kpis:read", "pii"]},
    {"name": "analyst", "key": ANALYST_KEY, "scopes": ["customers:read", "revenue:read", "kpis:read"]},
    # stored as a hash only, as a keys file may hold them
    {"name": "finance", "sha256": hashlib.sha256(FINANCE_KEY.encode()).hexdigest(),
     "scopes": ["revenue:read", "kpis:read"]},
]


def postgres_reachable() -> str | None:
    """None if Postgres answers on PG_HOST:PG_PORT, else why not."""
    try:
        socket.create_connection((PG_HOST, PG_PORT), timeout=2).close()
    except OSError as error:
        return f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT} ({error}); the serving tests need a real Postgres"
    try:
        import psycopg

        psycopg.connect(ADMIN_DSN, connect_timeout=5).close()
    except Exception as error:  # noqa: BLE001 - any failure to log in means we cannot test
        return f"cannot log in to PostgreSQL at {ADMIN_DSN} ({error}); the serving tests need trust auth there"
    return None


@pytest.fixture(scope="session")
def gold_lake(batch_run, resources, lake) -> DeltaLake:
    from lakehouse_tests.test_gold import build_gold

    result = build_gold(resources, DAY_KEYS[0], DAY_KEYS[-1])
    assert result.success
    return lake


@pytest.fixture(scope="session")
def serving_dsn() -> str:
    reason = postgres_reachable()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"lakehouse_test_serving_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ApiServer:
    url: str


@pytest.fixture(scope="session")
def api_server(serving_dsn) -> ApiServer:
    import uvicorn

    from lakehouse.serve.api import create_app, parse_keys

    app = create_app(dsn=serving_dsn, keys=parse_keys(KEYS_CONFIG))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    try:
        yield ApiServer(url=f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
