"""Erasure of customers (GDPR/CCPA): the register of erased customers and how each store matches their rows.

A customer is named by their id (`C0001234`). The register keeps only a salted SHA-256 of each id
(`subject_hash`), in a Delta table beside the lake's layers, so it travels with the lake (local or S3).
Every ingest reads it: batch Bronze drops the landing-file records that name an erased customer (lib/landing.py),
streaming Bronze keeps an erased message's Kafka coordinates only (a tombstone), so that offsets still say what
was landed.

A row belongs to a customer when its subject column (the catalog's `subject`: customer_id, user_id) is
their id, or when a raw column (the payload as received, rescued fields, a quarantined record) contains
it anywhere, in any case: a malformed record is still their data.
"""

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

from lakehouse import settings
from lakehouse.lib.contracts.accepted import CUSTOMER_ID

RAW_COLUMNS = ("_raw", "_rescued_data", "_record")  # text that may hold any field of the original record
ERASED = "erased: the customer is in the erasure register"  # a streaming tombstone's _parse_error
REGISTER = ("_governance", "erasure_register")  # beside bronze/, silver/, gold/: not a layer's table
_ID = re.compile(CUSTOMER_ID, re.IGNORECASE)


def normalised(customer_id: str) -> str:
    return customer_id.strip().upper()


def subject_hash(customer_id: str) -> str:
    """The register's form of an id: SHA-256 of the salt and the id, so the register names nobody. The salt
    (LAKEHOUSE_ERASURE_SALT) must be a secret in production: ids are few enough to hash them all."""
    return hashlib.sha256((settings.erasure_salt() + normalised(customer_id)).encode()).hexdigest()


def ids_in(text: str | None) -> set[str]:
    """The customer ids a raw text contains."""
    return {normalised(m) for m in _ID.findall(text)} if text else set()


# -- the register ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Register:
    """The erasure register of the lake at `root`."""

    root: str
    storage_options: dict

    @property
    def path(self) -> str:
        return "/".join([self.root.rstrip("/"), *REGISTER])

    def hashes(self) -> frozenset[str]:
        if not DeltaTable.is_deltatable(self.path, self.storage_options):
            return frozenset()
        table = DeltaTable(self.path, storage_options=self.storage_options).to_pyarrow_table(columns=["subject_hash"])
        return frozenset(table.column("subject_hash").to_pylist())

    def add(self, hashes: Iterable[str], run_id: str) -> int:
        """Register the hashes not registered yet, in one commit; returns how many were new."""
        new = sorted(set(hashes) - self.hashes())
        if new:
            rows = pa.table(
                {
                    "subject_hash": new,
                    "erased_at": pa.array([datetime.now(UTC)] * len(new), pa.timestamp("us", "UTC")),
                    "run_id": [run_id] * len(new),
                }
            )
            write_deltalake(self.path, rows, mode="append", storage_options=self.storage_options)
        return len(new)


# -- matching rows -----------------------------------------------------------------------------------------------


def searched(subject: str | None, columns: Iterable[str]) -> list[str]:
    """The columns of a table that can name a customer: its subject column and its raw columns."""
    columns = list(columns)
    return [*([subject] if subject in columns else []), *(c for c in RAW_COLUMNS if c in columns)]


def pattern(ids: Iterable[str]) -> re.Pattern:
    """Matches text that names one of `ids`, in any case (ids match CUSTOMER_ID: no regex metacharacters)."""
    return re.compile("|".join(sorted(ids)), re.IGNORECASE)


def registered_in(path: Path, hashes: frozenset[str]) -> set[str]:
    """The registered customers a file names (the file is not read while the register is empty)."""
    return {i for i in ids_in(path.read_text(errors="replace")) if subject_hash(i) in hashes} if hashes else set()


def arrow_erased(rows: pa.Table, subject: str | None, hashes: frozenset[str]) -> pa.Array:
    """The same test over an Arrow table (streaming Bronze builds its rows in Arrow); each distinct id is hashed
    once, not once per message."""
    columns = searched(subject, rows.column_names)
    if not hashes or not columns:  # before the columns become Python strings: most batches stop here
        return pa.repeat(pa.scalar(False), rows.num_rows)
    values = [rows.column(c).to_pylist() for c in columns]
    named = [set().union(*map(ids_in, row)) for row in zip(*values, strict=True)]
    registered = {i for i in set().union(*named) if subject_hash(i) in hashes}
    return pa.array([not ids.isdisjoint(registered) for ids in named])


def ids_held(dt: DeltaTable, subject: str | None) -> set[str]:
    """Every customer id a table names."""
    found: set[str] = set()
    for column in searched(subject, [f.name for f in dt.schema().fields]):
        for text in pc.unique(dt.to_pyarrow_table(columns=[column]).column(column).drop_null()).to_pylist():
            found |= ids_in(text)
    return found


def delete_predicate(ids: Iterable[str], subject: str | None, columns: Iterable[str]) -> str | None:
    """A delta-rs (DataFusion SQL) predicate for the rows that name one of `ids`; None if none could."""
    ids, columns = sorted(ids), searched(subject, columns)
    if not ids or not columns:
        return None
    regex = sql_text(f"(?i)({pattern(ids).pattern})")
    return " OR ".join(f"coalesce(regexp_like({c}, {regex}), false)" for c in columns)


def sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# -- streaming tombstones ----------------------------------------------------------------------------------------

# What an erased message keeps: where it was in Kafka and when it landed, so that Bronze still records the offset
# as landed (the next batch starts after it) and a replay finds it taken.
TOMBSTONE_KEEPS = (
    "kafka_topic",
    "kafka_topic_id",
    "kafka_epoch",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
    "_ingested_at",
    "_ingest_date",
    "_run_id",
)
NOT_ERASED = f"coalesce(_parse_error, '') <> {sql_text(ERASED)}"  # Spark SQL: the rows that are not tombstones


def tombstoned(rows: pa.Table, subject: str | None, hashes: frozenset[str]) -> tuple[pa.Table, int]:
    """`rows` with the messages of registered customers emptied to tombstones, and how many there were."""
    erased = arrow_erased(rows, subject, hashes)
    count = pc.sum(erased).as_py() or 0
    if not count:
        return rows, 0
    columns = [
        rows.column(f.name)
        if f.name in TOMBSTONE_KEEPS
        else pc.if_else(erased, pa.scalar(ERASED if f.name == "_parse_error" else None, f.type), rows.column(f.name))
        for f in rows.schema
    ]
    return pa.table(columns, schema=rows.schema), count


def tombstone_updates(columns: Iterable[str]) -> dict[str, str]:
    """The delta-rs UPDATE that empties rows of a streaming table to tombstones."""
    return {c: sql_text(ERASED) if c == "_parse_error" else "NULL" for c in columns if c not in TOMBSTONE_KEEPS}
