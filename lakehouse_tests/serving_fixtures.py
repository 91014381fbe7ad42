"""Session fixtures for the publishing and serving tests (a pytest plugin: test modules name it in
`pytest_plugins`, so the session-scoped Gold build and database are shared between them).

- `gold_lake`: the session lake (conftest's `batch_run`) with Gold built over the whole window in
  one run, as test_gold builds it.
- `serving_dsn`: a throwaway database on the session's Postgres server (postgres_fixtures.py), dropped
  at the end.
- `api_server`: the read API under uvicorn on a free port, in a thread, stopped at the end.
"""

import hashlib
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import pytest

from lakehouse.lib.lake import DeltaLake
from lakehouse_tests.helpers import DAY_KEYS
from lakehouse_tests.postgres_fixtures import postgres_server  # noqa: F401 - fixture

APP_KEY, ANALYST_KEY, FINANCE_KEY = (
    "app-key-" + uuid.uuid4().hex,
    "analyst-key-" + uuid.uuid4().hex,
    "fin-" + uuid.uuid4().hex,
)
KEYS_CONFIG = [
    {"name": "app", "key": APP_KEY, "scopes": ["customers:read", "revenue:read", "kpis:read", "pii", "catalog:read"]},
    {"name": "analyst", "key": ANALYST_KEY, "scopes": ["customers:read", "revenue:read", "kpis:read", "catalog:read"]},
    # stored as a hash only, as a keys file may hold them
    {
        "name": "finance",
        "sha256": hashlib.sha256(FINANCE_KEY.encode()).hexdigest(),
        "scopes": ["revenue:read", "kpis:read"],
    },
]


@pytest.fixture(scope="session")
def gold_lake(batch_run, resources, lake) -> DeltaLake:
    from lakehouse_tests.test_gold import build_gold

    result = build_gold(resources, DAY_KEYS[0], DAY_KEYS[-1])
    assert result.success
    return lake


@pytest.fixture(scope="session")
def serving_dsn(postgres_server) -> str:
    import psycopg

    name = f"lakehouse_test_serving_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.dsn(name)
    finally:
        with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
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

    from lakehouse.api import create_app, parse_keys

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
