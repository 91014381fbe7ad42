"""Gold: the dbt marts as Dagster assets. Expected values are computed here, in plain Python, from the
generator's landing files (the same rules Silver applies, written independently), never by running
the marts' SQL again."""

import csv
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
import yaml
from deltalake import DeltaTable, write_deltalake
from packaging import version
from sqlglot.errors import OptimizeError

from lakehouse import catalog
from lakehouse.defs.gold import dbt as gold
from lakehouse.dev import generator
from lakehouse.lib import lineage, partitions, warm_dbt
from lakehouse.lib.lake import DeltaLake
from lakehouse_tests.helpers import DAY_KEYS, DEFS, SCALE, range_tags, read_rows

DAYS = [date.fromisoformat(d) for d in DAY_KEYS]
CENT = Decimal("0.01")
INCREMENTAL = {
    "revenue_daily": "order_date",
    "product_performance_daily": "order_date",
    "daily_kpis": "date_day",
    "churn_features": "snapshot_date",
}
MARTS = [*INCREMENTAL, "customer_360", "rfm_segments"]
SINGULAR_TESTS = {
    "assert_revenue_daily_matches_silver_orders",
    "assert_customer_360_one_row_per_current_customer",
    "assert_daily_kpis_agree_with_revenue_daily",
}


SILVER_TABLES = ["customers", "customers_quarantine", "fx_rates", "fx_rates_quarantine", "orders", "orders_quarantine"]


def build_gold(resources: dict, first: str, last: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [gold.gold_dbt], resources={**resources, "dbt": gold.dbt_resource()}, tags=range_tags(first, last)
    )


@pytest.fixture(scope="module")
def gold_run(batch_run, resources) -> dg.ExecuteInProcessResult:
    """Gold for the whole generated window, in one run (and so one dbt invocation)."""
    result = build_gold(resources, DAY_KEYS[0], DAY_KEYS[-1])
    assert result.success
    return result


# -- The generator's data, read and cleaned independently of the pipeline -----------------------------------


def parse_ts(value) -> datetime | None:
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def parse_decimal(value) -> Decimal | None:
    try:
        return Decimal(value)
    except (TypeError, InvalidOperation):
        return None


def landing_lines(landing: Path, source: str, day: date) -> list[str]:
    return generator.landing_file(landing, source, day).read_text().splitlines()


def raw_customer_records(landing: Path) -> list[dict]:
    return [json.loads(line) for day in DAYS for line in landing_lines(landing, "crm_customers", day)]


@pytest.fixture(scope="module")
def expected(manifest) -> dict:
    """Customers (versions), orders with amount_usd and the as-of country, from the landing files."""
    landing = Path(manifest["landing_dir"])
    versions = {}
    for record in raw_customer_records(landing):
        ts = parse_ts(record.get("updated_at"))
        if record.get("customer_id") and record["customer_id"].strip() and ts:
            versions[(record["customer_id"], ts)] = record
    history = defaultdict(list)
    for (customer_id, ts), record in sorted(versions.items()):
        history[customer_id].append((ts, record))
    rates = {}
    for day in DAYS:
        for row in csv.DictReader(landing_lines(landing, "fx_rates", day)):
            rate = parse_decimal(row["rate_to_usd"])
            if re.fullmatch(r"[A-Z]{3}", row["currency"]) and rate is not None and rate > 0:
                rates[(date.fromisoformat(row["date"]), row["currency"])] = rate
    orders = {}
    for day in DAYS:
        for row in csv.DictReader(landing_lines(landing, "orders", day)):
            ordered_at, amount = parse_ts(row["order_ts"]), parse_decimal(row["amount"])
            if not row["order_id"].strip() or ordered_at is None or amount is None or amount < 0:
                continue
            order_date = ordered_at.date()  # the order's own date, whichever day's file brought this version
            if row["customer_id"] not in history or (order_date, row["currency"]) not in rates:
                continue
            previous = orders.get(row["order_id"])
            if previous and parse_ts(previous["updated_at"]) >= parse_ts(row["updated_at"]):
                continue
            versions_then = history[row["customer_id"]]
            valid = [record for ts, record in versions_then if ts <= ordered_at]
            orders[row["order_id"]] = {
                **row,
                "order_date": order_date,
                "ordered_at": ordered_at,
                "amount": amount,
                "quantity": int(row["quantity"]),
                "amount_usd": (amount * rates[(order_date, row["currency"])]).quantize(CENT, ROUND_HALF_UP),
                "country": (valid[-1] if valid else versions_then[0][1])["country"],
            }
    current = {c: v[-1][1] for c, v in history.items()}
    return {"orders": list(orders.values()), "current": current}


def gold_rows(lake: DeltaLake, table: str) -> list[dict]:
    return read_rows(lake, "gold", table)


