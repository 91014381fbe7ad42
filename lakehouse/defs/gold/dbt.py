"""Gold marts as dbt models, one Dagster asset per model (group `gold`), downstream of the Silver assets.

- One run per partition range (single-run backfill policy): its window is `start_date` / `end_date`, and
  the daily models replace exactly those days (`replace_where` strategy, one Delta commit per model).
  A window too long for one build (`DbtCli.customer_days_per_build`: churn_features has a row per
  customer per day) is built a batch of days at a time, as dbt's microbatch would: the earlier batches
  build only the selected daily models (and the tests on them alone), the last one everything selected.
  A year at scale 10 is then about 41 days at a time, not 100M rows sorted in one statement
  (docs/benchmarks.md, "A year of data"); a year at scale 1 is still one build.
- dbt's partial parse stays valid from run to run, so an invocation does not re-parse the project:
  the run's values (window, lake root, the tables the lake holds) reach dbt as environment variables
  its macros read only at execution (dbt_project/macros/run_values.sql), not as --vars, and the
  profile dbt hashes is the project's.
- dbt talks to the same Spark engine as the other assets, and writes to the same lake: the run gets a
  profiles.yml of its own, the project's with the SparkEngine's Spark Connect endpoint as
  `spark.remote` (the embedded Sail server of this process by default; an sc:// URL may carry a
  token, so it goes in a private file, not on dbt's command line or into its artifacts).
- dbt starts when the run does (`DbtCli.warm_start`, lib/warm_dbt.py): its imports, most of an invocation's
  fixed cost, happen while the Bronze and Silver steps run, and each dbt command is a fork of that process.
- dbt tests are asset checks on the models they test (singular tests name theirs in `meta`).
- Each mart's materialisation carries its column schema (the Delta table as written: real types, with the
  model's column descriptions) and its column lineage (sqlglot over the compiled SQL, lib/lineage.py),
  read without the engine.
- The manifest is parsed on import when it is missing or older than the project's files, so
  `dagster asset materialize` and `dg check defs` work from a clean checkout (target/ is not in git).
"""

import importlib.metadata
import itertools
import json
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliInvocation,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from packaging import version
from pydantic import Field, PrivateAttr

from lakehouse import catalog, settings
from lakehouse.lib import lineage, partitions, warm_dbt
from lakehouse.lib.lake import DeltaLake, table_row_count
from lakehouse.lib.spark import SparkEngine, connect_url

DBT_PROJECT_DIR = catalog.DBT_PROJECT_DIR
THIS_ENVIRONMENTS_DBT = DbtCliResource.model_fields["dbt_executable"].default
PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def _newest_source_mtime(project_dir: Path) -> float:
    newest = 0.0
    for name in PROJECT_FILES:
        path = project_dir / name
        files = [path] if path.is_file() else path.rglob("*") if path.is_dir() else []
        newest = max([newest, *(f.stat().st_mtime for f in files if f.is_file())])
    return newest


def prepare(project: DbtProject) -> Path:
    """`dbt parse` into target/ unless the manifest there is newer than every project file. Not on every
    load under `dagster dev` (dagster-dbt's default): there each run's process loads the code location
    too, and a parse per run (10-25 s here) would be most of a streaming micro-batch's time; an edited
    project is newer than its manifest, so a reload still parses it."""
    manifest = project.manifest_path
    if not manifest.exists() or manifest.stat().st_mtime < _newest_source_mtime(project.project_dir):
        project.preparer.prepare(project)
    return manifest


class GoldTranslator(DagsterDbtTranslator):
    """Models are `gold/<model>` in group `gold`; sources are the Silver assets `silver/<table>`."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        return dg.AssetKey(["gold", dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "gold"

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        return {**super().get_tags(dbt_resource_props), "dagster/kind/delta": ""}

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        """A mart's grain and window (its model's `meta.keys` and `partition_by`), shown with the asset."""
        metadata = dict(super().get_metadata(dbt_resource_props))
        mart = catalog.marts_of({"nodes": {"": dbt_resource_props}}).get(dbt_resource_props["name"])
        if mart:
            metadata.update(
                {"lakehouse/keys": ", ".join(mart.keys), "lakehouse/window": mart.window or "rebuilt in full"}
            )
        return metadata


translator = GoldTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def dbt_vars(start: date, end: date, lake: DeltaLake) -> dict:
    """The partition window [start, end) the daily models filter on, the lake's root, and the Silver and
    Gold tables it holds (`layer/name`), which the on-run-start macro registers in dbt's Spark session."""
    tables = [f"{layer}/{name}" for layer in ("silver", "gold") for name in lake.table_names(layer)]
    return {"start_date": start.isoformat(), "end_date": end.isoformat(), "lake_root": lake.root, "lake_tables": tables}


def dbt_env(start: date, end: date, lake: DeltaLake) -> dict[str, str]:
    """The run's values as the environment variables dbt's `run_value` macro reads: LAKEHOUSE_DBT_<NAME>, JSON."""
    return {f"LAKEHOUSE_DBT_{name.upper()}": json.dumps(value) for name, value in dbt_vars(start, end, lake).items()}


