"""Erasing a customer (`forget`): every layer, every store, every copy, old Delta versions, and what comes later
(a re-sent landing file, a Kafka replay). The oracle is a plain scan: every string value of every table, every
line of every landing file and every served row, searched for the customer's id in any case.

One lake of its own (the job rewrites it): the generator's days plus ugly records of the customer (a malformed
CRM line, an order with a bad amount, a poison Kafka message, the id in lower case), landed and built through
Bronze, Silver, Gold, streaming, the Postgres serving store and Snowflake (fakesnow: no local Snowflake exists).
"""

import json
import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import fakesnow
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from lakehouse import catalog
from lakehouse.defs import erasure as forget
from lakehouse.defs.bronze import streaming as bronze
from lakehouse.defs.silver import sessions as silver_sessions
from lakehouse.defs.silver import support_tickets as silver_tickets
from lakehouse.dev.generator import generate
from lakehouse.lib.erasure import subject_hash
from lakehouse.lib.kafka import KafkaResource
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.serving import ServingDatabase
from lakehouse.lib.snowflake import LazySnowflakeResource
from lakehouse.lib.spark import SparkEngine
from lakehouse_tests.helpers import DAY_KEYS, DAYS, SCALE, SEED, START, materialize
from lakehouse_tests.kafka_fixtures import materialization, produce_days, produce_json, run, session_broker
from lakehouse_tests.postgres_fixtures import postgres_server  # noqa: F401 - fixture
from lakehouse_tests.test_gold import build_gold
from lakehouse_tests.test_publish import publish as publish_to_snowflake
from lakehouse_tests.test_serving import sync as serve

TODAY = datetime.now(UTC).date().isoformat()
STREAMING = {"clickstream_events", "support_ticket_changes"}


def victim_of(landing: Path) -> str:
    """A customer with orders, clicks and support tickets: the lowest such id."""
    ordered = set(re.findall(r"C\d{7}", (landing / "orders").joinpath(f"{DAY_KEYS[0]}.csv").read_text()))
    clicked = {i for _, line in bronze_messages("clickstream") for i in re.findall(r"C\d{7}", line)}
    ticketed = {i for _, line in bronze_messages("support_tickets_cdc") for i in re.findall(r"C\d{7}", line)}
    return min(ordered & clicked & ticketed)


def bronze_messages(topic: str):
    from lakehouse.dev.producer import messages

    return messages(topic, START, DAYS, SCALE, SEED)


def add_ugly_records(landing: Path, victim: str) -> None:
    """The customer in the places a plain column scan misses: a CRM line that is not JSON (Bronze keeps it in
    `_rescued_data`, Silver quarantines it), and an order with a bad amount (quarantined with its `_record`)."""
    with (landing / "crm_customers" / f"{DAY_KEYS[0]}.jsonl").open("a") as f:
        f.write(f'{{"customer_id": "{victim.lower()}", "email": "broken\n')
    orders = landing / "orders" / f"{DAY_KEYS[0]}.csv"
    header = orders.read_text().splitlines()[0].split(",")
    bad = {c: "" for c in header} | {
        "order_id": "O-ERASE-1",
        "customer_id": victim,
        "order_ts": f"{DAY_KEYS[0]}T10:00:00Z",
        "amount": "abc",
        "currency": "USD",
        "updated_at": f"{DAY_KEYS[0]}T10:00:00Z",
    }
    with orders.open("a") as f:
        f.write(",".join(bad[c] for c in header) + "\n")


def naming(values, victim: str) -> int:
    return sum(1 for v in values if isinstance(v, str) and victim in v.upper())


def rows_naming(dt: DeltaTable, victim: str) -> int:
    """Rows with the id in any string column (the oracle: not the job's subject/raw columns)."""
    table = dt.to_pyarrow_table()
    strings = [table.column(f.name).to_pylist() for f in table.schema if str(f.type) in ("string", "large_string")]
    return sum(1 for row in zip(*strings, strict=True) if naming(row, victim))


def lake_census(lake: DeltaLake, victim: str) -> dict[str, tuple[int, int, int]]:
    """{layer/table: (rows, rows naming the customer, version)} for every table of the lake."""
    census = {}
    for t in lake.tables():
        dt = lake.delta_table(t["layer"], t["name"])
        census[f"{t['layer']}/{t['name']}"] = (t["rows"], rows_naming(dt, victim), dt.version())
    return census