# -- The asset graph ---------------------------------------------------------------------------------------


def test_every_model_is_a_daily_partitioned_gold_asset_downstream_of_silver():
    assets = gold.gold_dbt
    assert {k.to_user_string() for k in assets.keys} == {f"gold/{m}" for m in MARTS}
    assert set(assets.group_names_by_key.values()) == {"gold"}
    assert assets.partitions_def == partitions.daily
    assert assets.backfill_policy == dg.BackfillPolicy.single_run()
    deps = {k.path[-1]: {d.to_user_string() for d in v} for k, v in assets.asset_deps.items()}
    assert deps["revenue_daily"] == {"silver/orders", "silver/customers"}
    assert {"silver/sessions", "silver/support_tickets", "gold/rfm_segments"} <= deps["customer_360"]
    specs = {s.key.to_user_string(): s for s in assets.specs}
    assert specs["gold/revenue_daily"].description.startswith("Revenue per day")
    columns = {c.name: c.description for c in specs["gold/revenue_daily"].metadata["dagster/column_schema"].columns}
    assert columns["revenue_usd"].startswith("Revenue in USD")


def test_dbt_tests_are_asset_checks_and_gold_is_in_the_batch_job():
    checks = {c.asset_key.path[-1]: set() for c in gold.gold_dbt.check_keys}
    for c in gold.gold_dbt.check_keys:
        checks[c.asset_key.path[-1]].add(c.name)
    assert "assert_revenue_daily_matches_silver_orders" in checks["revenue_daily"]
    assert "unique_customer_360_customer_id" in checks["customer_360"]
    assert SINGULAR_TESTS <= set().union(*checks.values())
    job = DEFS.resolve_job_def("batch")
    assert {f"gold/{m}" for m in MARTS} <= {k.to_user_string() for k in job.asset_layer.executable_asset_keys}


def test_dbt_gets_the_partition_window_the_lakes_tables_and_the_assets_engine(sail_url, lake, batch_run, tmp_path):
    # As environment variables dbt's macros read at execution only: --vars would force a full re-parse
    env = gold.dbt_env(date(2026, 11, 1), date(2026, 11, 8), lake)
    assert {name: json.loads(value) for name, value in env.items()} == {
        "LAKEHOUSE_DBT_START_DATE": "2026-11-01",
        "LAKEHOUSE_DBT_END_DATE": "2026-11-08",
        "LAKEHOUSE_DBT_LAKE_ROOT": lake.root,
        "LAKEHOUSE_DBT_LAKE_TABLES": [f"silver/{t}" for t in SILVER_TABLES]
        + [f"gold/{m}" for m in lake.table_names("gold")],
    }
    # The engine's endpoint goes into a profiles.yml of the run's own, not into this process's environment;
    # the connection dbt hashes (host, schema) stays the project's
    dbt = gold.dbt_resource()
    profiles = yaml.safe_load(gold.write_run_profiles(dbt, sail_url, tmp_path).read_text())
    target = profiles["lakehouse"]["outputs"]["spark"]
    project = yaml.safe_load((gold.DBT_PROJECT_DIR / "profiles.yml").read_text())["lakehouse"]["outputs"]["spark"]
    assert (target["host"], target["schema"]) == (project["host"], project["schema"])
    assert target["server_side_parameters"] == {"spark.sql.session.timeZone": "UTC", "spark.remote": sail_url}
    run_dbt = gold.with_profiles_dir(dbt, tmp_path)
    assert (run_dbt.profiles_dir, run_dbt.project_dir) == (str(tmp_path), dbt.project_dir)


def test_dbt_starts_once_per_run_and_no_adapter_is_built_in_the_runs_process(monkeypatch):
    # dagster-dbt would run `dbt --version` first (a second dbt start-up): this environment's dbt-core answers
    monkeypatch.setattr("dagster_dbt.core.resource.check_output", lambda *a, **k: pytest.fail("dbt started"))
    dbt = gold.dbt_resource()
    assert dbt._cli_version == version.parse(importlib.metadata.version("dbt-core"))
    assert dbt._initialize_dbt_core_adapter(["build"]) is None
    # a dbt executable named by path may be another installation: it is asked for its version
    monkeypatch.setattr("dagster_dbt.core.resource.check_output", lambda *a, **k: b"Core:\n  - installed: 1.10.2\n")
    other = gold.DbtCli(project_dir=gold.dbt_project, dbt_executable=shutil.which("dbt"))
    assert other._cli_version == version.parse("1.10.2")


def start_warm_dbt() -> warm_dbt.WarmDbt:
    project = str(gold.DBT_PROJECT_DIR)
    return warm_dbt.WarmDbt(shutil.which("dbt"), project, project)


@pytest.fixture(scope="module")
def warm():
    warm = start_warm_dbt()
    yield warm
    warm.close()


