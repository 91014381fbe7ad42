"""A batch landing file is kept whole or refused whole, never half-read. Each test lands hand-made files
(one a day) in its own LAKEHOUSE_HOME and lake, runs Bronze, and reads the table back with delta-rs.
Kept: every record line is a row, and a malformed one keeps its raw text in `_rescued_data`. Refused: the
error names the table, the file and the line, and the Delta table keeps its version."""

from datetime import date, timedelta
from pathlib import Path

import pytest
from deltalake import DeltaTable

from lakehouse.dev.generator import landing_file
from lakehouse.lib.lake import DeltaLake
from lakehouse.lib.landing import LandingFileError
from lakehouse.lib.spark import SparkEngine
from lakehouse_tests.helpers import materialize

DAY, NEXT_DAY = "2026-11-01", "2026-11-02"
FX_HEADER = b"date,currency,rate_to_usd\n"
FX_COLUMNS = ("date", "currency", "rate_to_usd", "_rescued_data")
CRM_COLUMNS = ("customer_id", "email", "_rescued_data")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))  # the Bronze assets find the landing zone through it
    return tmp_path


@pytest.fixture
def lake(home) -> DeltaLake:
    return DeltaLake(root=str(home / "lake"))


def land(home: Path, source: str, content: bytes, day: str = DAY) -> Path:
    path = landing_file(home / "landing", source, date.fromisoformat(day))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def run(sail_url: str, lake: DeltaLake, source: str, first: str = DAY, last: str = DAY):
    return materialize({"spark": SparkEngine(remote=sail_url), "lake": lake}, first, last, selection=f"bronze/{source}")


def bronze(lake: DeltaLake, source: str, columns: tuple[str, ...]) -> list[tuple]:
    """The table's rows as tuples of `columns`, in a fixed order (a file's rows carry no line number)."""
    table = lake.delta_table("bronze", source).to_pyarrow_table(columns=list(columns))
    return sorted(zip(*(table.column(c).to_pylist() for c in columns), strict=True), key=str)


def rows(*expected: tuple) -> list[tuple]:
    return sorted(expected, key=str)


# -- a healthy file is read by the engine, one with a fault by the landing reader: the rows are the same ----------

FX_DRIFT = b'date,currency,rate_to_usd,source\n2026-11-01,EUR,1.08,ecb\n2026-11-01,GBP,"1,27",\n2026-11-01,,1.5,\n'
CRM_DRIFT = b'{"customer_id":"C1","email":"","loyalty_tier":"gold"}\n{"customer_id":null,"email":"b@x.test"}\n'


@pytest.mark.parametrize(
    "fault",
    [lambda b: b, lambda b: b.replace(b"\n", b"\r\n"), lambda b: b"\xef\xbb\xbf" + b + b"\n"],
    ids=["none", "crlf", "bom and a blank line"],
)
def test_a_fault_that_is_kept_changes_no_value_of_the_file(home, lake, sail_url, fault):
    land(home, "fx_rates", fault(FX_DRIFT))
    land(home, "crm_customers", fault(CRM_DRIFT))
    run(sail_url, lake, "fx_rates")
    run(sail_url, lake, "crm_customers")
    assert bronze(lake, "fx_rates", FX_COLUMNS) == rows(
        ("2026-11-01", "EUR", "1.08", '{"source":"ecb"}'),
        ("2026-11-01", "GBP", "1,27", None),
        ("2026-11-01", None, "1.5", None),
    )
    assert bronze(lake, "crm_customers", CRM_COLUMNS) == rows(
        ("C1", "", '{"loyalty_tier":"gold"}'), (None, "b@x.test", None)
    )


# -- 1, 2: BOM and CRLF are kept as if they were not there --------------------------------------------------


def test_a_utf8_bom_is_stripped_from_a_csv_header(home, lake, sail_url):
    land(home, "fx_rates", b"\xef\xbb\xbf" + FX_HEADER + b"2026-11-01,EUR,1.08\n")
    run(sail_url, lake, "fx_rates")
    assert bronze(lake, "fx_rates", FX_COLUMNS) == [("2026-11-01", "EUR", "1.08", None)]
    assert "\ufeffdate" not in DeltaTable(lake.path("bronze", "fx_rates")).schema().to_arrow().names