def landing_lines(landing: Path, victim: str) -> dict[str, tuple[int, int]]:
    """{source/file: (lines, lines naming the customer)}."""
    found = {}
    for path in sorted(landing.glob("*/*")):
        lines = path.read_text(errors="replace").splitlines()
        found[f"{path.parent.name}/{path.name}"] = (len(lines), naming(lines, victim))
    return found


def served_rows(dsn: str, victim: str) -> dict[str, tuple[int, int]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(
                f"SELECT count(*), count(*) FILTER (WHERE upper(customer_id) = %s) FROM {t}", [victim]
            ).fetchone()
            for t in ("customer_360",)
        }


def snowflake_rows(snowflake, victim: str) -> dict[str, tuple[int, int]]:
    found = {}
    with snowflake.get_connection() as conn:
        cursor = conn.cursor()
        for mart in ("CUSTOMER_360", "RFM_SEGMENTS", "CHURN_FEATURES"):
            cursor.execute(f"SELECT count(*), count_if(upper(customer_id) = '{victim}') FROM {mart}")
            found[mart] = tuple(cursor.fetchone())
    return found


@pytest.fixture(scope="module")
def world(request, tmp_path_factory, sail_url, postgres_server):  # noqa: F811 - fixture
    """Everything built, the customer's copies counted, then one `forget` run (ids passed hashed, as the CLI does)."""
    import psycopg

    home = tmp_path_factory.mktemp("erasure_home")
    database = "lakehouse_test_erasure"
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{database}"')
    dsn = postgres_server.dsn(database)
    with pytest.MonkeyPatch.context() as env, fakesnow.patch():
        env.setenv("LAKEHOUSE_HOME", str(home))
        env.setenv("LAKEHOUSE_SERVING_DSN", dsn)
        landing = home / "landing"
        generate(landing, START, DAYS, SCALE, SEED)
        victim = victim_of(landing)
        add_ugly_records(landing, victim)
        originals = {p: p.read_bytes() for p in landing.glob("*/*")}

        lake = DeltaLake(root=str(home / "lake"))
        broker = session_broker(request.config, "tansu", tmp_path_factory)
        kafka = KafkaResource(bootstrap_servers=broker.bootstrap, topic_prefix="erasure.")
        for topic in ("clickstream", "support_tickets_cdc"):
            kafka.create_topic(topic, 3)
            produce_days(kafka, topic, START, DAYS, SCALE, SEED)
        produce_json(kafka, "clickstream", [f"not json, from {victim}"])  # a poison message: only _raw names them
        resources = {"spark": SparkEngine(remote=sail_url), "lake": lake, "kafka": kafka}
        assert materialize(resources, DAY_KEYS[0], DAY_KEYS[-1]).success
        for asset in (bronze.clickstream_events, bronze.support_ticket_changes):
            run(resources, asset, TODAY)
        for asset in (silver_sessions.sessions, silver_tickets.support_tickets):
            run(resources, asset, TODAY)
        assert build_gold(resources, DAY_KEYS[0], DAY_KEYS[-1]).success
        assert serve(lake, dsn).success
        snowflake = LazySnowflakeResource(
            account="fake", user="fake", password="fake", database="LAKEHOUSE", schema="GOLD", warehouse="COMPUTE_WH"
        )
        publish_to_snowflake(lake, snowflake)

        before = {
            "lake": lake_census(lake, victim),
            "landing": landing_lines(landing, victim),
            "mtimes": {p: p.stat().st_mtime_ns for p in landing.glob("*/*")},
            "served": served_rows(dsn, victim),
            "snowflake": snowflake_rows(snowflake, victim),
        }
        instance = dg.DagsterInstance.ephemeral()
        job_resources = {"lake": lake, "serving": ServingDatabase(dsn=dsn), "snowflake": snowflake}

        def erase(**config) -> dg.ExecuteInProcessResult:
            return forget.forget_job(snowflake_configured=True).execute_in_process(
                run_config={"ops": {"forget_customers": {"config": config}}},
                resources=job_resources,
                instance=instance,
                raise_on_error=False,
            )

        result = erase(customer_id_hashes=[subject_hash(victim)])
        yield {
            "victim": victim,
            "home": home,
            "landing": landing,
            "originals": originals,
            "lake": lake,
            "kafka": kafka,
            "dsn": dsn,
            "snowflake": snowflake,
            "resources": resources,
            "instance": instance,
            "erase": erase,
            "result": result,
            "before": before,
        }


