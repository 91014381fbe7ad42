"""Configuration in one place: lakehouse/settings.py is the only module of the package that reads (or
sets) the environment, and what the environment decides at load time (which outside systems get
automation, which secrets the resources take as EnvVar) is decided there."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse import settings

PACKAGE = Path(settings.__file__).resolve().parent
REPO_ROOT = PACKAGE.parent
ENVIRONMENT = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
TARGET_VARIABLES = ("SNOWFLAKE_ACCOUNT", "LAKEHOUSE_SERVING_DSN", "LAKEHOUSE_KAFKA_BOOTSTRAP", "LAKEHOUSE_SPARK_REMOTE")


def environment_uses(path: Path) -> list[str]:
    """`os.environ`, `os.getenv`, ... and `from os import environ` in a module's code (not its docstrings)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ENVIRONMENT
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [
                f"{path.relative_to(REPO_ROOT)}:{node.lineno}: from os import {a.name}"
                for a in node.names
                if a.name in ENVIRONMENT
            ]
    return found


def test_only_settings_reads_the_environment():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "settings.py" in modules and len(modules) > 30
    uses = [use for path in modules if path != PACKAGE / "settings.py" for use in environment_uses(path)]
    assert uses == [], "read the environment through lakehouse.settings:\n" + "\n".join(uses)
    assert environment_uses(PACKAGE / "settings.py")  # the scan does see a use where there is one


def test_every_setting_names_its_variable():
    public = [getattr(settings, name) for name in dir(settings) if not name.startswith("_")]
    functions = [f for f in public if callable(f) and getattr(f, "__module__", None) == settings.__name__]
    undocumented = [f.__name__ for f in functions if not f.__doc__]
    assert len(functions) > 15 and undocumented == [], undocumented


def test_configured_targets_come_from_the_environment(monkeypatch):
    for name in TARGET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert settings.configured_targets() == frozenset()
    monkeypatch.setenv("SNOWFLAKE_ACCOUNT", "acme-eu1")
    monkeypatch.setenv("LAKEHOUSE_KAFKA_BOOTSTRAP", "broker:9092")
    monkeypatch.setenv("LAKEHOUSE_SERVING_DSN", "")  # empty is unset
    assert settings.configured_targets() == {"snowflake", "kafka"}
    assert (settings.kafka_bootstrap(), settings.serving_dsn()) == ("broker:9092", settings.DEFAULT_SERVING_DSN)


def test_child_processes_get_this_environment_with_changes(monkeypatch):
    monkeypatch.setenv("RUST_LOG", "debug")
    monkeypatch.setenv("SPARK_REMOTE", "sc://elsewhere:1")
    env = settings.child_env(
        {"SPARK_HOME": "/spark"}, defaults={"RUST_LOG": "warn", "NEW": "1"}, drop=("SPARK_REMOTE",)
    )
    assert (env["RUST_LOG"], env["NEW"], env["SPARK_HOME"], "SPARK_REMOTE" in env) == ("debug", "1", "/spark", False)
    assert os.environ["SPARK_REMOTE"] == "sc://elsewhere:1"  # this process's own is untouched


LOAD_WITH_TARGETS = """
import json
import dagster as dg
from dagster._core.remote_representation.external_data import RepositorySnap
from lakehouse.definitions import defs

repo = defs().get_repository_def()
conditions = {key.to_user_string(): str(repo.asset_graph.get(key).automation_condition)
              for key in repo.asset_graph.get_all_asset_keys()}
resources = {r.name: {k: getattr(v, "name", None) for k, v in r.configured_values.items()}
             for r in RepositorySnap.from_def(repo).resources}
sensors = {s.name: s.default_status.value for s in repo.sensor_defs}
print(json.dumps({"conditions": conditions, "resources": resources, "sensors": sensors}))
"""


def load_in_subprocess(script: str, env: dict[str, str]) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in TARGET_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**base, "PYTHONPATH": str(REPO_ROOT), **env},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("configured", [False, True], ids=["laptop", "deployment"])
def test_configured_targets_decide_automation_sensors_and_secret_resources(configured):
    env = {
        "SNOWFLAKE_ACCOUNT": "acme-eu1",
        "LAKEHOUSE_SERVING_DSN": "postgresql://api:secret@db/serving",
        "LAKEHOUSE_KAFKA_BOOTSTRAP": "broker:9092",
        "LAKEHOUSE_SPARK_REMOTE": "sc://spark:443/;token=secret",
    }
    loaded = load_in_subprocess(LOAD_WITH_TARGETS, env if configured else {})
    conditions, resources, sensors = loaded["conditions"], loaded["resources"], loaded["sensors"]
    publish = [c for key, c in conditions.items() if key.startswith("publish/")]
    serve = [c for key, c in conditions.items() if key.startswith("serve/")]
    assert publish and serve
    assert all((c != "None") == configured for c in publish + serve), conditions
    kafka = {name: status for name, status in sensors.items() if name.startswith(("kafka_", "streaming_automation"))}
    assert len(kafka) == 3 and set(kafka.values()) == {"RUNNING" if configured else "STOPPED"}
    # Secrets are EnvVars (the UI shows the variable's name); the local defaults are plain values
    named = {"LAKEHOUSE_SERVING_DSN", "LAKEHOUSE_SPARK_REMOTE"}
    assert {resources["serving"]["dsn"], resources["spark"]["remote"]} == (named if configured else {None})
    assert resources["snowflake"]["account"] == "SNOWFLAKE_ACCOUNT"


def test_an_environment_for_a_child_is_restored_after_it_starts():
    with settings.environment({"LAKEHOUSE_DBT_START_DATE": '"2026-11-01"', "HOME": "/elsewhere"}):
        assert os.environ["LAKEHOUSE_DBT_START_DATE"] == '"2026-11-01"'
        assert os.environ["HOME"] == "/elsewhere"
    assert "LAKEHOUSE_DBT_START_DATE" not in os.environ
    assert os.environ["HOME"] != "/elsewhere"
