"""Read landing files into Bronze rows: every source column as a string (types are untrusted here), the
file each row came from, and in `_rescued_data` whatever did not fit the contract.

A file is kept whole or refused whole, never half-read (docs/architecture.md, "Landing files"):

- One physical line is one record, numbered from 1 as an editor shows it. A UTF-8 BOM and the CR of a CRLF
  ending are stripped. Blank lines (empty, or only spaces and tabs) are not records: skipped, not counted.
- `_rescued_data` holds either the unknown columns of a well-formed record as a JSON object (schema
  drift), or the raw text of a malformed line: a CSV line with broken quoting (every column null), a CSV
  line with too many or too few fields (fields taken in header order, missing ones null), a JSON line that
  is not an object (array, scalar, invalid JSON) or that has a key twice (every column null: neither value
  wins). Such a line is still a row, so every record line is counted.
- A zero-byte file, or a CSV file with only its header, is a day with 0 rows.
- A record that names a customer in the erasure register (lib/erasure.py) is not read: the file is parsed
  here without it, and `erased_records` counts it.
- Refused with `LandingFileError` naming the table, the file and the line, before anything of the run's
  window is written: bytes that are not UTF-8 (the file's encoding is in doubt, and the line could not be
  kept as text), and a CSV header that does not parse or names a column twice (no line could be mapped).

Every file is first checked in Python, one line at a time (`plain`). A plain file, which is what a healthy
source sends, is read by the engine's own reader. A file with any fault is parsed here instead and handed
to the engine as rows, because the engine's readers cannot be trusted with it: they fail the whole read on a
faulty line without naming the file, or change bytes silently (docs/benchmarks.md, "Measurements behind the
code", lists what Sail does with each fault).
"""

import codecs
import csv
import json
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse import catalog
from lakehouse.lib import erasure

RESCUED = "_rescued_data"
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# A line is bounded by memory, not by the csv module's 128 KiB default field limit.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


class MissingLandingFiles(Exception):
    pass


class LandingFileError(Exception):
    """A landing file Bronze refuses; raised while reading, before anything of the window is written."""


def file_format(source: str) -> str:
    """How a batch source lands: "jsonl" or "csv", as its catalog declaration says."""
    return catalog.table(f"bronze/{source}").landing


def landing_file(landing_dir: Path, source: str, day: date) -> Path:
    """`<landing>/<source>/<day>.<format>`: where a source's file for `day` lands."""
    return Path(landing_dir) / source / f"{day.isoformat()}.{file_format(source)}"