def failure(result: dg.ExecuteInProcessResult) -> str:
    return "".join(str(e.step_failure_data.error) for e in result.all_events if e.is_step_failure)


def observed(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.event_specific_data.asset_observation.metadata.items()}
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    }


def test_the_world_names_the_customer_in_every_kind_of_copy_before_the_erasure(world):
    """The test data is worth something: the customer is in each layer, raw text and quarantine included."""
    named = {t for t, (_, n, _) in world["before"]["lake"].items() if n}
    assert {
        "bronze/crm_customers",
        "bronze/orders",
        "bronze/clickstream_events",
        "bronze/support_ticket_changes",
        "silver/customers",
        "silver/customers_quarantine",
        "silver/orders",
        "silver/orders_quarantine",
        "silver/sessions",
        "silver/sessions_quarantine",
        "silver/support_tickets",
        "gold/customer_360",
        "gold/rfm_segments",
        "gold/churn_features",
    } <= named
    assert world["before"]["served"]["customer_360"][1] == 1
    assert world["before"]["snowflake"]["CUSTOMER_360"][1] == 1


def test_no_table_of_the_lake_names_the_customer_afterwards(world):
    assert world["result"].success, failure(world["result"])
    after = lake_census(world["lake"], world["victim"])
    assert {t: n for t, (_, n, _) in after.items() if n} == {}


def test_every_other_row_stays_and_streaming_rows_become_tombstones(world):
    """Rows removed = rows that named the customer, per table; a streaming table keeps each offset as a tombstone."""
    after = lake_census(world["lake"], world["victim"])
    for table, (rows, named, _) in world["before"]["lake"].items():
        expected = rows if table.split("/")[1] in STREAMING else rows - named
        assert after[table][0] == expected, table
    tombstones = DeltaTable(world["lake"].path("bronze", "clickstream_events")).to_pyarrow_table(
        columns=["_parse_error", "_raw", "user_id", "kafka_key", "kafka_offset"]
    )
    erased = [r for r in tombstones.to_pylist() if r["_parse_error"] == forget.erasure.ERASED]
    assert len(erased) == world["before"]["lake"]["bronze/clickstream_events"][1]
    assert all(r["_raw"] is None and r["user_id"] is None and r["kafka_key"] is None for r in erased)


def test_each_table_records_how_many_rows_it_lost_without_the_id(world):
    obs = observed(world["result"])
    for table, (_, named, _) in world["before"]["lake"].items():
        if named:
            assert obs[table]["erasure/rows_removed"] == named, table
    assert obs["serve/customer_360"]["erasure/rows_removed"] == 1
    assert obs["publish/snowflake/customer_360"]["erasure/rows_removed"] == 1
    landing = {
        s: sum(n for f, (_, n) in world["before"]["landing"].items() if f.startswith(s + "/")) for s in ("orders",)
    }
    assert obs["bronze/orders"]["erasure/landing_lines_removed"] == landing["orders"]
    assert all(o["erasure/customers"] == 1 for o in obs.values())


def test_nothing_in_the_runs_event_log_or_the_register_holds_the_id(world):
    records = world["instance"].all_logs(world["result"].run_id)
    text = json.dumps([r.to_json() if hasattr(r, "to_json") else str(r) for r in records]) + str(
        world["instance"].get_run_by_id(world["result"].run_id).run_config
    )
    assert world["victim"] not in text.upper()
    register = DeltaTable(world["lake"].erasure_register().path).to_pyarrow_table().to_pylist()
    assert [r["subject_hash"] for r in register] == [subject_hash(world["victim"])]
    assert world["victim"] not in json.dumps(register, default=str).upper()


def test_no_earlier_delta_version_or_file_left_on_disk_holds_the_customer(world):
    """Time travel to before the erasure is gone, and no Parquet file or log entry under any table has the id."""
    for table, (_, named, version) in world["before"]["lake"].items():
        if not named:
            continue
        with pytest.raises(Exception):  # noqa: B017 - delta-rs: no log segment for that version any more
            DeltaTable(world["lake"].path(*table.split("/")), version=version).to_pyarrow_table()
        folder = Path(world["lake"].path(*table.split("/")))
        for parquet in folder.rglob("*.parquet"):
            data = pq.read_table(parquet).to_pylist()
            assert world["victim"] not in json.dumps(data, default=str).upper(), parquet
        for log in (folder / "_delta_log").glob("*.json"):
            assert world["victim"] not in log.read_text().upper(), log


