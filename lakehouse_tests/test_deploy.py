"""deploy/ checked as far as this machine allows without Docker or a cluster: every file parses, the instance
config validates against Dagster's schema, the compose services get the variables the code reads, the
Dockerfile installs the way the README does, and the Helm values mirror deploy/dagster.yaml."""

import re
from pathlib import Path

import pytest
import yaml

from lakehouse import settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DAGSTER_SERVICES = ("code-location", "webserver", "daemon")
# What the code location reads from its environment (settings.py, the Kafka resource, delta-rs / boto3, the
# OpenLineage sensor).
CODE_ENV = {
    "LAKEHOUSE_HOME",
    "LAKEHOUSE_LAKE_ROOT",
    "LAKEHOUSE_SPARK_REMOTE",
    "LAKEHOUSE_KAFKA_BOOTSTRAP",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "OPENLINEAGE_URL",
}


def load(name: str):
    return yaml.safe_load((DEPLOY / name).read_text())


def instance_env_vars() -> set[str]:
    return set(re.findall(r"env: (\w+)", (DEPLOY / "dagster.yaml").read_text()))


def test_every_deploy_yaml_file_parses():
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))
    assert {p.relative_to(DEPLOY).as_posix() for p in files} >= {
        "dagster.yaml",
        "docker-compose.yml",
        "workspace.yaml",
        "helm/values.yaml",
    }
    for path in files:
        assert yaml.safe_load(path.read_text()), path


def test_the_instance_config_validates_against_dagsters_schema(monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema

    env = {name: "5432" if name.endswith(("PORT", "RUNS")) else "x" for name in instance_env_vars()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = process_config(dagster_instance_config_schema(), load("dagster.yaml"))
    assert result.success, result.errors
    assert instance_env_vars() == {
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PORT",
        "DAGSTER_PG_USERNAME",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_DB",
    }


def test_compose_has_every_service_and_dagster_services_get_every_variable_they_read(monkeypatch):
    compose = load("docker-compose.yml")
    services = compose["services"]
    assert set(services) >= {"postgres", "minio", "kafka", "spark-connect", "marquez", "marquez-db", *DAGSTER_SERVICES}
    for name in DAGSTER_SERVICES:
        env = services[name]["environment"]
        assert CODE_ENV | instance_env_vars() <= set(env), (name, sorted(CODE_ENV | instance_env_vars() - set(env)))
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    env = services["code-location"]["environment"]
    assert env["LAKEHOUSE_LAKE_ROOT"].startswith("s3://")
    assert env["LAKEHOUSE_SPARK_REMOTE"] == "sc://spark-connect:15002"
    assert env["LAKEHOUSE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000" and env["DAGSTER_PG_HOST"] == "postgres"
    # delta-rs gets its storage options from those same variables (http endpoint -> AWS_ALLOW_HTTP)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    assert settings.lake_storage_options()["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert settings.lake_storage_options()["AWS_ALLOW_HTTP"] == "true"
    # the bucket in the lake root is the one minio-init creates; Kafka runs KRaft (no ZooKeeper)
    bucket = env["LAKEHOUSE_LAKE_ROOT"].removeprefix("s3://").split("/")[0]
    assert f"lake/{bucket}" in " ".join(services["minio-init"]["command"])
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert services["spark-connect"]["command"][:2] == ["lakehouse", "spark-cluster"]
    # OpenLineage events go over HTTP to the Marquez API, which stores them in its own Postgres
    marquez = services["marquez"]["environment"]
    assert settings.openlineage_transport() == {
        "type": "http",
        "url": f"http://marquez:{marquez['MARQUEZ_PORT']}",
        "endpoint": "api/v1/lineage",
    }
    assert marquez["POSTGRES_HOST"] == "marquez-db" and "marquez" in services["code-location"]["depends_on"]
    assert services["marquez-db"]["environment"]["POSTGRES_DB"] == "marquez"
    # Bronze reads landing files by path on the engine too: both mount the same volume at LAKEHOUSE_HOME/landing
    landing = f"landing:{env['LAKEHOUSE_HOME']}/landing"
    assert landing in services["code-location"]["volumes"] and landing in services["spark-connect"]["volumes"]


def test_dockerfile_installs_like_the_readme_and_serves_the_code_location():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "pip install -e ." in dockerfile and re.search(r'pip install -e "?\.', (REPO / "README.md").read_text())
    for path in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        for source in path.split():
            assert (REPO / source).exists(), source
    assert '"--module-name", "lakehouse.definitions"' in dockerfile
    workspace = load("workspace.yaml")["load_from"][0]["grpc_server"]
    assert (workspace["host"], workspace["port"]) == ("code-location", 4000) and "EXPOSE 4000" in dockerfile


def test_helm_values_mirror_the_instance_config():
    values = load("helm/values.yaml")
    instance = load("dagster.yaml")
    assert set(values) <= {
        "global",
        "dagster-user-deployments",
        "dagsterWebserver",
        "runLauncher",
        "postgresql",
        "generatePostgresqlPasswordSecret",
        "dagsterDaemon",
        "telemetry",
        "computeLogManager",
        "pipelineRun",
        "scheduler",
        "serviceAccount",
        "ingress",
        "concurrency",
    }
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "lakehouse.definitions"]
    env = {e["name"] for e in deployment["env"]} | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # in envSecrets
    assert CODE_ENV - {"AWS_ENDPOINT_URL", "OPENLINEAGE_URL"} <= env  # real S3: no endpoint override; no Marquez
    concurrency = values["concurrency"]
    assert concurrency["runs"]["tagConcurrencyLimits"] == instance["concurrency"]["runs"]["tag_concurrency_limits"]
    assert concurrency["runs"]["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert concurrency["pools"]["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"] == 1
    assert values["postgresql"]["enabled"] is False and values["runLauncher"]["type"] == "K8sRunLauncher"


@pytest.mark.parametrize("instance_file", ["dagster.yaml", "deploy/dagster.yaml"])
def test_every_pool_runs_one_step_at_a_time_with_no_manual_step(instance_file, tmp_path, monkeypatch):
    """The streaming Bronze tables' pools: one batch of a table at a time across processes and hosts."""
    from dagster._core.instance.config import dagster_instance_config

    (tmp_path / "dagster.yaml").write_text((REPO / instance_file).read_text())
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, "5432" if name.endswith("PORT") else "x")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["concurrency"]["pools"]["default_limit"] == 1
