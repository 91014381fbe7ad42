"""OpenLineage: the openlineage_events sensor turns each Dagster run into START and COMPLETE or FAIL events,
with the tables the run reads and writes, their schema, column lineage and check results, and sends them to
the configured transport. Tiny assets (no Spark) run with dg.materialize on an instance the sensor then
reads; the events, written by the file transport, are validated against the OpenLineage JSON schemas
vendored in schemas/openlineage (offline) and compared with what the assets declare."""

import http.server
import json
import os
import threading
from pathlib import Path

import dagster as dg
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from lakehouse import settings
from lakehouse.defs.sensors import openlineage_events as sensor

SCHEMAS = Path(__file__).parent / "schemas" / "openlineage"
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"

# The oracle: what the test assets declare.
RAW_SCHEMA = dg.TableSchema(columns=[dg.TableColumn("id", "string"), dg.TableColumn("amount", "string")])
ORDERS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("order_id", "bigint", description="the order"),
        dg.TableColumn("amount_usd", "double", description="amount in USD"),
    ]
)
ORDERS_LINEAGE = {"order_id": [("bronze/ol_raw", "id")], "amount_usd": [("bronze/ol_raw", "amount")]}
DAILY_LINEAGE = {"revenue_usd": [("silver/ol_orders", "amount_usd")], "orders": [("silver/ol_orders", "order_id")]}


def column_lineage(deps: dict) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(
        deps_by_column={
            column: [dg.TableColumnDep(dg.AssetKey.from_user_string(key), field) for key, field in found]
            for column, found in deps.items()
        }
    )


raw = dg.AssetSpec(["bronze", "ol_raw"], metadata={"dagster/column_schema": RAW_SCHEMA})


@dg.asset(key=["silver", "ol_orders"], deps=[raw], metadata={"dagster/column_schema": ORDERS_SCHEMA})
def orders():
    # column lineage known when the asset runs: on the materialisation
    return dg.MaterializeResult(metadata={"dagster/column_lineage": column_lineage(ORDERS_LINEAGE)})


# column lineage known up front: on the spec
@dg.asset(key=["gold", "ol_daily"], deps=[orders], metadata={"dagster/column_lineage": column_lineage(DAILY_LINEAGE)})
def daily():
    return None


@dg.asset_check(asset=orders)
def orders_not_empty():
    return dg.AssetCheckResult(passed=True)


@dg.asset_check(asset=orders)
def orders_unique():
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=raw.key)
def raw_has_rows():
    return dg.AssetCheckResult(passed=True)


@dg.asset(key=["silver", "ol_broken"], deps=[raw])
def broken():
    raise ValueError("bronze/ol_raw has no column `id`")


ASSETS = [raw, orders, daily, broken]
CHECKS = [orders_not_empty, orders_unique, raw_has_rows]
DEFS = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, sensors=[sensor.openlineage_run_events])


def unset_openlineage(monkeypatch):
    for name in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE_DISABLED", "OPENLINEAGE_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("OPENLINEAGE__")]:
        monkeypatch.delenv(name)


@pytest.fixture
def lake_root(tmp_path, monkeypatch) -> Path:
    unset_openlineage(monkeypatch)
    monkeypatch.setenv("LAKEHOUSE_LAKE_ROOT", str(tmp_path / "lake"))
    return tmp_path / "lake"


@pytest.fixture
def event_file(tmp_path, lake_root, monkeypatch) -> Path:
    """openlineage-python's own file transport variables: one JSON event per line."""
    path = tmp_path / "openlineage.jsonl"
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(path))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    return path


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def run_both(instance) -> tuple[dg.ExecuteInProcessResult, dg.ExecuteInProcessResult]:
    """A run that succeeds (silver/ol_orders and gold/ol_daily, all three checks) and one that fails."""
    selection = dg.AssetSelection.assets(orders, daily) | dg.AssetSelection.checks(*CHECKS)
    good = dg.materialize([*ASSETS, *CHECKS], instance=instance, selection=selection)
    bad = dg.materialize(ASSETS, instance=instance, selection=[broken.key], raise_on_error=False)
    assert (good.success, bad.success) == (True, False)
    return good, bad


def tick(instance, cursor: str | None = None) -> tuple[dg.SkipReason, str | None]:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=DEFS)
    result = sensor.openlineage_run_events(context)
    return result, context.cursor


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def events(instance, event_file) -> tuple[list[dict], tuple]:
    runs = run_both(instance)
    tick(instance)
    return read_events(event_file), runs


def by_name(datasets: list[dict]) -> dict[str, dict]:
    return {d["name"]: d for d in datasets}


