"""Retention (lakehouse/defs/retention.py) with delta-rs: on small Delta tables with rows on known days, the days
before `as_of - period` go in one DELETE commit per table and the rest stay; a table with nothing to expire, or
kept forever, gets no commit; the observations say what went; a dry run and a second run change nothing; a
streaming Bronze table keeps each Kafka partition's newest row; a batch source's expired landing files go too."""

import shutil
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from lakehouse import catalog, policies
from lakehouse.defs import retention
from lakehouse.lib.lake import DeltaLake
from lakehouse_tests.helpers import DAY_KEYS, DEFS, START, day_counts, rows_by

AS_OF = "2026-11-10"
PERIOD = timedelta(days=3)
DAYS = [date(2026, 11, d) for d in range(3, 10)]  # 2026-11-03 ... 2026-11-09
# as_of 2026-11-10 less 3 days: 2026-11-07 is the first day kept.
EXPIRED, KEPT = DAYS[:4], DAYS[4:]
ROWS_ON = {day: i + 1 for i, day in enumerate(DAYS)}  # a different count each day, so a wrong day shows
SHORT = ["bronze/orders", "bronze/clickstream_events", "silver/fx_rates", "gold/revenue_daily"]  # PERIOD for the test


def day_rows(column: str, days: list[date]) -> pa.Table:
    ids = [f"{day}#{i}" for day in days for i in range(ROWS_ON[day])]
    return pa.table({"id": ids, column: pa.array([d for d in days for _ in range(ROWS_ON[d])], pa.date32())})


def clicks() -> pa.Table:
    """Kafka partition 0 lands every day; partition 1 only on the first two, so its newest row is an expired one."""
    rows = [(0, day) for day in DAYS for _ in range(ROWS_ON[day])] + [(1, day) for day in DAYS[:2] for _ in range(2)]
    offsets = {0: 0, 1: 0}
    positions = []
    for partition, day in rows:
        positions.append((partition, offsets[partition], day))
        offsets[partition] += 1
    return pa.table(
        {
            "kafka_topic": ["clickstream"] * len(rows),
            "kafka_epoch": pa.array([0] * len(rows), pa.int32()),
            "kafka_partition": pa.array([p for p, _, _ in positions], pa.int32()),
            "kafka_offset": pa.array([o for _, o, _ in positions], pa.int64()),
            "_ingest_date": pa.array([d for _, _, d in positions], pa.date32()),
        }
    )


def write(lake: DeltaLake, path: str, table: pa.Table, column: str) -> None:
    write_deltalake(lake.path(*path.split("/")), table, partition_by=[column])


@pytest.fixture
def small_lake(tmp_path, monkeypatch) -> DeltaLake:
    """A lake with Bronze orders (and its landing files), streaming Bronze clicks, Silver FX rates with nothing to
    expire, Silver orders (kept forever) and a Gold daily mart; the SHORT tables keep 3 days."""
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    monkeypatch.setattr(
        policies, "RETENTION_OVERRIDES", {**policies.RETENTION_OVERRIDES, **dict.fromkeys(SHORT, PERIOD)}
    )
    lake = DeltaLake(root=str(tmp_path / "lake"))
    write(lake, "bronze/orders", day_rows("_partition_date", DAYS), "_partition_date")
    write(lake, "bronze/clickstream_events", clicks(), "_ingest_date")
    write(lake, "silver/fx_rates", day_rows("rate_date", KEPT), "rate_date")
    write(lake, "silver/orders", day_rows("order_date", DAYS), "order_date")
    write(lake, "gold/revenue_daily", day_rows("order_date", DAYS), "order_date")
    landing = tmp_path / "landing" / "orders"
    landing.mkdir(parents=True)
    for day in DAYS:
        (landing / f"{day}.csv").write_text("order_id\n")
    (landing / "notes.csv").write_text("not a day\n")
    return lake


TABLES = ["bronze/orders", "bronze/clickstream_events", "silver/fx_rates", "silver/orders", "gold/revenue_daily"]


def table(lake: DeltaLake, path: str) -> DeltaTable:
    return lake.delta_table(*path.split("/"))


def versions(lake: DeltaLake) -> dict[str, int]:
    return {path: table(lake, path).version() for path in TABLES}


def run(lake: DeltaLake, **config) -> dg.ExecuteInProcessResult:
    result = retention.retention.execute_in_process(
        resources={"lake": lake}, run_config={"ops": {"expire_partitions": {"config": {"as_of": AS_OF, **config}}}}
    )
    assert result.success
    return result


def observations(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        e.event_specific_data.asset_observation.asset_key.to_user_string(): {
            k: v.value for k, v in e.event_specific_data.asset_observation.metadata.items()
        }
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION
    }


def totals(result: dg.ExecuteInProcessResult) -> dict:
    [output] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    return {k: v.value for k, v in output.event_specific_data.metadata.items()}


