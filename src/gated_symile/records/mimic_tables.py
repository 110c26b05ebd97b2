"""DuckDB readers of the MIMIC csv(.gz) tables (docs/data.md §1-§3).

Why DuckDB views over ``read_csv`` rather than pandas: ``labevents`` of the full database is ~120
million rows; DuckDB streams the gzip file through the cohort query, so memory stays bounded by
the number of admissions, not by the number of lab rows.

How the tables are read (the same for every table):

- the header line is read first; required columns are looked up **by name** (extra columns are
  tolerated and read as text), a missing file or column raises :class:`RecordError` naming the file;
- every column gets an explicit type (no sniffing), empty fields are NULL, timestamps are
  ``YYYY-MM-DD HH:MM:SS``; quoted multi-line fields (``labevents.comments``) are parsed as CSV;
- ``file_row`` (1-based row number in the file, from ``WITH ORDINALITY``) is kept where a rule
  breaks ties by file order.  DuckDB numbers the rows in a single ordered pass before any filter,
  which was checked against a row-index column under 1, 2 and 8 threads
  (``tests/test_mimic_tables.py`` repeats the check).

DuckDB evaluates views lazily, so a type error deep inside a file surfaces when a query runs:
:func:`reading` wraps such a query and turns the DuckDB error into a ``RecordError`` naming the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gated_symile.errors import RecordError
from gated_symile.records.errors import MissingRecord

__all__ = [
    "ADMISSIONS",
    "CXR_CHEXPERT",
    "CXR_METADATA",
    "CXR_RECORD_LIST",
    "CHEXPERT_LABELS",
    "ECG_RECORD_LIST",
    "LABEVENTS",
    "PATIENTS",
    "TableSpec",
    "csv_select_sql",
    "duckdb_message",
    "duckdb_out_of_memory",
    "duckdb_resource_error",
    "load_table",
    "number_blocks",
    "read_header",
    "reading",
    "register_table",
    "sql_name",
    "sql_string",
    "store_arrow",
]

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"
CSV_BUFFER_BYTES = 2 << 20
"""DuckDB's CSV read buffer (its default is 32 MiB per buffer, several in flight per thread): a
table larger than the default buffer held 2 x 30 MiB more while labevents streamed, which made the
cohort's peak RSS grow with the release up to that size; at 2 MiB (= DuckDB's maximum line length)
the scan is as fast."""


@dataclass(frozen=True)
class TableSpec:
    """What the cohort needs from one CSV table: column name -> DuckDB type.

    ``required`` columns must be in the header; ``optional`` ones become typed NULLs when absent
    (the column still exists in the view, so the SQL does not change with the release).
    """

    filename: str
    required: dict[str, str]
    optional: dict[str, str] = field(default_factory=dict)


PATIENTS = TableSpec(
    "patients.csv.gz",
    {
        "subject_id": "BIGINT",
        "gender": "VARCHAR",
        "anchor_age": "INTEGER",
        "anchor_year": "INTEGER",
        "dod": "DATE",
    },
    {"anchor_year_group": "VARCHAR"},
)
ADMISSIONS = TableSpec(
    "admissions.csv.gz",
    {"subject_id": "BIGINT", "hadm_id": "BIGINT", "admittime": "TIMESTAMP"},
    {
        "dischtime": "TIMESTAMP",
        "deathtime": "TIMESTAMP",
        "admission_type": "VARCHAR",
        "admission_location": "VARCHAR",
        "discharge_location": "VARCHAR",
        "race": "VARCHAR",
        "hospital_expire_flag": "INTEGER",
    },
)
LABEVENTS = TableSpec(
    "labevents.csv.gz",
    {"subject_id": "BIGINT", "itemid": "INTEGER", "charttime": "TIMESTAMP", "valuenum": "DOUBLE"},
    {"hadm_id": "BIGINT", "value": "VARCHAR"},
)
ECG_RECORD_LIST = TableSpec(
    "record_list.csv",
    {"subject_id": "BIGINT", "study_id": "BIGINT", "ecg_time": "TIMESTAMP", "path": "VARCHAR"},
    {"file_name": "VARCHAR"},
)
CXR_METADATA = TableSpec(
    "mimic-cxr-2.0.0-metadata.csv.gz",
    # StudyDate/StudyTime stay text: the rule takes the integer part of StudyTime digit by digit,
    # which a float round trip could change.
    {
        "dicom_id": "VARCHAR",
        "subject_id": "BIGINT",
        "study_id": "BIGINT",
        "ViewPosition": "VARCHAR",
        "StudyDate": "VARCHAR",
        "StudyTime": "VARCHAR",
    },
    {"ViewCodeSequence_CodeMeaning": "VARCHAR"},
)
CXR_RECORD_LIST = TableSpec(
    "cxr-record-list.csv.gz",
    {"subject_id": "BIGINT", "study_id": "BIGINT", "dicom_id": "VARCHAR"},
    {"path": "VARCHAR"},
)
CHEXPERT_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
"""The 14 CheXpert label columns, in file order."""
CXR_CHEXPERT = TableSpec(
    "mimic-cxr-2.0.0-chexpert.csv.gz",
    {
        "subject_id": "BIGINT",
        "study_id": "BIGINT",
        **{label: "DOUBLE" for label in CHEXPERT_LABELS},
    },
)


def sql_string(text: str | Path) -> str:
    """``text`` as a single-quoted SQL literal."""
    return "'" + str(text).replace("'", "''") + "'"


def sql_name(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (CheXpert labels contain spaces)."""
    return '"' + name.replace('"', '""') + '"'