def test_a_utf8_bom_is_stripped_from_the_first_json_line(home, lake, sail_url):
    land(home, "crm_customers", b'\xef\xbb\xbf{"customer_id":"C1","email":"a@x.test"}\n')
    run(sail_url, lake, "crm_customers")
    assert bronze(lake, "crm_customers", CRM_COLUMNS) == [("C1", "a@x.test", None)]


def test_crlf_line_endings_leave_no_cr_in_the_last_column(home, lake, sail_url):
    land(home, "fx_rates", b"date,currency,rate_to_usd\r\n2026-11-01,EUR,1.08\r\n2026-11-01,GBP,1.27\r\n")
    run(sail_url, lake, "fx_rates")
    assert bronze(lake, "fx_rates", FX_COLUMNS) == rows(
        ("2026-11-01", "EUR", "1.08", None), ("2026-11-01", "GBP", "1.27", None)
    )


def test_crlf_line_endings_leave_no_cr_in_a_rescued_json_line(home, lake, sail_url):
    land(home, "crm_customers", b'{"customer_id":"C1"}\r\n[1,2]\r\n')
    run(sail_url, lake, "crm_customers")
    assert bronze(lake, "crm_customers", CRM_COLUMNS) == rows(("C1", None, None), (None, None, "[1,2]"))


# -- 3: bytes that are not UTF-8 refuse the file, and nothing of the window is written ------------------------


@pytest.mark.parametrize(
    "source, header, record, bad, byte",
    [
        ("fx_rates", FX_HEADER, b"2026-11-01,EUR,1.08\n", b"2026-11-02,\xffUR,1.09\n", 12),
        ("crm_customers", b"", b'{"customer_id":"C1"}\n', b'{"customer_id":"C\xff2"}\n', 18),
    ],
    ids=["csv", "json lines"],
)
def test_invalid_utf8_refuses_the_window_naming_file_and_line(home, lake, sail_url, source, header, record, bad, byte):
    land(home, source, header + record)
    run(sail_url, lake, source)  # the table exists: day one landed
    version = DeltaTable(lake.path("bronze", source)).version()
    before = lake.delta_table("bronze", source).to_pyarrow_table().to_pylist()
    land(home, source, header + record + record)  # day one re-landed, changed: it must not be written either
    bad_file = land(home, source, header + record + bad, day=NEXT_DAY)
    with pytest.raises(LandingFileError) as refused:
        run(sail_url, lake, source, DAY, NEXT_DAY)
    line = 3 if header else 2
    assert (
        str(refused.value)
        == f"bronze.{source}: {bad_file} line {line}: not UTF-8 (byte 0xff at byte {byte}); nothing written"
    )
    assert DeltaTable(lake.path("bronze", source)).version() == version
    assert lake.delta_table("bronze", source).to_pyarrow_table().to_pylist() == before


# -- 4, 5: a CSV line that does not fit is a row, its raw text rescued ----------------------------------------


@pytest.mark.parametrize(
    "broken", [b'2026-11-01,"EUR,1.08', b'2026-11-01,"EUR"O,1.08'], ids=["never closed", "text after"]
)
def test_a_csv_line_with_broken_quotes_is_its_own_row_and_swallows_nothing(home, lake, sail_url, broken):
    """A quote that never closes (or text after a closing one): the line's fields are not trusted."""
    land(home, "fx_rates", FX_HEADER + broken + b"\n2026-11-01,GBP,1.27\n2026-11-01,JPY,0.0067\n")
    run(sail_url, lake, "fx_rates")
    assert bronze(lake, "fx_rates", FX_COLUMNS) == rows(
        (None, None, None, broken.decode()), ("2026-11-01", "GBP", "1.27", None), ("2026-11-01", "JPY", "0.0067", None)
    )


