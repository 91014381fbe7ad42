"""The generator is the yardstick for every count in the suite: it must be deterministic and its
manifest must describe exactly what it wrote."""

import json
from datetime import date

from lakehouse.dev.generator import FILE_EXT, SOURCES, generate, landing_file

START = date(2026, 11, 1)


def file_bytes(landing) -> dict[str, bytes]:
    return {str(p.relative_to(landing)): p.read_bytes() for p in sorted(landing.rglob("*")) if p.is_file()}


def test_same_seed_writes_the_same_bytes(tmp_path):
    first = generate(tmp_path / "a", START, 2, 0.1, seed=3)
    second = generate(tmp_path / "b", START, 2, 0.1, seed=3)
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")
    assert first["sources"] == second["sources"]


def test_another_seed_writes_other_data(tmp_path):
    generate(tmp_path / "a", START, 1, 0.1, seed=3)
    generate(tmp_path / "b", START, 1, 0.1, seed=4)
    assert file_bytes(tmp_path / "a") != file_bytes(tmp_path / "b")


def test_one_file_per_source_and_day(tmp_path):
    generate(tmp_path, START, 3, 0.1, seed=1)
    for source in SOURCES:
        names = sorted(p.name for p in (tmp_path / source).iterdir())
        assert names == [f"2026-11-0{d}.{FILE_EXT[source]}" for d in (1, 2, 3)]


def test_manifest_records_equal_the_lines_written(manifest):
    for source in SOURCES:
        for day, figures in manifest["sources"][source].items():
            lines = landing_file(manifest["landing_dir"], source, date.fromisoformat(day)).read_text().splitlines()
            header = 1 if FILE_EXT[source] == "csv" else 0
            assert len(lines) - header == figures["records"], (source, day)


def test_every_batch_anomaly_is_injected_every_day(manifest):
    """Every day has each anomaly, but: nothing landed before day one to be late or re-sent, and a late CRM
    update needs a customer older than its delay."""
    for source in ("crm_customers", "orders", "fx_rates"):
        for index, (day, figures) in enumerate(sorted(manifest["sources"][source].items())):
            zero = {kind for kind, count in figures["anomalies"].items() if count == 0}
            may_be_zero = {"late_updates", "resent"} if index == 0 or source == "crm_customers" else set()
            assert zero <= may_be_zero, (source, day)


def test_late_crm_updates_carry_a_timestamp_before_their_export_day(manifest):
    day = "2026-11-03"
    path = landing_file(manifest["landing_dir"], "crm_customers", date.fromisoformat(day))
    stamps = [json.loads(line)["updated_at"] for line in path.read_text().splitlines()]
    late = [s for s in stamps if s and s[:10] < day and s[2] != "/"]
    assert len(late) == manifest["sources"]["crm_customers"][day]["anomalies"]["late_updates"] > 0


def test_orders_only_reference_customers_the_crm_has_sent(manifest):
    """Apart from the injected unknown customers, so that rule's count is exact."""
    landing = manifest["landing_dir"]
    customers = set()
    for day in manifest["sources"]["crm_customers"]:
        for line in landing_file(landing, "crm_customers", date.fromisoformat(day)).read_text().splitlines():
            customers.add(json.loads(line)["customer_id"])
    unknown = 0
    for day in manifest["sources"]["orders"]:
        rows = landing_file(landing, "orders", date.fromisoformat(day)).read_text().splitlines()[1:]
        unknown += sum(row.split(",")[1] not in customers for row in rows)
    assert unknown == manifest["totals"]["orders"]["anomalies"]["unknown_customers"]