# -- the events are OpenLineage --------------------------------------------------------------------------


def schema_registry() -> Registry:
    resources = [Resource.from_contents(json.loads(p.read_text())) for p in sorted(SCHEMAS.rglob("*.json"))]
    return Registry().with_resources((r.contents["$id"], r) for r in resources)


def facets_of(event: dict):
    """Every facet of an event, with the name it is under."""
    yield from event["run"].get("facets", {}).items()
    yield from event["job"].get("facets", {}).items()
    for dataset in event.get("inputs", []) + event.get("outputs", []):
        for kind in ("facets", "inputFacets", "outputFacets"):
            yield from dataset.get(kind, {}).items()


def test_openlineage_events_validated_against_the_json_schemas(events):
    registry = schema_registry()
    checker = Draft202012Validator.FORMAT_CHECKER
    assert {"uuid", "date-time", "uri"} <= set(checker.checkers)  # the formats the spec uses are checked

    def validator(ref: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": ref}, registry=registry, format_checker=checker)

    found, _ = events
    facet_names = set()
    for event in found:
        validator(RUN_EVENT).validate(event)
        assert event["schemaURL"] == RUN_EVENT
        for name, facet in facets_of(event):
            validator(facet["_schemaURL"]).validate(facet)  # an unknown schema fails to resolve
            facet_file = registry.contents(facet["_schemaURL"].split("#")[0])
            assert name in facet_file["properties"], (name, facet["_schemaURL"])  # the facet's own name
            facet_names.add(name)
    assert facet_names == {"jobType", "schema", "columnLineage", "dataQualityAssertions", "errorMessage"}
    # and the validation does reject what breaks the spec
    broken = {**found[0], "run": {"runId": "not-a-uuid"}}
    assert not validator(RUN_EVENT).is_valid(broken)


def test_each_run_gives_start_then_complete_or_fail_in_order(events):
    found, (good, bad) = events
    assert [(e["eventType"], e["run"]["runId"]) for e in found] == [
        ("START", good.run_id),
        ("COMPLETE", good.run_id),
        ("START", bad.run_id),
        ("FAIL", bad.run_id),
    ]
    assert {(e["job"]["namespace"], e["job"]["name"]) for e in found} == {("lakehouse", good.job_def.name)}


def test_datasets_are_the_lake_tables_the_run_writes_and_reads(events, lake_root):
    found, _ = events
    names = [
        (sorted(d["name"] for d in e["inputs"]), sorted(d["name"] for d in e["outputs"]), e["eventType"]) for e in found
    ]
    # gold/ol_daily reads silver/ol_orders, which the same run writes: not an input from outside the run
    assert names == [
        (["bronze/ol_raw"], ["gold/ol_daily", "silver/ol_orders"], "START"),
        (["bronze/ol_raw"], ["gold/ol_daily", "silver/ol_orders"], "COMPLETE"),
        (["bronze/ol_raw"], ["silver/ol_broken"], "START"),
        (["bronze/ol_raw"], ["silver/ol_broken"], "FAIL"),
    ]
    namespaces = {d["namespace"] for e in found for d in e["inputs"] + e["outputs"]}
    assert namespaces == {lake_root.as_uri()}


def test_schema_facet_is_the_assets_column_schema(events):
    found, _ = events
    complete = by_name(found[1]["outputs"])
    schema = complete["silver/ol_orders"]["facets"]["schema"]
    fields = [(f["name"], f["type"], f.get("description")) for f in schema["fields"]]
    assert fields == [(c.name, c.type, c.description) for c in ORDERS_SCHEMA.columns]
    assert "schema" not in complete["gold/ol_daily"]["facets"]  # declares none


def lineage_entries(facet: dict) -> dict:
    return {
        column: sorted((i["name"], i["field"]) for i in deps["inputFields"]) for column, deps in facet["fields"].items()
    }


def test_column_lineage_facet_comes_from_the_materialisation_or_the_spec(events, lake_root):
    found, _ = events
    start, complete = by_name(found[0]["outputs"]), by_name(found[1]["outputs"])
    orders_lineage = complete["silver/ol_orders"]["facets"]["columnLineage"]
    assert lineage_entries(orders_lineage) == {c: sorted(deps) for c, deps in ORDERS_LINEAGE.items()}
    assert {i["namespace"] for f in orders_lineage["fields"].values() for i in f["inputFields"]} == {lake_root.as_uri()}
    daily_lineage = {c: sorted(deps) for c, deps in DAILY_LINEAGE.items()}
    assert lineage_entries(complete["gold/ol_daily"]["facets"]["columnLineage"]) == daily_lineage
    # before the run, only what the spec declares is known
    assert lineage_entries(start["gold/ol_daily"]["facets"]["columnLineage"]) == daily_lineage
    assert "columnLineage" not in start["silver/ol_orders"]["facets"]


def test_check_results_are_data_quality_assertions_of_the_checked_tables(events):
    found, _ = events
    start, complete, fail = found[0], found[1], found[3]

    def assertions(facet: dict) -> list:
        return [(a["assertion"], a["success"], a["severity"]) for a in facet["assertions"]]

    written = by_name(complete["outputs"])["silver/ol_orders"]["facets"]["dataQualityAssertions"]
    assert assertions(written) == [("orders_not_empty", True, "error"), ("orders_unique", False, "warn")]
    # a table the run only checks is read by it: the spec's place for assertions, an input facet
    read = by_name(complete["inputs"])["bronze/ol_raw"]["inputFacets"]["dataQualityAssertions"]
    assert assertions(read) == [("raw_has_rows", True, "error")]
    for event in (start, fail):
        assert not any("dataQualityAssertions" in str(d) for d in event["inputs"] + event["outputs"])


def test_a_failed_run_names_its_error(events):
    found, _ = events
    error = found[3]["run"]["facets"]["errorMessage"]
    assert error["message"] == "silver__ol_broken: ValueError: bronze/ol_raw has no column `id`"
    assert error["programmingLanguage"] == "python" and "raise ValueError" in error["stackTrace"]
    assert [e["run"].get("facets", {}) for e in found[:3]] == [{}, {}, {}]


# -- delivery ------------------------------------------------------------------------------------------------


def test_the_cursor_reports_each_run_once(instance, event_file):
    run_both(instance)
    first, cursor = tick(instance)
    again, same = tick(instance, cursor)
    assert (first.skip_message, again.skip_message, same) == ("sent 4 run event(s)", "sent 0 run event(s)", cursor)
    later = dg.materialize(ASSETS, instance=instance, selection=[orders.key])
    tick(instance, cursor)
    assert [(e["eventType"], e["run"]["runId"]) for e in read_events(event_file)[4:]] == [
        ("START", later.run_id),
        ("COMPLETE", later.run_id),
    ]


def test_nothing_is_sent_by_default(instance, lake_root, tmp_path):
    run_both(instance)
    result, cursor = tick(instance)
    assert result.skip_message == "no OpenLineage transport configured: skipped 4 run event(s)"
    assert cursor is not None and list(tmp_path.iterdir()) == []  # no file, and turning one on does not replay


class Collector(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Collector.received.append((self.path, self.headers["Authorization"], json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def lineage_server():
    Collector.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_transport_posts_each_event_to_the_openlineage_endpoint(instance, lake_root, lineage_server, monkeypatch):
    monkeypatch.setenv("OPENLINEAGE_URL", lineage_server)  # as for Marquez: POST <url>/api/v1/lineage
    monkeypatch.setenv("OPENLINEAGE_API_KEY", "secret-key")
    good, bad = run_both(instance)
    tick(instance)
    assert [(path, auth, e["eventType"], e["run"]["runId"]) for path, auth, e in Collector.received] == [
        ("/api/v1/lineage", "Bearer secret-key", "START", good.run_id),
        ("/api/v1/lineage", "Bearer secret-key", "COMPLETE", good.run_id),
        ("/api/v1/lineage", "Bearer secret-key", "START", bad.run_id),
        ("/api/v1/lineage", "Bearer secret-key", "FAIL", bad.run_id),
    ]


# -- configuration -------------------------------------------------------------------------------------------


def test_transport_configuration_uses_openlineage_pythons_variables(tmp_path, monkeypatch):
    unset_openlineage(monkeypatch)
    assert settings.openlineage_transport() is None
    monkeypatch.setenv("OPENLINEAGE_URL", "http://marquez:5000")
    http = {"type": "http", "url": "http://marquez:5000", "endpoint": "api/v1/lineage"}
    assert settings.openlineage_transport() == http
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", "/tmp/ol.jsonl")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    assert settings.openlineage_transport() == {"type": "file", "log_file_path": "/tmp/ol.jsonl", "append": True}
    config = tmp_path / "openlineage.yml"
    config.write_text("transport:\n  type: kafka\n  topic: lineage\n  config: {bootstrap.servers: 'k:9092'}\n")
    monkeypatch.setenv("OPENLINEAGE_CONFIG", str(config))
    kafka = {"type": "kafka", "topic": "lineage", "config": {"bootstrap.servers": "k:9092"}}
    assert settings.openlineage_transport() == kafka
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    assert settings.openlineage_transport() is None