def write_run_profiles(dbt: DbtCliResource, spark_url: str, directory: Path) -> Path:
    """profiles.yml in `directory` for one dbt invocation: the project's, every output of its profile
    connecting to `spark_url` (`spark.remote`, which pyspark's session builder connects to before any
    SPARK_REMOTE). The rest is the project's as it is, `host` included: dbt hashes the connection's
    keys, and a profile unlike the one it parsed with would cost a full re-parse."""
    source = Path(dbt.profiles_dir or dbt.project_dir) / "profiles.yml"
    profiles = yaml.safe_load(source.read_text())
    profile = dbt.profile or yaml.safe_load((Path(dbt.project_dir) / "dbt_project.yml").read_text())["profile"]
    for output in profiles[profile]["outputs"].values():
        output["server_side_parameters"] = {**output.get("server_side_parameters", {}), "spark.remote": spark_url}
    path = directory / "profiles.yml"
    path.write_text(yaml.safe_dump(profiles, sort_keys=False))
    return path


class DbtCli(DbtCliResource):
    """dagster-dbt's dbt CLI, without two things its `cli()` does in the run's process before every dbt
    invocation that Gold has no use for: `dbt --version` in a subprocess (a second dbt start-up, 1.5-3 s) and a
    dbt adapter built in-process (1-3.5 s), which serves only `fetch_row_counts()` and `fetch_column_metadata()`:
    Gold reads row counts and columns from its Delta tables. bench/daily_run.py measures the dbt step."""

    customer_days_per_build: int = Field(
        default=40_000_000,
        ge=1,
        description="About the most customer-days (rows of churn_features) one dbt build covers: a longer window "
        "is built a batch of days at a time",
    )

    warm_start: bool = Field(
        default=True,
        description="Start dbt when the run starts, while the steps before Gold run (lib/warm_dbt.py): its imports "
        "are 3-4 s of each invocation's fixed cost",
    )
    _warm: warm_dbt.WarmDbt | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        super().setup_for_execution(context)
        if self.warm_start and self.dbt_executable == THIS_ENVIRONMENTS_DBT:
            try:
                project_dir = str(self.project_dir)
                self._warm = warm_dbt.WarmDbt(
                    shutil.which(self.dbt_executable), project_dir, self.profiles_dir or project_dir
                )
            except OSError as error:  # e.g. a TMPDIR too long for a Unix socket's path: dbt starts in the step
                dg.get_dagster_logger().warning(f"dbt is not started ahead of the Gold step: {error!r}")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._warm:
            self._warm.close()

    def run_executable(self) -> str:
        """The dbt a run invokes: the warm one when it was started."""
        return str(self._warm.executable) if self._warm else self.dbt_executable

    def days_per_build(self, lake: DeltaLake) -> int:
        """The days one build covers, for the customers Silver holds (their SCD2 versions: an upper bound)."""
        if not lake.exists("silver", "customers"):
            return self.customer_days_per_build
        return max(1, self.customer_days_per_build // max(table_row_count(lake.delta_table("silver", "customers")), 1))

    @cached_property
    def _cli_version(self) -> version.Version:
        if self.dbt_executable != THIS_ENVIRONMENTS_DBT and not warm_dbt.is_client(self.dbt_executable):
            return DbtCliResource._cli_version.func(self)  # another dbt than this environment's: ask it
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args) -> None:
        return None


def with_profiles_dir(dbt: DbtCliResource, profiles_dir: Path) -> DbtCli:
    """The same dbt resource, reading its profiles from `profiles_dir`, invoking the warm dbt if it was started
    (a plain DbtCliResource gets DbtCli's defaults)."""
    return DbtCli(
        project_dir=dbt.project_dir,
        global_config_flags=dbt.global_config_flags,
        profiles_dir=str(profiles_dir),
        profile=dbt.profile,
        target=dbt.target,
        dbt_executable=dbt.run_executable() if isinstance(dbt, DbtCli) else dbt.dbt_executable,
        state_path=dbt.state_path,
        customer_days_per_build=getattr(
            dbt, "customer_days_per_build", DbtCli.model_fields["customer_days_per_build"].default
        ),
    )


# Delta's names for the types Spark SQL (the models' language, and the Silver contracts') names otherwise.
SQL_TYPES = {"long": "bigint", "integer": "int", "short": "smallint", "byte": "tinyint"}


def relations_read(manifest: Mapping, node: Mapping) -> dict[str, Mapping]:
    """The sources and models a model's compiled SQL reads, by unique id: its parents, through the ephemeral
    models dbt inlines."""
    found = {}
    for unique_id in node["depends_on"]["nodes"]:
        parent = manifest["sources"].get(unique_id) or manifest["nodes"][unique_id]
        ephemeral = parent.get("config", {}).get("materialized") == "ephemeral"
        found.update(relations_read(manifest, parent) if ephemeral else {unique_id: parent})
    return found


def delta_columns(lake: DeltaLake, table: str) -> dict[str, str]:
    return {f.name: SQL_TYPES.get(f.type.type, f.type.type) for f in lake.delta_table("gold", table).schema().fields}