MAX_HEADER_BYTES = 1 << 20
"""Longest header line read (the widest MIMIC table header is under 1 KB): a file without a line
break, or a small gzip that inflates to gigabytes of one line, is not read to the end."""


def read_header(path: str | Path) -> list[str]:
    """Column names of a CSV or CSV.gz file; raises ``RecordError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingRecord(path, "file not found")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            first = handle.readline(MAX_HEADER_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: corrupt deflate data
        raise RecordError(path, f"cannot read: {exc}") from exc
    if len(first) > MAX_HEADER_BYTES:
        raise RecordError(path, f"no line break in the first {MAX_HEADER_BYTES} bytes (no header)")
    if not first.strip():
        raise RecordError(path, "empty file (no header row)")
    text = first.decode("utf-8-sig", errors="replace")
    try:
        return next(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # e.g. a lone carriage return inside the header line
        raise RecordError(path, f"cannot parse the header row: {exc}") from exc


def csv_select_sql(path: str | Path, spec: TableSpec, *, file_row: bool = False) -> str:
    """``SELECT`` over ``read_csv`` giving exactly the spec's columns (by name, typed).

    With ``file_row`` the 1-based row number in the file is added as ``file_row`` (tie-breaker).
    """
    path = Path(path)
    header = read_header(path)
    missing = [name for name in spec.required if name not in header]
    if missing:
        raise RecordError(
            path, f"missing required column(s) {', '.join(missing)} (header: {', '.join(header)})"
        )
    wanted = {**spec.optional, **spec.required}
    types = {name: wanted.get(name, "VARCHAR") for name in dict.fromkeys(header)}
    columns = ", ".join(f"{sql_string(name)}: {sql_string(kind)}" for name, kind in types.items())
    select = [
        sql_name(name) if name in header else f"CAST(NULL AS {kind}) AS {sql_name(name)}"
        for name, kind in {**spec.required, **spec.optional}.items()
    ]
    if file_row:
        select.append("ordinality AS file_row")
    source = (
        f"read_csv({sql_string(path)}, header = true, auto_detect = false, delim = ',', "
        f"buffer_size = {CSV_BUFFER_BYTES}, "
        f"quote = '\"', escape = '\"', nullstr = '', columns = {{{columns}}}, "
        f"timestampformat = {sql_string(TIMESTAMP_FORMAT)}, dateformat = {sql_string(DATE_FORMAT)})"
    )
    ordinality = " WITH ORDINALITY" if file_row else ""
    return f"SELECT {', '.join(select)} FROM {source}{ordinality}"


def register_table(
    con, view: str, path: str | Path, spec: TableSpec, *, file_row: bool = False
) -> Path:
    """Create the DuckDB view ``view`` over the CSV file; returns the resolved path."""
    path = Path(path)
    with reading(path):
        con.execute(
            f"CREATE OR REPLACE VIEW {view} AS {csv_select_sql(path, spec, file_row=file_row)}"
        )
    return path


def load_table(
    con, name: str, path: str | Path, spec: TableSpec, *, file_row: bool = False
) -> Path:
    """Materialise a (small) table ``name`` from the CSV file now, so parse errors name the file."""
    path = Path(path)
    with reading(path):
        con.execute(
            f"CREATE OR REPLACE TABLE {name} AS {csv_select_sql(path, spec, file_row=file_row)}"
        )
    return path


def store_arrow(con, statement: str, table) -> None:
    """Run ``<statement> SELECT * FROM`` a pyarrow ``table`` (registered for the statement only),
    e.g. ``store_arrow(con, "CREATE OR REPLACE TABLE t AS", rows)`` or ``"INSERT INTO t"``."""
    con.register("arrow_rows", table)
    try:
        con.execute(f"{statement} SELECT * FROM arrow_rows")
    finally:
        con.unregister("arrow_rows")


def number_blocks(con, name: str, select_sql: str, order_by: str, rows_per_block: int) -> int:
    """Create table ``name``: the rows of ``select_sql`` with a ``block`` column numbering them
    ``rows_per_block`` at a time in ``order_by`` order; returns the number of blocks (0 if none).

    Why: a stage that works through a large result in blocks while it runs other statements on
    the same connection cannot keep one pending result open; it selects ``WHERE block = ?``."""
    con.execute(f"""
        CREATE OR REPLACE TABLE {name} AS
        SELECT *, (row_number() OVER (ORDER BY {order_by}) - 1) // {int(rows_per_block)} AS block
        FROM ({select_sql})
        """)  # fmt: skip
    return con.sql(f"SELECT coalesce(max(block) + 1, 0) FROM {name}").fetchall()[0][0]


@contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Turn a DuckDB error raised while a query scans ``path`` into a ``RecordError``; errors of
    the stage's own resources (:func:`duckdb_resource_error`) are not the file's and pass."""
    import duckdb

    try:
        yield
    except duckdb.Error as exc:
        if duckdb_resource_error(exc):
            raise
        raise RecordError(path, f"cannot parse as a MIMIC table: {duckdb_message(exc)}") from exc


def duckdb_message(exc: BaseException) -> str:
    """The first line of a DuckDB error (its message; the rest is advice), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def duckdb_resource_error(exc: BaseException) -> bool:
    """Whether a DuckDB error is about the stage's resources (its memory limit, or writing its
    database and spill files on a full disk), not about the data being read."""
    import duckdb

    return duckdb_out_of_memory(exc) or (isinstance(exc, duckdb.IOException) and "Could not write" in str(exc))


def duckdb_out_of_memory(exc: BaseException) -> bool:
    """Whether DuckDB ran out of its memory limit: an ``OutOfMemoryException``, or the same
    failure met while committing a table (a ``TransactionException`` "could not allocate block
    of size ...": seen on a 50,000-admission release under a 48 MB limit) or while checkpointing
    its database (a ``FatalException`` "... failed to pin block of size ...": seen on a
    50,000-admission release under the default 29 MiB with a lab aggregation that was reverted)."""
    import duckdb

    text = str(exc)
    return isinstance(exc, duckdb.OutOfMemoryException) or (
        isinstance(exc, duckdb.Error) and ("could not allocate block" in text or "failed to pin block" in text)
    )