def ids(lake: DeltaLake, path: str) -> list[str]:
    return sorted(table(lake, path).to_pyarrow_table(columns=["id"]).column("id").to_pylist())


def test_the_days_before_the_cutoff_go_and_the_later_ones_stay(small_lake):
    run(small_lake)
    expected = sorted(day_rows("d", KEPT).column("id").to_pylist())
    assert ids(small_lake, "bronze/orders") == expected
    assert ids(small_lake, "gold/revenue_daily") == expected
    assert ids(small_lake, "silver/fx_rates") == expected  # held only kept days


def test_a_table_kept_forever_is_not_touched(small_lake):
    before = versions(small_lake)["silver/orders"]
    result = run(small_lake)
    assert policies.retention("silver/orders") is None
    assert ids(small_lake, "silver/orders") == sorted(day_rows("d", DAYS).column("id").to_pylist())
    assert table(small_lake, "silver/orders").version() == before
    assert "silver/orders" not in observations(result)


def test_one_delete_commit_per_table_with_expired_rows_and_none_without(small_lake):
    before = versions(small_lake)
    run(small_lake)
    after = versions(small_lake)
    for path in ["bronze/orders", "bronze/clickstream_events", "gold/revenue_daily"]:
        assert after[path] == before[path] + 1, path
        assert table(small_lake, path).history(1)[0]["operation"] == "DELETE"
    assert after["silver/fx_rates"] == before["silver/fx_rates"]


def test_each_table_observation_says_what_went(small_lake):
    result = run(small_lake)
    seen = observations(result)
    assert set(seen) == set(SHORT)
    orders = seen["bronze/orders"]
    assert orders["rows_removed"] == sum(ROWS_ON[d] for d in EXPIRED) == 10
    assert orders["partitions_removed"] == 4
    assert orders["expired_partitions"] == ["2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06"]
    assert (orders["cutoff"], orders["retention_days"], orders["window_column"]) == ("2026-11-07", 3, "_partition_date")
    assert orders["delta/version"] == 1 and orders["dry_run"] is False
    assert orders["retention/run"] == result.run_id
    assert seen["gold/revenue_daily"]["rows_removed"] == 10
    fx = seen["silver/fx_rates"]
    assert (fx["rows_removed"], fx["partitions_removed"], fx["expired_partitions"]) == (0, 0, [])
    assert "delta/version" not in fx
    # 10 order rows, 10 mart rows, and the clicks: 10 of partition 0 and 4 of partition 1 less its newest.
    assert totals(result) == {
        "tables": 4,
        "tables_with_expired_rows": 3,
        "rows_removed": 10 + 10 + 10 + 3,
        "partitions_removed": 4 + 4 + 4,
        "landing_files_removed": 4,
        "as_of": AS_OF,
        "dry_run": False,
    }


def test_a_streaming_table_keeps_each_kafka_partitions_newest_row(small_lake):
    result = run(small_lake)
    left = table(small_lake, "bronze/clickstream_events").to_pyarrow_table().to_pylist()
    # Bronze's progress is unchanged: partition 0 landed 1 + ... + 7 = 28 offsets, partition 1 four.
    assert {p: max(r["kafka_offset"] for r in left if r["kafka_partition"] == p) for p in (0, 1)} == {0: 27, 1: 3}
    # Partition 1 landed 2 rows on each of the first two (expired) days: only its newest stays.
    assert [(r["kafka_offset"], r["_ingest_date"]) for r in left if r["kafka_partition"] == 1] == [(3, DAYS[1])]
    assert sorted({r["_ingest_date"] for r in left if r["kafka_partition"] == 0}) == KEPT
    seen = observations(result)["bronze/clickstream_events"]
    assert (seen["rows_removed"], seen["rows_kept_as_kafka_progress"]) == (13, 1)
    assert seen["expired_partitions"] == [d.isoformat() for d in EXPIRED]


def test_the_landing_files_of_expired_bronze_days_go_too(small_lake, tmp_path):
    result = run(small_lake)
    left = sorted(p.name for p in (tmp_path / "landing" / "orders").iterdir())
    assert left == sorted([*(f"{d}.csv" for d in KEPT), "notes.csv"])
    assert observations(result)["bronze/orders"]["landing_files_removed"] == [f"orders/{d}.csv" for d in EXPIRED]


def test_a_dry_run_changes_nothing_and_says_what_would_go(small_lake, tmp_path):
    before = versions(small_lake)
    landing = sorted((tmp_path / "landing" / "orders").iterdir())
    result = run(small_lake, dry_run=True)
    assert versions(small_lake) == before
    assert ids(small_lake, "bronze/orders") == sorted(day_rows("d", DAYS).column("id").to_pylist())
    assert sorted((tmp_path / "landing" / "orders").iterdir()) == landing
    orders = observations(result)["bronze/orders"]
    assert (orders["rows_removed"], orders["partitions_removed"], orders["dry_run"]) == (10, 4, True)
    assert len(orders["landing_files_removed"]) == 4 and "delta/version" not in orders