def relation_columns(props: Mapping, lake: DeltaLake) -> dict[str, str]:
    """A source's columns from its Silver contract, a mart's from its Delta table: name -> SQL type."""
    if props["resource_type"] == "source":
        contract = catalog.table(f"{props['source_name']}/{props['name']}").contract
        return {name: column.dtype.type.simpleString() for name, column in contract.to_schema().columns.items()}
    return delta_columns(lake, props["alias"])


def column_metadata(invocation: DbtCliInvocation, node: Mapping, lake: DeltaLake) -> dict[str, Any]:
    """A mart's `dagster/column_lineage` (each column's Silver or Gold upstream columns, from the compiled SQL)
    and `dagster/column_schema` (its Delta table's columns and types, in the model's order, with its descriptions)."""
    upstream = relations_read(invocation.manifest, node).values()
    compiled = invocation.target_path / "compiled" / node["package_name"] / node["original_file_path"]
    column_lineage = lineage.column_lineage(
        compiled.read_text(),
        {p["relation_name"]: relation_columns(p, lake) for p in upstream},
        {p["relation_name"]: translator.get_asset_key(p) for p in upstream},
    )
    selected = list(column_lineage.deps_by_column)
    written = delta_columns(lake, node["alias"])  # a column the SQL no longer selects stays, last
    ordered = sorted(written, key=lambda name: selected.index(name) if name in selected else len(selected))
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(name, written[name], description=node["columns"].get(name, {}).get("description") or None)
            for name in ordered
        ]
    )
    return {"dagster/column_schema": schema, "dagster/column_lineage": column_lineage}


def batches(start: date, end: date, days: int) -> list[tuple[date, date]]:
    """[start, end) cut into consecutive windows of at most `days` days."""
    cuts = [*range(0, (end - start).days, days), (end - start).days]
    return [(start + timedelta(days=a), start + timedelta(days=b)) for a, b in itertools.pairwise(cuts)]


def daily_models(context: dg.AssetExecutionContext) -> list[str]:
    """The run's selected marts that replace a window of days (the others are rebuilt in full)."""
    return [
        name
        for name, mart in catalog.marts().items()
        if mart.window and dg.AssetKey(["gold", name]) in context.selected_asset_keys
    ]


def build_daily_models(context: dg.AssetExecutionContext, dbt: DbtCli, start: date, end: date, lake: DeltaLake) -> None:
    """One earlier batch of a long window: `dbt build` of the selected daily models over [start, end), with
    the tests on them alone (cautious selection: a test that also reads a mart rebuilt later waits for the
    last batch). A failing model or test fails the step here, naming it; the asset checks report the last
    batch's tests."""
    models = daily_models(context)
    if not models:
        return
    context.log.info(f"dbt build of {', '.join(models)} for [{start}, {end}): a batch of the run's window")
    with settings.environment(dbt_env(start, end, lake)):
        dbt.cli(
            ["build", "--select", " ".join(models), "--indirect-selection", "cautious"],
            manifest=dbt_project.manifest_path,
            dagster_dbt_translator=translator,
            target_path=dbt_project.project_dir / "target" / f"gold_dbt-{context.run.run_id[:7]}-{start}",
        ).wait()


@dbt_assets(
    manifest=prepare(dbt_project),
    project=dbt_project,
    name="gold_dbt",
    dagster_dbt_translator=translator,
    partitions_def=partitions.daily,
    backfill_policy=partitions.single_run,
)
def gold_dbt(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, spark: SparkEngine, lake: DeltaLake
) -> Iterator[Any]:
    """`dbt build` of the selected Gold models and their tests over the run's partition window."""
    # mkdtemp's directory is the user's only (0700); it goes when dbt has finished
    with tempfile.TemporaryDirectory(prefix="lakehouse-dbt-profiles-") as profiles_dir:
        write_run_profiles(dbt, connect_url(spark.remote), Path(profiles_dir))
        run_dbt = with_profiles_dir(dbt, Path(profiles_dir))
        *earlier, last = batches(*partitions.window(context), run_dbt.days_per_build(lake))
        for start, end in earlier:
            build_daily_models(context, run_dbt, start, end, lake)
        with settings.environment(dbt_env(*last, lake)):
            invocation = run_dbt.cli(["build"], context=context)
        for event in invocation.stream():
            if isinstance(event, dg.Output):
                table = context.asset_key_for_output(event.output_name).path[-1]
                if lake.exists("gold", table):
                    metadata = {**event.metadata, **lake.write_metadata("gold", table)}
                    node = invocation.manifest["nodes"][event.metadata["unique_id"].text]
                    try:
                        metadata.update(column_metadata(invocation, node, lake))
                    except Exception as error:  # the mart is written: missing metadata must not fail its run
                        context.log.warning(f"gold/{table}: no column schema and lineage: {error!r}")
                    event = event.with_metadata(metadata)
            yield event


def dbt_resource() -> DbtCli:
    return DbtCli(project_dir=dbt_project)