def test_a_quote_inside_a_field_is_text(home, lake, sail_url):
    land(home, "fx_rates", FX_HEADER + b'2026-11-01,EU"R,1.08\n2026-11-01,"G,BP",1.27\n')
    run(sail_url, lake, "fx_rates")
    assert bronze(lake, "fx_rates", FX_COLUMNS) == rows(
        ("2026-11-01", 'EU"R', "1.08", None), ("2026-11-01", "G,BP", "1.27", None)
    )


def test_an_extra_csv_field_is_rescued_not_dropped(home, lake, sail_url):
    land(home, "fx_rates", FX_HEADER + b"2026-11-01,EUR,1.08,surplus\n2026-11-01,GBP,1.27\n")
    run(sail_url, lake, "fx_rates")
    assert bronze(lake, "fx_rates", FX_COLUMNS) == rows(
        ("2026-11-01", "EUR", "1.08", "2026-11-01,EUR,1.08,surplus"), ("2026-11-01", "GBP", "1.27", None)
    )


def test_a_missing_csv_field_is_null_and_the_row_flagged(home, lake, sail_url):
    land(home, "fx_rates", FX_HEADER + b"2026-11-01,EUR\n2026-11-01,GBP,1.27\n")
    run(sail_url, lake, "fx_rates")
    assert bronze(lake, "fx_rates", FX_COLUMNS) == rows(
        ("2026-11-01", "EUR", None, "2026-11-01,EUR"), ("2026-11-01", "GBP", "1.27", None)
    )


@pytest.mark.parametrize(
    "header, what",
    [
        (b'date,"currency,rate_to_usd\n', "the header's quoting is broken"),
        (b"date,currency,currency\n", "column 'currency' appears twice in the header"),
    ],
    ids=["broken quoting", "a column twice"],
)
def test_a_csv_header_that_cannot_name_the_fields_refuses_the_file(home, lake, sail_url, header, what):
    path = land(home, "fx_rates", b"\n" + header + b"2026-11-01,EUR,1.08\n")
    with pytest.raises(LandingFileError) as refused:
        run(sail_url, lake, "fx_rates")
    assert str(refused.value) == f"bronze.fx_rates: {path} line 2: {what}; nothing written"
    assert not lake.exists("bronze", "fx_rates")


# -- 6: blank lines are not records ----------------------------------------------------------------------------


def test_blank_lines_are_not_rows(home, lake, sail_url):
    land(home, "fx_rates", b"\n" + FX_HEADER + b"\n2026-11-01,EUR,1.08\n \t\n\r\n2026-11-01,GBP,1.27\n\n")
    land(home, "crm_customers", b'\n{"customer_id":"C1"}\n  \n\n')
    run(sail_url, lake, "fx_rates")
    run(sail_url, lake, "crm_customers")
    assert bronze(lake, "fx_rates", FX_COLUMNS) == rows(
        ("2026-11-01", "EUR", "1.08", None), ("2026-11-01", "GBP", "1.27", None)
    )
    assert bronze(lake, "crm_customers", CRM_COLUMNS) == [("C1", None, None)]


# -- 7, 8: a JSON line that is not one plain object is a row, its raw text rescued ------------------------------


@pytest.mark.parametrize(
    "line",
    [
        '{"customer_id":"C1","customer_id":"C2","email":"a@x.test"}',
        '{"customer_id":"C1","address":{"city":"Oslo","city":"Bergen"}}',
    ],
    ids=["top level", "nested"],
)
def test_a_json_key_given_twice_wins_nowhere_and_the_line_is_rescued(home, lake, sail_url, line):
    land(home, "crm_customers", f'{line}\n{{"customer_id":"C3"}}\n'.encode())
    run(sail_url, lake, "crm_customers")
    assert bronze(lake, "crm_customers", CRM_COLUMNS) == rows((None, None, line), ("C3", None, None))


def test_schema_drift_names_no_contract_column_of_a_rescued_json_line(home, lake, sail_url):
    land(home, "crm_customers", b'{"customer_id":"C1","customer_id":"C2","tier":"gold"}\n')
    result = run(sail_url, lake, "crm_customers")
    drift = next(e for e in result.get_asset_check_evaluations() if e.check_name == "schema_drift")
    assert drift.metadata["unknown_columns"].value == ["tier"]
    assert drift.metadata["rows_with_rescued_data"].value == 1