def test_a_second_run_is_a_no_op(small_lake):
    run(small_lake)
    before = versions(small_lake)
    result = run(small_lake)
    assert versions(small_lake) == before
    assert totals(result)["rows_removed"] == 0 and totals(result)["landing_files_removed"] == 0
    assert all(o["rows_removed"] == 0 for o in observations(result).values())


def test_the_tables_filter_limits_the_run(small_lake):
    before = versions(small_lake)
    result = run(small_lake, tables=["gold/revenue_daily"])
    assert set(observations(result)) == {"gold/revenue_daily"}
    assert {p for p, v in versions(small_lake).items() if v != before[p]} == {"gold/revenue_daily"}


def test_a_table_without_a_window_column_is_refused_by_name():
    with pytest.raises(retention.RetentionError, match="silver/customers has no window column"):
        retention.selected(retention.windowed_tables(), ["silver/customers"])


def test_a_missing_window_column_is_refused_naming_table_and_column(tmp_path):
    path = str(tmp_path / "fx")
    write_deltalake(path, pa.table({"id": ["a"], "day": pa.array([DAYS[0]], pa.date32())}))
    with pytest.raises(retention.RetentionError, match="silver/fx_rates: window column 'rate_date' is not in"):
        retention.expire(lambda: DeltaTable(path), "silver/fx_rates", "rate_date", PERIOD, date(2026, 11, 10))
    assert DeltaTable(path).version() == 0


def test_a_bad_as_of_is_refused():
    with pytest.raises(retention.RetentionError, match="as_of '2026-13-01' is not a date"):
        retention.parse_as_of("2026-13-01")


def test_every_table_with_a_window_column_has_a_retention_period():
    windowed = retention.windowed_tables()
    marts = {m.path for m in catalog.marts().values()}
    assert {t.path for t in catalog.all_tables() if t.window} | {"gold/revenue_daily", "gold/daily_kpis"} <= set(
        windowed
    )
    assert "gold/customer_360" in marts and "gold/customer_360" not in windowed  # a full rebuild: no days
    for path in windowed:
        period = policies.retention(path)  # raises for a table no period covers
        assert period is None or period > timedelta(0), path
    assert set(policies.RETENTION_OVERRIDES) <= set(windowed)  # an override names a table retention walks


def test_a_layer_without_a_period_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(policies, "RETENTION", {k: v for k, v in policies.RETENTION.items() if k != "silver"})
    with pytest.raises(KeyError, match="silver/sessions: no retention period for 'silver'"):
        policies.retention("silver/sessions")


def test_the_daily_schedule_expires_as_of_its_tick_day():
    schedule = {s.name: s for s in DEFS.schedules}["retention_daily"]
    assert schedule.job_name == "retention" and DEFS.resolve_job_def("retention").name == "retention"
    tick = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 10, 1, 30, tzinfo=UTC))
    [request] = schedule.evaluate_tick(tick).run_requests
    assert request.run_config == {"ops": {"expire_partitions": {"config": {"as_of": "2026-11-10"}}}}


def test_on_the_pipelines_own_tables_the_first_day_expires(batch_run, manifest, lakehouse_home, tmp_path, monkeypatch):
    """A copy of the session lake (Bronze and Silver as the pipeline wrote them): with every layer keeping 2 days,
    as of 3 days after the first, exactly the first day's landed records leave Bronze, with their landing files."""
    shutil.copytree(lakehouse_home / "lake", tmp_path / "lake")
    shutil.copytree(lakehouse_home / "landing", tmp_path / "landing")
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    monkeypatch.setattr(policies, "RETENTION", dict.fromkeys(policies.RETENTION, timedelta(days=2)))
    lake = DeltaLake(root=str(tmp_path / "lake"))
    as_of = (START + timedelta(days=3)).isoformat()
    seen = observations(run(lake, as_of=as_of))
    for source in ("crm_customers", "orders", "fx_rates"):
        landed = day_counts(manifest, source, "records")
        assert seen[f"bronze/{source}"]["rows_removed"] == landed[DAY_KEYS[0]], source
        assert seen[f"bronze/{source}"]["expired_partitions"] == [DAY_KEYS[0]]
        assert rows_by(lake, "bronze", source, "_partition_date") == {d: landed[d] for d in DAY_KEYS[1:]}
        assert lake.delta_table("bronze", source).history(1)[0]["operation"] == "DELETE"
        files = sorted(p.stem for p in (tmp_path / "landing" / source).iterdir())
        assert files == DAY_KEYS[1:], source
    assert "silver/orders" not in seen  # kept forever