def days_in(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


def read_landing(
    spark: SparkSession,
    landing_dir: Path,
    source: str,
    columns: list[str],
    start: date,
    end: date,
    erased: frozenset[str] = frozenset(),
) -> DataFrame:
    """All landing files of `source` for the days in [start, end), as raw Bronze rows: the contract's
    `columns` as strings, anything else (schema drift, malformed lines) rescued, without the records of the
    `erased` customers (register hashes). Every file of the window is checked before this returns, so a
    refused file fails the run with nothing written."""
    files = {day: landing_file(landing_dir, source, day) for day in days_in(start, end)}
    missing = [str(f) for f in files.values() if not f.exists()]
    if missing:
        raise MissingLandingFiles(f"bronze.{source}: no landing file for {len(missing)} day(s): {', '.join(missing)}")
    frames = [
        read_file(spark, source, path, columns, erasure.registered_in(path, erased))
        .withColumn("_source_file", F.lit(str(path)))
        .withColumn("_partition_date", F.lit(day.isoformat()).cast("date"))
        for day, path in files.items()
    ]
    return union_all(frames)


def union_all(frames: list[DataFrame]) -> DataFrame:
    """The frames' rows in one DataFrame, unioned as a balanced tree: a chain of a year's files (365 unions
    deep) overflows the stack of Sail's planner, which kills the process (measured on Sail 0.7.2)."""
    while len(frames) > 1:
        paired = [frames[i].unionByName(frames[i + 1]) for i in range(0, len(frames) - 1, 2)]
        frames = paired + frames[len(paired) * 2 :]
    return frames[0]


def record_count(source: str, landing_dir: Path, start: date, end: date) -> int:
    """The records in the window's landing files, counted here rather than by the engine: the lines that
    are not blank, less each CSV file's header. Bronze must hold exactly this many rows."""
    count = 0
    for day in days_in(start, end):
        data = landing_file(landing_dir, source, day).read_bytes()
        found = sum(1 for line in data.removeprefix(codecs.BOM_UTF8).split(b"\n") if line.strip(b" \t\r"))
        count += max(0, found - 1) if file_format(source) == "csv" else found
    return count


def erased_records(source: str, landing_dir: Path, start: date, end: date, erased: frozenset[str]) -> int:
    """The records of the window's files that name an `erased` customer (not read, so not in Bronze)."""
    count = 0
    for day in days_in(start, end):
        path = landing_file(landing_dir, source, day)
        if ids := erasure.registered_in(path, erased):
            theirs = erasure.pattern(ids)
            records = lines(source, path)
            if file_format(source) == "csv":
                next(records, None)  # the header
            count += sum(1 for _, text in records if theirs.search(text))
    return count


def read_file(spark: SparkSession, source: str, path: Path, columns: list[str], erased_ids: set[str]) -> DataFrame:
    """A plain file through the engine's reader; any other, or one naming an erased customer, through the
    parser here, which raises LandingFileError for a refused one and skips the customer's records."""
    if plain(source, path) and not erased_ids:
        reader = read_json_lines if file_format(source) == "jsonl" else read_csv
        return reader(spark, str(path), columns)
    parse = parse_json_lines if file_format(source) == "jsonl" else parse_csv
    schema = T.StructType([T.StructField(c, T.StringType()) for c in [*columns, RESCUED]])
    skip = erasure.pattern(erased_ids) if erased_ids else None
    return spark.createDataFrame(list(parse(source, path, columns, skip)), schema)


# -- the engine's readers, for plain files ---------------------------------------------------------------------


def read_csv(spark: SparkSession, path: str, columns: list[str]) -> DataFrame:
    raw = spark.read.option("header", True).option("inferSchema", False).csv(path)
    unknown = [c for c in raw.columns if c not in columns]
    known = [F.col(c) if c in raw.columns else F.lit(None).cast("string").alias(c) for c in columns]
    if unknown:
        present = (
            F.greatest(*[F.col(c).isNotNull() for c in unknown]) if len(unknown) > 1 else F.col(unknown[0]).isNotNull()
        )
        rescued = F.when(present, F.to_json(F.struct(*unknown)))
    else:
        rescued = F.lit(None).cast("string")
    return raw.select(*known, rescued.alias(RESCUED))


def read_json_lines(spark: SparkSession, path: str, columns: list[str]) -> DataFrame:
    lines = spark.read.text(path)
    parsed = lines.select(F.from_json("value", "map<string,string>").alias("m"), "value")
    extra = F.map_filter("m", lambda k, v: ~k.isin(*columns))
    rescued = F.when(F.col("m").isNull(), F.col("value")).when(F.size(extra) > 0, F.to_json(extra))
    return parsed.select(*[F.col("m")[c].alias(c) for c in columns], rescued.alias(RESCUED))


# -- the check, and the parser for files that are not plain -----------------------------------------------------


def plain(source: str, path: Path) -> bool:
    """Whether the engine's own reader reads `path` right: UTF-8 without a BOM or any CR, no blank line,
    and every line well-formed (CSV: a header naming each column once, every line with the header's field
    count and quotes only around whole fields, with no `""` or backslash; JSON lines: an object with no key
    twice). Anything else, refused faults included, is for the parser, which names the line."""
    data = path.read_bytes()  # a day's file, read whole: line by line, this check took twice as long
    if data.startswith(codecs.BOM_UTF8) or b"\r" in data:
        return False
    try:
        records = data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return False
    if records[-1] == "":
        records.pop()  # the last line's LF ends it
    if file_format(source) == "jsonl":
        return all(json_object(r) is not None for r in records)
    if not records:
        return True  # zero bytes: a day with no records
    header = records[0].split(",")
    if '"' in records[0] or blank(records[0]) or len(set(header)) < len(header):
        return False
    width = len(header)
    for r in records[1:]:
        if '"' in r:
            fields = csv_fields(r)
            if fields is None or len(fields) != width or '""' in r or "\\" in r:
                return False
        elif r.count(",") + 1 != width or blank(r):
            return False
    return True


def refused(source: str, path: Path, line: int, what: str) -> LandingFileError:
    return LandingFileError(f"bronze.{source}: {path} line {line}: {what}; nothing written")


def decoded(source: str, path: Path, number: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise refused(source, path, number, f"not UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1})") from None


def blank(text: str) -> bool:
    return not text.strip(" \t")


def lines(source: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line that is not blank, without BOM or line ending."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            text = decoded(source, path, number, raw.removesuffix(b"\n").removesuffix(b"\r"))
            if not blank(text):
                yield number, text


def csv_fields(text: str) -> list[str] | None:
    """The fields of one CSV line (RFC 4180 quoting, `""` for a quote), or None if its quoting is broken:
    a quote that never closes on the line, or text after a closing quote."""
    try:
        return next(csv.reader([text], strict=True))
    except csv.Error:
        return None


def header_fields(source: str, path: Path, number: int, text: str) -> list[str]:
    header = csv_fields(text)
    if header is None:
        raise refused(source, path, number, "the header's quoting is broken")
    twice = [name for i, name in enumerate(header) if name in header[:i]]
    if twice:
        raise refused(source, path, number, f"column {twice[0]!r} appears twice in the header")
    return header


def parse_csv(source: str, path: Path, columns: list[str], skip: re.Pattern | None = None) -> Iterator[list]:
    """One row per record line (blank lines are skipped, not rows of nulls): `columns` by header name, an
    empty field as null, then `_rescued_data`. A line whose field count differs from the header's, or whose
    quoting is broken, keeps its raw text in `_rescued_data`."""
    numbered = lines(source, path)
    number, text = next(numbered, (1, None))
    if text is None:
        return  # zero bytes, or only blank lines: no records
    header = header_fields(source, path, number, text)
    width = len(header)
    # Index `width` is an empty field: the value of a contract column the header lacks, or of a missing field.
    position = [header.index(c) if c in header else width for c in columns]
    unknown = [(i, name) for i, name in enumerate(header) if name not in columns]
    for _, text in numbered:
        if skip and skip.search(text):
            continue
        fields = csv_fields(text)
        if fields is not None and len(fields) == width:
            extra = {name: fields[i] for i, name in unknown if fields[i]}
            rescued = _JSON.encode(extra) if extra else None
        else:  # broken quoting (no field is trusted) or a field count off the header's
            fields, rescued = (fields or [])[:width], text
            fields += [""] * (width - len(fields))
        fields.append("")
        yield [fields[i] or None for i in position] + [rescued]


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        raise _DuplicateKey
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def json_object(text: str) -> dict | None:
    """The line's JSON object, or None if it is not JSON, not an object, or has a key twice (at any depth)."""
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError):  # JSONDecodeError and _DuplicateKey are ValueErrors
        return None
    return value if isinstance(value, dict) else None


def parse_json_lines(source: str, path: Path, columns: list[str], skip: re.Pattern | None = None) -> Iterator[list]:
    """One row per record line (blank lines are skipped): `columns` from the line's object, a value that is
    not a string as its JSON text, then `_rescued_data`: the unknown keys as a JSON object, or the raw line
    if it is not an object with unique keys (every column is then null)."""
    known = set(columns)
    for _, text in lines(source, path):
        if skip and skip.search(text):
            continue
        record = json_object(text)
        if record is None:
            yield [None] * len(columns) + [text]
            continue
        extra = {k: v for k, v in record.items() if k not in known}
        yield [as_string(record.get(c)) for c in columns] + [_JSON.encode(extra) if extra else None]


def as_string(value: object) -> str | None:
    return value if value is None or isinstance(value, str) else _JSON.encode(value)