@pytest.mark.parametrize("line", ['["C1","a@x.test"]', '"C1"', "42", "null", "true", '{"customer_id":"C1"'])
def test_a_json_line_that_is_not_an_object_is_rescued_and_counted(home, lake, sail_url, line):
    land(home, "crm_customers", f'{{"customer_id":"C3"}}\n{line}\n'.encode())
    run(sail_url, lake, "crm_customers")
    assert bronze(lake, "crm_customers", CRM_COLUMNS) == rows((None, None, line), ("C3", None, None))


def test_json_values_that_are_not_strings_keep_their_json_text(home, lake, sail_url):
    land(home, "crm_customers", b'{"customer_id":7,"email":{"home":"a@x.test"},"loyalty_tier":null}\n')
    run(sail_url, lake, "crm_customers")
    assert bronze(lake, "crm_customers", CRM_COLUMNS) == [("7", '{"home":"a@x.test"}', '{"loyalty_tier":null}')]


# -- 9: a very long line ------------------------------------------------------------------------------------


# LF files are read by the engine, CRLF ones by the landing reader: both keep the line whole.
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_a_5_mb_csv_field_is_kept_whole(home, lake, sail_url, eol):
    land(
        home,
        "fx_rates",
        FX_HEADER.replace(b"\n", eol)
        + b'2026-11-01,EUR,"'
        + b"9" * (5 << 20)
        + b'"'
        + eol
        + b"2026-11-01,GBP,1.27"
        + eol,
    )
    run(sail_url, lake, "fx_rates")
    kept = {
        r["currency"]: r["rate_to_usd"] for r in lake.delta_table("bronze", "fx_rates").to_pyarrow_table().to_pylist()
    }
    assert kept == {"EUR": "9" * (5 << 20), "GBP": "1.27"}


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_a_5_mb_json_line_is_kept_whole(home, lake, sail_url, eol):
    land(home, "crm_customers", b'{"customer_id":"C1","email":"' + b"a" * (5 << 20) + b'"}' + eol)
    run(sail_url, lake, "crm_customers")
    assert bronze(lake, "crm_customers", CRM_COLUMNS) == [("C1", "a" * (5 << 20), None)]


# -- 10: a file with no records is a day with 0 rows ---------------------------------------------------------


@pytest.mark.parametrize(
    "source, content",
    [("fx_rates", b""), ("fx_rates", FX_HEADER), ("crm_customers", b"")],
    ids=["csv, zero bytes", "csv, header only", "json lines, zero bytes"],
)
def test_a_file_with_no_records_is_a_day_of_0_rows(home, lake, sail_url, source, content):
    """Kept, not refused: it replaces the day, so a day landed before and re-landed empty is then empty."""
    land(home, source, b'{"customer_id":"C1"}\n' if source == "crm_customers" else FX_HEADER + b"2026-11-01,EUR,1.08\n")
    run(sail_url, lake, source)
    land(home, source, content)
    metadata = run(sail_url, lake, source).get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows_written"].value == 0 and metadata["dagster/row_count"].value == 0
    assert lake.delta_table("bronze", source).to_pyarrow_table().num_rows == 0


# -- a year of files ---------------------------------------------------------------------------------------------


def test_a_year_of_landing_files_is_one_bronze_run(home, lake, sail_url):
    # 366 files unioned one after the other nest the plan 366 deep: past the stack of Sail's planner, which
    # then kills the process
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(366)]
    for n, day in enumerate(days):
        land(home, "crm_customers", f'{{"customer_id":"C{n}","email":"c{n}@x.test"}}\n'.encode(), day.isoformat())
    assert run(sail_url, lake, "crm_customers", days[0].isoformat(), days[-1].isoformat()).success
    assert bronze(lake, "crm_customers", CRM_COLUMNS) == rows(*((f"C{n}", f"c{n}@x.test", None) for n in range(366)))