def dbt_pids(stdout: str) -> set[int]:
    return {json.loads(line)["info"]["pid"] for line in stdout.splitlines() if line.startswith("{")}


def test_the_warm_dbt_answers_as_dbt_from_a_fork_of_the_process_that_imported_it(warm, tmp_path):
    command = ["--log-format", "json", "debug", "--config-dir"]
    client = subprocess.Popen([warm.executable, *command], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    stdout, _ = client.communicate(timeout=60)
    assert client.returncode == 0
    assert "To view your profiles.yml file" in stdout
    (pid,) = dbt_pids(stdout)
    assert pid != client.pid  # not the real dbt, exec'd by the client script
    assert warm.process.poll() is None  # the warm process stays for the run's next dbt command


def test_the_warm_dbt_exits_with_dbts_exit_code(warm, tmp_path):
    client = subprocess.run([warm.executable, "no-such-command"], cwd=tmp_path, capture_output=True, text=True)
    dbt = subprocess.run(["dbt", "no-such-command"], cwd=tmp_path, capture_output=True, text=True)
    assert (client.returncode, client.stderr) == (dbt.returncode, dbt.stderr)
    assert dbt.returncode == 2
    assert "No such command 'no-such-command'" in client.stderr


def test_an_interrupted_warm_dbt_stops_the_dbt_it_forked(warm, tmp_path):
    # dagster-dbt stops dbt with SIGINT when a run is terminated; `dbt init` waits for an answer meanwhile
    env = {**os.environ, "DBT_PROFILES_DIR": str(tmp_path)}
    client = subprocess.Popen(
        [warm.executable, "init"], cwd=tmp_path, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert "Running with dbt" in client.stdout.readline()
    client.send_signal(signal.SIGINT)
    assert client.wait(timeout=30) != 0
    assert not (tmp_path / "dbt_project.yml").exists()


def test_a_command_after_the_warm_dbts_own_parse_connects_with_the_commands_profile(warm, sail_url, tmp_path):
    # The warm process parsed the project with the project's profile; dbt keeps the first adapter it registers
    dbt = gold.dbt_resource()
    profiles = yaml.safe_load(gold.write_run_profiles(dbt, sail_url, tmp_path).read_text())
    profiles["lakehouse"]["outputs"]["spark"]["schema"] = "not_the_projects"
    (tmp_path / "profiles.yml").write_text(yaml.safe_dump(profiles))
    sql = "select '{{ adapter.config.credentials.schema }}' as schema_connected_to"
    flags = [
        "--project-dir",
        str(gold.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(tmp_path),
        "--target-path",
        str(tmp_path / "target"),
    ]
    client = subprocess.run(
        [warm.executable, "compile", *flags, "--inline", sql], cwd=tmp_path, capture_output=True, text=True
    )
    assert client.returncode == 0, client.stdout[-2000:]
    assert "select 'not_the_projects' as schema_connected_to" in client.stdout


def test_without_the_warm_process_the_client_runs_the_real_dbt(tmp_path):
    warm = start_warm_dbt()
    warm.process.kill()
    warm.process.wait()
    client = subprocess.Popen(
        [warm.executable, "--log-format", "json", "debug", "--config-dir"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    stdout, _ = client.communicate(timeout=60)
    warm.close()
    assert (client.returncode, dbt_pids(stdout)) == (0, {client.pid})


# -- A run ---------------------------------------------------------------------------------------------------


def test_a_range_is_one_dbt_invocation_and_every_check_passes(gold_run):
    steps = [e for e in gold_run.all_events if e.event_type_value == "STEP_START"]
    assert len(steps) == 1
    # dagster-dbt gives each dbt invocation its own target folder: one for the whole range
    invocations = list((gold.DBT_PROJECT_DIR / "target").glob(f"gold_dbt-{gold_run.run_id[:7]}-*"))
    assert len(invocations) == 1
    run_results = json.loads((invocations[0] / "run_results.json").read_text())
    # The run's window is the filter of the daily models' writes
    end = (DAYS[-1] + timedelta(days=1)).isoformat()
    written = next((invocations[0] / "run").rglob("revenue_daily.sql")).read_text()
    assert f"order_date >= date'{DAY_KEYS[0]}' and order_date < date'{end}'" in written
    # dbt reused the project's parse: neither the window nor the engine's endpoint invalidates it
    log = [json.loads(line)["info"]["name"] for line in (invocations[0] / "dbt.log").read_text().splitlines()]
    assert "PartialParsingSkipParsing" in log and "UnableToPartialParse" not in log
    # The engine's endpoint (an sc:// URL may carry a token) reached dbt through the run's own profiles.yml,
    # removed after the run, and is in none of dbt's artifacts or logs
    assert not Path(run_results["args"]["profiles_dir"]).exists()
    assert not any("sc://" in f.read_text(errors="replace") for f in invocations[0].iterdir() if f.is_file())
    evaluations = gold_run.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == {c.name for c in gold.gold_dbt.check_keys}
    assert SINGULAR_TESTS <= {e.check_name for e in evaluations}
    assert all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]


def revenue_daily(rows: list[dict]) -> dict[tuple, list]:
    """(order_date, country, category, currency) -> [orders, units, revenue, revenue_usd] of revenue_daily rows."""
    keys, figures = ("order_date", "country", "category", "currency"), ("orders", "units", "revenue", "revenue_usd")
    return {tuple(r[k] for k in keys): [r[f] for f in figures] for r in rows}


def expected_revenue_daily(expected: dict) -> dict[tuple, list]:
    want = defaultdict(lambda: [0, 0, Decimal(0), Decimal(0)])
    for o in expected["orders"]:
        row = want[(o["order_date"], o["country"], o["category"], o["currency"])]
        row[0], row[1] = row[0] + 1, row[1] + o["quantity"]
        row[2], row[3] = row[2] + o["amount"], row[3] + o["amount_usd"]
    return dict(want)


def test_revenue_daily_equals_the_generators_orders(gold_run, expected, lake):
    got = revenue_daily(gold_rows(lake, "revenue_daily"))
    assert got == expected_revenue_daily(expected)
    per_day = defaultdict(int)
    for (day, *_), (orders, *_) in got.items():
        per_day[day] += orders
    # and the count per day is what the generator made: its clean orders, no duplicates, no bad rows
    assert per_day == {day: round(generator.ORDERS * SCALE) for day in DAYS}


def test_product_performance_daily_equals_the_generators_orders(gold_run, expected, lake):
    want = defaultdict(lambda: {"orders": 0, "units": 0, "revenue_usd": Decimal(0), "customers": set()})
    for o in expected["orders"]:
        row = want[(o["order_date"], o["product_id"])]
        row["orders"] += 1
        row["units"] += o["quantity"]
        row["revenue_usd"] += o["amount_usd"]
        row["customers"].add(o["customer_id"])
    got = {(r["order_date"], r["product_id"]): r for r in gold_rows(lake, "product_performance_daily")}
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        assert (g["orders"], g["units"], g["revenue_usd"], g["customers"]) == (
            w["orders"],
            w["units"],
            w["revenue_usd"],
            len(w["customers"]),
        ), key
        better = {v["revenue_usd"] for k, v in want.items() if k[0] == key[0] and v["revenue_usd"] > w["revenue_usd"]}
        assert g["revenue_rank"] == len(better) + 1


def test_daily_kpis_equal_the_generators_figures(gold_run, expected, manifest, lake):
    got = {r["date_day"]: r for r in gold_rows(lake, "daily_kpis")}
    assert set(got) == set(DAYS)
    for day in DAYS:
        orders = [o for o in expected["orders"] if o["order_date"] == day]
        revenue = sum(o["amount_usd"] for o in orders)
        row = got[day]
        assert row["orders"] == len(orders)
        assert row["revenue_usd"] == revenue
        assert row["buyers"] == len({o["customer_id"] for o in orders})
        # no Silver sessions in this lake: active users are the day's buyers, no session figures
        assert row["active_users"] == row["buyers"]
        assert (row["sessions"], row["bounce_rate"], row["avg_session_length_seconds"]) == (0, None, None)
        assert abs(row["avg_order_value_usd"] - revenue / len(orders)) <= CENT
        signups = round((generator.BASE_CUSTOMERS if day == DAYS[0] else generator.NEW_CUSTOMERS) * SCALE)
        assert row["new_users"] == signups


def mask_email(email: str) -> str:
    local, domain = email.split("@")
    return f"{local[0]}***@{domain[0]}***.{domain.rsplit('.', 1)[-1]}"


def test_customer_360_has_one_masked_row_per_current_customer(gold_run, expected, lake):
    got = {r["customer_id"]: r for r in gold_rows(lake, "customer_360")}
    assert set(got) == set(expected["current"])
    by_customer = defaultdict(list)
    for o in expected["orders"]:
        by_customer[o["customer_id"]].append(o)
    for customer_id, profile in expected["current"].items():
        row, orders = got[customer_id], by_customer[customer_id]
        assert row["email_masked"] == mask_email(profile["email"])
        assert row["phone_masked"] == "***-" + profile["phone"][-4:]
        assert row["name_initials"] == f"{profile['first_name'][0].upper()}. {profile['last_name'][0].upper()}."
        assert (row["country"], row["signup_date"]) == (profile["country"], date.fromisoformat(profile["signup_date"]))
        assert row["orders_count"] == len(orders)
        assert row["lifetime_value_usd"] == sum((o["amount_usd"] for o in orders), Decimal("0.00"))
        assert row["last_order_at"] == max((o["ordered_at"] for o in orders), default=None)
        assert (row["sessions_count"], row["tickets_open"], row["tickets_closed"]) == (0, 0, 0)
        assert (row["segment"] == "no_orders") == (not orders)


def ntile(keys: list, buckets: int = 5) -> dict:
    """SQL ntile over keys already in order: the first len % buckets buckets get one extra row."""
    size, extra = divmod(len(keys), buckets)
    result, i = {}, 0
    for bucket in range(1, buckets + 1):
        count = size + (1 if bucket <= extra else 0)
        result.update({k: bucket for k in keys[i : i + count]})
        i += count
    return result


def test_rfm_segments_are_quintiles_of_recency_frequency_and_monetary_value(gold_run, expected, lake):
    stats = defaultdict(lambda: {"last": None, "frequency": 0, "monetary": Decimal(0)})
    for o in expected["orders"]:
        s = stats[o["customer_id"]]
        s["last"] = max(s["last"] or o["order_date"], o["order_date"])
        s["frequency"] += 1
        s["monetary"] += o["amount_usd"]
    as_of = max(o["order_date"] for o in expected["orders"])
    recency = {c: (as_of - s["last"]).days for c, s in stats.items()}
    r = ntile(sorted(stats, key=lambda c: (-recency[c], c)))
    f = ntile(sorted(stats, key=lambda c: (stats[c]["frequency"], c)))
    m = ntile(sorted(stats, key=lambda c: (stats[c]["monetary"], c)))
    got = {row["customer_id"]: row for row in gold_rows(lake, "rfm_segments")}
    assert set(got) == set(stats)
    for c, row in got.items():
        assert (row["recency_days"], row["frequency"], row["monetary_usd"]) == (
            recency[c],
            stats[c]["frequency"],
            stats[c]["monetary"],
        )
        assert (row["r_score"], row["f_score"], row["m_score"]) == (r[c], f[c], m[c])
        assert row["rfm_score"] == f"{r[c]}{f[c]}{m[c]}"
        if r[c] >= 4 and f[c] >= 4 and m[c] >= 4:
            assert row["segment"] == "champions"
        elif r[c] <= 2 and f[c] <= 2:
            assert row["segment"] == "hibernating"


def test_churn_features_have_one_row_per_customer_and_day_known_at_that_day(gold_run, expected, lake):
    assert_churn_features_known_at_each_day(gold_rows(lake, "churn_features"), expected)


def assert_churn_features_known_at_each_day(rows: list[dict], expected: dict) -> None:
    got = {(r["snapshot_date"], r["customer_id"]): r for r in rows}
    want_keys = {
        (day, c) for day in DAYS for c, p in expected["current"].items() if date.fromisoformat(p["signup_date"]) <= day
    }
    assert set(got) == want_keys
    for (day, customer_id), row in got.items():
        before = [o for o in expected["orders"] if o["customer_id"] == customer_id and o["order_date"] <= day]
        last = max((o["order_date"] for o in before), default=None)
        assert row["orders_lifetime"] == len(before)
        assert row["revenue_usd_lifetime"] == sum((o["amount_usd"] for o in before), Decimal("0.00"))
        assert row["orders_7d"] == sum(o["order_date"] > day - timedelta(days=7) for o in before)
        assert row["days_since_last_order"] == (None if last is None else (day - last).days)


# -- Column schema and lineage -------------------------------------------------------------------------------

MARTS_YML = gold.DBT_PROJECT_DIR / "models" / "marts" / "_marts__models.yml"
# What Spark SQL calls a column's type: a name, or a decimal's precision and scale (no "?", no "unknown").
SQL_TYPE = re.compile(r"string|bigint|int|smallint|double|float|boolean|date|timestamp|decimal\(\d+,\d+\)")


def declared_columns(mart: str) -> list[str]:
    """A mart's columns as its model's yml lists them (read here, not through dbt's manifest)."""
    models = yaml.safe_load(MARTS_YML.read_text())["models"]
    return [c["name"] for c in next(m for m in models if m["name"] == mart)["columns"]]


def column_metadata(gold_run: dg.ExecuteInProcessResult) -> dict[str, dict]:
    """Each mart's materialisation metadata, unwrapped (a TableSchema, a TableColumnLineage)."""
    return {
        e.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in gold_run.get_asset_materialization_events()
        if e.asset_key.path[0] == "gold"
    }


def deps(column_lineage: dg.TableColumnLineage, column: str) -> set[tuple[str, str]]:
    return {(d.asset_key.to_user_string(), d.column_name) for d in column_lineage.deps_by_column[column]}


def test_a_customers_lifetime_value_is_traced_to_silver_and_bronze_order_amounts_and_fx_rates(gold_run):
    metadata = column_metadata(gold_run)["customer_360"]
    # int_customer_orders sums stg_orders.amount_usd, which is silver.orders' amount_usd
    assert deps(metadata["dagster/column_lineage"], "lifetime_value_usd") == {("silver/orders", "amount_usd")}
    specs = {s.key.to_user_string(): s.metadata for s in DEFS.resolve_all_asset_specs()}
    # silver/orders converts bronze's amount with silver/fx_rates' rate, which is bronze's rate_to_usd, typed
    assert deps(specs["silver/orders"]["dagster/column_lineage"], "amount_usd") == {
        ("bronze/orders", "amount"),
        ("silver/fx_rates", "rate_to_usd"),
    }
    assert deps(specs["silver/fx_rates"]["dagster/column_lineage"], "rate_to_usd") == {
        ("bronze/fx_rates", "rate_to_usd")
    }
    schema = metadata["dagster/column_schema"]
    assert [c.name for c in schema.columns] == declared_columns("customer_360")
    assert all(SQL_TYPE.fullmatch(c.type) for c in schema.columns), [(c.name, c.type) for c in schema.columns]
    lifetime = next(c for c in schema.columns if c.name == "lifetime_value_usd")
    assert (lifetime.type, lifetime.description) == ("decimal(18,2)", "Sum of order amounts in USD, all time.")


def test_every_mart_materialisation_carries_a_typed_column_schema_and_lineage_to_its_upstream_assets(gold_run):
    materialised = column_metadata(gold_run)
    assert set(materialised) == set(MARTS)
    upstream_of = {k.path[-1]: v for k, v in gold.gold_dbt.asset_deps.items()}
    for mart, metadata in materialised.items():
        schema, column_lineage = metadata["dagster/column_schema"], metadata["dagster/column_lineage"]
        assert [c.name for c in schema.columns] == declared_columns(mart), mart
        assert all(SQL_TYPE.fullmatch(c.type) for c in schema.columns), (
            mart,
            [(c.name, c.type) for c in schema.columns],
        )
        assert list(column_lineage.deps_by_column) == declared_columns(mart), mart
        for column, column_deps in column_lineage.deps_by_column.items():
            for dep in column_deps:
                assert dep.asset_key in upstream_of[mart], (mart, column, dep.asset_key)
                layer, table = dep.asset_key.path
                columns = (
                    catalog.table(f"{layer}/{table}").contract.to_schema().columns
                    if layer == "silver"
                    else declared_columns(table)
                )
                assert dep.column_name in columns, (mart, column, dep)


def test_lineage_follows_a_column_through_ctes_and_stars_and_rejects_an_unknown_one():
    sql = """
        with o as (select * from silver.orders),
        per_customer as (select customer_id, count(*) as n, sum(amount_usd) as revenue from o group by customer_id)
        select customer_id, n, revenue * 2 as doubled from per_customer
    """
    schemas = {"silver.orders": {"customer_id": "string", "amount_usd": "decimal(18,2)", "order_id": "string"}}
    assets = {"silver.orders": dg.AssetKey(["silver", "orders"])}
    found = lineage.column_lineage(sql, schemas, assets)
    assert {c: deps(found, c) for c in found.deps_by_column} == {
        "customer_id": {("silver/orders", "customer_id")},
        "n": set(),  # count(*) reads no column
        "doubled": {("silver/orders", "amount_usd")},
    }
    with pytest.raises(OptimizeError, match="Column 'amount' could not be resolved"):
        lineage.column_lineage("select amount from silver.orders", schemas, assets)


# -- Idempotence and masking ---------------------------------------------------------------------------------


def files_by_partition(lake: DeltaLake, table: str, column: str) -> dict[str, set[str]]:
    actions = pa.table(lake.delta_table("gold", table).get_add_actions(flatten=True)).to_pylist()
    files = defaultdict(set)
    for a in actions:
        files[str(a[f"partition.{column}"])].add(a["path"])
    return files


def test_a_window_of_more_customer_days_than_one_build_is_built_a_batch_at_a_time(
    batch_run, expected, resources, lake, tmp_path
):
    """A long backfill's daily marts are built a few days at a time (bounded memory, docs/benchmarks.md), in
    the same run and step; they hold what the generator made, and the marts rebuilt in full are built once."""
    other = DeltaLake(root=str(tmp_path / "lake"))
    shutil.copytree(Path(lake.root) / "silver", tmp_path / "lake" / "silver")
    customer_rows = len(read_rows(other, "silver", "customers"))
    dbt = gold.DbtCli(project_dir=gold.dbt_project, customer_days_per_build=2 * customer_rows + 1)
    assert dbt.days_per_build(other) == 2
    result = dg.materialize(
        [gold.gold_dbt], resources={**resources, "lake": other, "dbt": dbt}, tags=range_tags(DAY_KEYS[0], DAY_KEYS[-1])
    )
    assert result.success
    # days 1-2 (the daily marts and the tests on them alone), then day 3 with everything selected
    invocations = (gold.DBT_PROJECT_DIR / "target").glob(f"gold_dbt-{result.run_id[:7]}-*")
    first, _last = sorted(invocations, key=os.path.getmtime)
    assert first.name.endswith(DAY_KEYS[0])
    built = {r["unique_id"].split(".")[-1] for r in json.loads((first / "run_results.json").read_text())["results"]}
    assert set(INCREMENTAL) | {"assert_daily_kpis_agree_with_revenue_daily"} <= built
    assert not built & {"customer_360", "rfm_segments", "assert_customer_360_one_row_per_current_customer"}
    for table in INCREMENTAL:
        history = other.delta_table("gold", table).history()
        assert len(history) == 2 and DAY_KEYS[-1] in history[0]["operationParameters"]["predicate"], table
    for table in ("customer_360", "rfm_segments"):
        assert len(other.delta_table("gold", table).history()) == 1
    assert revenue_daily(read_rows(other, "gold", "revenue_daily")) == expected_revenue_daily(expected)
    assert_churn_features_known_at_each_day(read_rows(other, "gold", "churn_features"), expected)
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_rerunning_a_day_replaces_exactly_that_day(gold_run, resources, lake):
    day = DAY_KEYS[1]
    path = lake.path("gold", "revenue_daily")
    # A row that does not belong to the day: a re-run must remove it (replace, not append or merge).
    stray = (
        DeltaTable(path)
        .to_pyarrow_table()
        .filter(pa.compute.equal(pa.compute.cast(DeltaTable(path).to_pyarrow_table()["order_date"], pa.string()), day))
        .slice(0, 1)
    )
    index = stray.schema.get_field_index("country")
    write_deltalake(
        path, stray.set_column(index, stray.schema.field(index), pa.array(["ZZ"], pa.string())), mode="append"
    )
    before = {t: sorted(gold_rows(lake, t), key=repr) for t in MARTS}
    files_before = {t: files_by_partition(lake, t, c) for t, c in INCREMENTAL.items()}
    versions = {t: lake.delta_table("gold", t).version() for t in INCREMENTAL}

    result = dg.materialize([gold.gold_dbt], resources={**resources, "dbt": gold.dbt_resource()}, partition_key=day)
    assert result.success

    after = {t: sorted(gold_rows(lake, t), key=repr) for t in MARTS}
    assert [r for r in before["revenue_daily"] if r["country"] == "ZZ"]
    before["revenue_daily"] = [r for r in before["revenue_daily"] if r["country"] != "ZZ"]
    assert after == before
    for table, column in INCREMENTAL.items():
        dt = lake.delta_table("gold", table)
        assert dt.version() == versions[table] + 1  # one commit per model
        commit = dt.history(1)[0]
        assert commit["operation"] == "WRITE" and day in commit["operationParameters"]["predicate"]
        files_after = files_by_partition(lake, table, column)
        for other in set(DAY_KEYS) - {day}:
            assert files_after[other] == files_before[table][other], (table, other)  # other days untouched
        assert not files_after[day] & files_before[table][day]  # the day itself rewritten


def test_no_gold_table_holds_a_raw_email_phone_or_name(gold_run, manifest, lake):
    records = raw_customer_records(Path(manifest["landing_dir"]))
    emails = {r["email"].lower() for r in records if r.get("email")}
    phones = {r["phone"] for r in records if r.get("phone")}
    digits = {re.sub(r"\D", "", p) for p in phones}
    names = (
        {f"{r['first_name']} {r['last_name']}".lower() for r in records}
        | {r["first_name"].lower() for r in records}
        | {r["last_name"].lower() for r in records}
    )
    gold_tables = [t for t in lake.tables() if t["layer"] == "gold"]
    assert {t["name"] for t in gold_tables} >= set(MARTS)
    scanned = 0
    for table in gold_tables:
        data = DeltaTable(table["path"]).to_pyarrow_table()
        for column in data.column_names:
            if not pa.types.is_string(data.schema.field(column).type):
                continue
            for value in data[column].to_pylist():
                if value is None:
                    continue
                text, scanned = value.lower(), scanned + 1
                assert "@" not in text or "***@" in text, (table["name"], column, value)
                assert text not in emails and text not in names, (table["name"], column, value)
                assert value not in phones and re.sub(r"\D", "", value) not in digits, (table["name"], column, value)
                assert not any(n in text for n in names if " " in n), (table["name"], column, value)
    assert scanned > 1000 and digits


def test_churn_features_count_orders_from_before_the_30_day_frame(gold_run, resources, lake, tmp_path):
    """The running sums start 29 days before the window: what came earlier is added once, per customer."""
    other = DeltaLake(root=str(tmp_path / "lake"))
    shutil.copytree(Path(lake.root) / "silver", tmp_path / "lake" / "silver")
    day = DAYS[-1]
    orders = DeltaTable(other.path("silver", "orders")).to_pyarrow_table()
    mine = orders.filter(pa.compute.equal(orders["customer_id"], orders["customer_id"][0]))
    customer = mine["customer_id"][0].as_py()
    early = pa.concat_tables(
        mine.slice(0, 1)
        .set_column(mine.schema.get_field_index("order_id"), "order_id", pa.array([f"EARLY-{n}"]))
        .set_column(mine.schema.get_field_index("order_date"), "order_date", pa.array([day - timedelta(days=n)]))
        for n in (45, 31, 30, 29, 20)
    )
    write_deltalake(other.path("silver", "orders"), early.cast(orders.schema), mode="append")

    result = dg.materialize(
        [gold.gold_dbt],
        resources={**resources, "lake": other, "dbt": gold.dbt_resource()},
        partition_key=day.isoformat(),
    )
    assert result.success
    placed = [
        o for o in read_rows(other, "silver", "orders") if o["customer_id"] == customer and o["order_date"] <= day
    ]
    row = next(r for r in read_rows(other, "gold", "churn_features") if r["customer_id"] == customer)
    assert row["orders_lifetime"] == len(placed)
    assert row["revenue_usd_lifetime"] == sum(o["amount_usd"] for o in placed)
    assert row["orders_30d"] == sum(o["order_date"] > day - timedelta(days=30) for o in placed)
    assert row["orders_7d"] == sum(o["order_date"] > day - timedelta(days=7) for o in placed)
    # of the early orders, those 45, 31 and 30 days before count only in the lifetime figures
    assert row["orders_lifetime"] - row["orders_30d"] == 3


# -- With the streaming Silver tables --------------------------------------------------------------------


def test_marts_use_silver_sessions_and_tickets_when_they_exist(gold_run, resources, lake, tmp_path):
    """A lake with Silver sessions and support tickets (the columns the marts assume) as well."""
    other = DeltaLake(root=str(tmp_path / "lake"))
    shutil.copytree(Path(lake.root) / "silver", tmp_path / "lake" / "silver")
    day = DAYS[-1]
    customer = sorted(r["customer_id"] for r in gold_rows(lake, "customer_360"))[0]
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    write_deltalake(
        other.path("silver", "sessions"),
        pa.table(
            {
                "session_id": ["s1", "s2", "s3"],
                "user_id": [customer, customer, "anon-00001"],
                "session_start": [at + timedelta(hours=1), at + timedelta(hours=5), at + timedelta(hours=2)],
                "session_end": [
                    at + timedelta(hours=1, seconds=600),
                    at + timedelta(hours=5),
                    at + timedelta(hours=2, seconds=60),
                ],
                "session_date": [day] * 3,
                "duration_seconds": [600, 0, 60],
                "page_count": pa.array([4, 1, 2], pa.int32()),
                "page_views": pa.array([4, 1, 2], pa.int32()),
                "is_bounce": [False, True, False],
                "last_event_received_at": [at] * 3,
            }
        ),
    )
    write_deltalake(
        other.path("silver", "support_tickets"),
        pa.table(
            {
                "ticket_id": ["T1", "T2", "T3", "T4"],
                "seq": pa.array([1, 2, 3, 1], pa.int32()),
                "op": ["c", "u", "u", "d"],
                "customer_id": [customer] * 4,
                "status": ["open", "pending", "closed", "open"],
                "priority": ["low"] * 4,
                "subject": ["s"] * 4,
                "_rescued_data": pa.array([None] * 4, pa.string()),
                "changed_at": [at] * 4,
                "is_deleted": [False, False, False, True],
            }
        ),
    )
    result = dg.materialize(
        [gold.gold_dbt],
        resources={**resources, "lake": other, "dbt": gold.dbt_resource()},
        partition_key=day.isoformat(),
    )
    assert result.success
    kpis = read_rows(other, "gold", "daily_kpis")[0]
    assert (kpis["sessions"], kpis["bounce_rate"], kpis["avg_session_length_seconds"]) == (3, 1 / 3, 220.0)
    buyers = {o["customer_id"] for o in read_rows(lake, "silver", "orders") if o["order_date"] == day}
    assert kpis["active_users"] == len(buyers | {customer, "anon-00001"})
    row = next(r for r in read_rows(other, "gold", "customer_360") if r["customer_id"] == customer)
    assert (row["sessions_count"], row["tickets_open"], row["tickets_closed"]) == (2, 2, 1)
    churn = next(r for r in read_rows(other, "gold", "churn_features") if r["customer_id"] == customer)
    assert (churn["sessions_7d"], churn["is_active_7d"]) == (2, True)