def test_landing_files_lose_exactly_the_customers_lines_and_keep_their_times(world):
    after = landing_lines(world["landing"], world["victim"])
    assert after == {f: (lines - named, 0) for f, (lines, named) in world["before"]["landing"].items()}
    assert {p: p.stat().st_mtime_ns for p in world["landing"].glob("*/*")} == world["before"]["mtimes"]


def test_the_serving_store_and_snowflake_lose_the_customers_rows_only(world):
    assert served_rows(world["dsn"], world["victim"]) == {
        t: (n - named, 0) for t, (n, named) in world["before"]["served"].items()
    }
    assert snowflake_rows(world["snowflake"], world["victim"]) == {
        t: (n - named, 0) for t, (n, named) in world["before"]["snowflake"].items()
    }


def test_an_unknown_id_is_a_clear_error_and_changes_nothing(world):
    register = world["lake"].erasure_register().hashes()
    result = world["erase"](customer_ids=["C9999999"])
    assert not result.success
    assert failure(result).splitlines()[0] == (
        "dagster._core.definitions.events.Failure: forget: no table, landing file or register entry names "
        "customer_ids[0]; nothing was erased"
    )
    assert world["lake"].erasure_register().hashes() == register


def test_erasing_again_succeeds_and_removes_nothing(world):
    again = world["erase"](customer_ids=[world["victim"]])
    assert again.success, failure(again)
    [output] = [e for e in again.all_events if e.is_successful_output]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert (metadata["customers_found"], metadata["newly_registered"], metadata["rows_removed"]) == (0, 0, {})


def test_a_resent_landing_file_is_landed_without_the_customer(world):
    """The source sends day 1 again with the customer in it: Bronze drops their rows and accounts for them."""
    orders = world["landing"] / "orders" / f"{DAY_KEYS[0]}.csv"
    original = world["originals"][orders]
    orders.write_bytes(original)
    result = materialize(world["resources"], DAY_KEYS[0], DAY_KEYS[0])
    assert result.success
    [landed] = [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["bronze", "orders"])
    ]
    assert landed["rows_erased"].value == naming(original.decode().splitlines(), world["victim"])
    assert rows_naming(world["lake"].delta_table("bronze", "orders"), world["victim"]) == 0
    assert rows_naming(world["lake"].delta_table("silver", "orders"), world["victim"]) == 0
    accounted = {
        c.asset_key.to_user_string(): c.passed
        for c in result.get_asset_check_evaluations()
        if c.check_name == "rows_accounted_for"
    }
    assert accounted == {
        t: True
        for t in (
            "bronze/crm_customers",
            "bronze/fx_rates",
            "bronze/orders",
            "silver/customers",
            "silver/fx_rates",
            "silver/orders",
        )
    }


def test_a_kafka_replay_lands_the_customers_messages_as_tombstones(world):
    """A new epoch lands the topic again from offset 0: the customer's messages land emptied, Silver skips them."""
    lake, resources = world["lake"], world["resources"]
    bronze.start_new_epoch(lake, "clickstream_events")
    landed = materialization(run(resources, bronze.clickstream_events, TODAY), bronze.clickstream_events)
    sent = [line for _, line in bronze_messages("clickstream")] + [f"not json, from {world['victim']}"]
    assert landed["rows_erased"] == naming(sent, world["victim"])
    assert landed["rows_written"] + landed["rows_erased"] == len(sent)
    run(resources, silver_sessions.sessions, TODAY)
    for table in ("bronze/clickstream_events", "silver/sessions", "silver/sessions_quarantine"):
        assert rows_naming(lake.delta_table(*table.split("/")), world["victim"]) == 0, table


def test_the_cli_erases_through_the_instance_and_names_an_unknown_id_by_its_position(world):
    env = {**os.environ, "LAKEHOUSE_HOME": str(world["home"]), "LAKEHOUSE_SERVING_DSN": world["dsn"]}
    env.pop("DAGSTER_HOME", None)
    done = subprocess.run(["lakehouse", "forget", "C9999998"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(
        "no table, landing file or register entry names hash " + subject_hash("C9999998")[:12] + "; nothing was erased"
    )
    ok = subprocess.run(["lakehouse", "forget", world["victim"]], env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert '"newly_registered": 0' in ok.stdout  # the re-sent file above named them again: it finds them there
    assert catalog.marts()["customer_360"].subject == "customer_id"
