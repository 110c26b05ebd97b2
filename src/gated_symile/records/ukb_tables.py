"""Readers of UK-Biobank-style tables: main dataset, Olink long format, HES (docs/data.md §9.2).

Exporters spell main-dataset columns three ways: ``23400-0.0`` (ukbconv), ``f.23400.0.0`` (R) and
``p23400_i0`` / ``p23400_i0_a1`` / ``p31`` (Research Analysis Platform); every reader here speaks
the ukbconv spelling ``<field>-<instance>.<array>`` so downstream code never sees the others.
Olink is pivoted from long to wide with DuckDB, streaming the file in record batches (the real
``olink_data.txt`` has tens of millions of rows).  Hospital episode dates come as ``dd/mm/yyyy``
(portal exports) or ISO (RAP); both are accepted per value.  Every problem raises
``RecordError(path, problem)``.  No torch here.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from gated_symile.records.errors import MissingRecord, UnreadableRecord
from gated_symile.records.mimic_tables import MAX_HEADER_BYTES, sql_string

__all__ = [
    "DATE_FORMATS",
    "FieldColumn",
    "OlinkMatrix",
    "normalize_column",
    "parse_column",
    "parse_dates",
    "pivot_olink",
    "read_hesin",
    "read_hesin_diag",
    "read_main_dataset",
    "read_olink_coding",
]

DATE_FORMATS: tuple[str, ...] = ("%Y-%m-%d", "%d/%m/%Y")
_EID_NAMES = ("eid", "f.eid", "participant.eid")
_SPELLINGS = (
    re.compile(r"^(\d+)-(\d+)\.(\d+)$"),
    re.compile(r"^f\.(\d+)\.(\d+)\.(\d+)$"),
    re.compile(r"^p(\d+)(?:_i(\d+))?(?:_a(\d+))?$"),
)
OLINK_COLUMNS = ("eid", "ins_index", "protein_id", "result")
_OLINK_TYPES = {
    "eid": "BIGINT",
    "ins_index": "INTEGER",
    "protein_id": "INTEGER",
    "result": "DOUBLE",
}
HESIN_REQUIRED = ("eid", "ins_index", "epistart", "admidate")
HESIN_DATES = ("epistart", "epiend", "admidate", "disdate")
DIAG_REQUIRED = ("eid", "ins_index", "arr_index", "level", "diag_icd10")


class FieldColumn(NamedTuple):
    """One main-dataset column: showcase field id, instance (visit) and array index."""

    field: int
    instance: int
    array: int

    @property
    def name(self) -> str:
        """The canonical (ukbconv) spelling ``<field>-<instance>.<array>``."""
        return f"{self.field}-{self.instance}.{self.array}"


def parse_column(name: str) -> FieldColumn | None:
    """Field, instance and array of a column in any of the three spellings; None for others.

    RAP names without ``_i``/``_a`` (``p31``) mean instance 0, array 0.
    """
    text = name.strip().strip('"')
    for pattern in _SPELLINGS:
        match = pattern.match(text)
        if match:
            field, instance, array = (int(g) if g is not None else 0 for g in match.groups())
            return FieldColumn(field, instance, array)
    return None


def normalize_column(name: str) -> str | None:
    """``"eid"`` for the participant column, the canonical name for a field column, else None."""
    if name.strip().strip('"').lower() in _EID_NAMES:
        return "eid"
    column = parse_column(name)
    return column.name if column else None


def read_main_dataset(
    path: str | Path,
    fields: Iterable[int] | None = None,
    instances: Iterable[int] | None = None,
    date_fields: Iterable[int] = (53,),
) -> pl.DataFrame:
    """The main dataset's ``eid`` plus the selected field columns, canonically named.

    ``fields``/``instances`` filter the columns (None = all); each requested field must have at
    least one column among the requested instances.  Fields in ``date_fields`` become ``pl.Date``,
    all others ``Float64`` (a non-numeric value raises).  Columns keep the file's order.
    Comma- or tab-separated, optionally gzipped.
    """
    path = Path(path)
    header, separator = _header(path)
    eid_original, selected = _select_columns(path, header, fields, instances)
    try:
        frame = pl.read_csv(
            path, separator=separator, columns=[eid_original, *selected], infer_schema=False
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UnreadableRecord(path, f"cannot read table ({exc})") from exc
    frame = frame.rename({eid_original: "eid", **selected})
    return _typed_main_columns(path, frame, selected, set(date_fields))


def _select_columns(
    path: Path, header: list[str], fields: Iterable[int] | None, instances: Iterable[int] | None
) -> tuple[str, dict[str, str]]:
    """The header's eid column and ``{original: canonical}`` of the wanted field columns.

    Decided from the header alone, so that polars reads only the wanted columns of a main dataset
    with tens of thousands of them, and so that two spellings of one column or a requested field
    without a column fail before any data is read.
    """
    canonical = [normalize_column(name) for name in header]
    if "eid" not in canonical:
        raise UnreadableRecord(path, f"no eid column (first columns: {header[:3]})")
    seen: dict[str, str] = {}
    for original, name in zip(header, canonical):
        if name is not None and name in seen:
            raise UnreadableRecord(path, f"columns {seen[name]!r} and {original!r} are both {name}")
        if name is not None:
            seen[name] = original
    want_fields = None if fields is None else set(fields)
    want_instances = None if instances is None else set(instances)
    selected: dict[str, str] = {}
    for original, name in zip(header, canonical):
        column = parse_column(original) if name not in (None, "eid") else None
        if column is None:
            continue
        if want_fields is not None and column.field not in want_fields:
            continue
        if want_instances is not None and column.instance not in want_instances:
            continue
        selected[original] = name
    if want_fields is not None:
        found = {parse_column(o).field for o in selected}
        missing = sorted(want_fields - found)
        if missing:
            scope = "" if want_instances is None else f" at instance(s) {sorted(want_instances)}"
            raise UnreadableRecord(
                path,
                f"no column for field(s) {missing[:5]}{'...' if len(missing) > 5 else ''}{scope}",
            )
    return header[canonical.index("eid")], selected


def _typed_main_columns(
    path: Path, frame: pl.DataFrame, selected: dict[str, str], dates: set[int]
) -> pl.DataFrame:
    """``eid`` as Int64 (present, unique), date fields as ``pl.Date``, every other field Float64.

    The file is read as strings so that a bad value is named with its column here instead of
    being silently nulled by polars' type inference.
    """
    casts = [_to_int(path, frame["eid"], "eid")]
    for original, name in selected.items():
        if parse_column(original).field in dates:
            casts.append(parse_dates(frame[name], path, name))
        else:
            casts.append(_to_float(path, frame[name], name))
    out = pl.DataFrame(casts)
    if out["eid"].null_count():
        raise UnreadableRecord(path, "empty eid value")
    if out["eid"].is_duplicated().any():
        raise UnreadableRecord(
            path, f"duplicate eid {out.filter(pl.col('eid').is_duplicated())['eid'][0]}"
        )
    return out


def read_olink_coding(path: str | Path) -> pl.DataFrame:
    """Data-coding 143: ``protein_id``, ``abbreviation``, ``name`` from ``meaning = "ABBR;Name"``."""
    path = Path(path)
    frame = _read_tsv(path, ("coding", "meaning"))
    parts = frame["meaning"].str.split_exact(";", 1)
    return pl.DataFrame(
        [
            _to_int(path, frame["coding"], "coding").alias("protein_id"),
            parts.struct.field("field_0").str.strip_chars().alias("abbreviation"),
            parts.struct.field("field_1").str.strip_chars().fill_null("").alias("name"),
        ]
    ).sort("protein_id")


@dataclass(frozen=True)
class OlinkMatrix:
    """Wide Olink results of one instance: ``values[i, j]`` = NPX of ``eids[i]``, ``protein_ids[j]``.

    Rows and columns are ascending; a protein not measured for a participant is NaN.
    """

    eids: np.ndarray
    protein_ids: np.ndarray
    values: np.ndarray


def pivot_olink(
    path: str | Path, ins_index: int = 0, *, threads: int = 1, batch_rows: int = 1_000_000
) -> OlinkMatrix:
    """Pivot ``olink_data.txt`` (long, tab-separated, optionally gzipped) for one ``ins_index``.

    DuckDB streams the file three times (distinct eids, distinct proteins, values) so memory is
    the output matrix plus one batch.  Duplicate ``(eid, protein_id)`` rows raise.
    """
    import duckdb

    path = Path(path)
    header, separator = _header(path)
    if separator != "\t" or any(c not in header for c in OLINK_COLUMNS):
        missing = [c for c in OLINK_COLUMNS if c not in header]
        raise UnreadableRecord(path, f"not a tab-separated Olink long table (missing {missing})")
    types = ", ".join(
        f"{sql_string(c)}: {sql_string(_OLINK_TYPES.get(c, 'VARCHAR'))}" for c in header
    )
    source = (
        f"read_csv({sql_string(path)}, delim='\t', header=true, quote='', nullstr='', "
        f"columns={{{types}}})"
    )
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {max(1, int(threads))}")
        where = f"WHERE ins_index = {int(ins_index)}"
        eids = con.execute(f"SELECT DISTINCT eid FROM {source} {where} ORDER BY eid").fetchnumpy()
        proteins = con.execute(
            f"SELECT DISTINCT protein_id FROM {source} {where} ORDER BY protein_id"
        ).fetchnumpy()
        eid_arr = np.asarray(eids["eid"], dtype=np.int64)
        pid_arr = np.asarray(proteins["protein_id"], dtype=np.int64)
        if np.ma.isMaskedArray(eids["eid"]) or np.ma.isMaskedArray(proteins["protein_id"]):
            raise UnreadableRecord(path, "empty eid or protein_id value")
        values = np.full((eid_arr.size, pid_arr.size), np.nan)
        seen = np.zeros(values.shape, dtype=bool)
        reader = con.sql(f"SELECT eid, protein_id, result FROM {source} {where}").to_arrow_reader(
            batch_rows
        )
        for batch in reader:
            rows = np.searchsorted(eid_arr, batch.column(0).to_numpy(zero_copy_only=False))
            cols = np.searchsorted(pid_arr, batch.column(1).to_numpy(zero_copy_only=False))
            if seen[rows, cols].any() or np.unique(rows * pid_arr.size + cols).size != rows.size:
                raise UnreadableRecord(
                    path, f"duplicate (eid, protein_id) rows at ins_index {ins_index}"
                )
            seen[rows, cols] = True
            values[rows, cols] = batch.column(2).to_numpy(zero_copy_only=False)
    except duckdb.Error as exc:
        raise UnreadableRecord(
            path, f"cannot read Olink table ({str(exc).splitlines()[0]})"
        ) from exc
    finally:
        con.close()
    return OlinkMatrix(eid_arr, pid_arr, values)


def read_hesin(path: str | Path) -> pl.DataFrame:
    """``hesin.txt``: ``eid``, ``ins_index`` (Int64), date columns as ``pl.Date``, ``episode_date``.

    ``episode_date`` = ``epistart``, else ``admidate`` (docs/data.md §9.2); other columns stay strings.
    """
    path = Path(path)
    frame = _read_tsv(path, HESIN_REQUIRED)
    casts = [_to_int(path, frame[c], c) for c in ("eid", "ins_index")]
    casts += [parse_dates(frame[c], path, c) for c in HESIN_DATES if c in frame.columns]
    frame = frame.with_columns(casts)
    frame = frame.with_columns(pl.coalesce("epistart", "admidate").alias("episode_date"))
    if frame.select(pl.struct("eid", "ins_index").is_duplicated().any()).item():
        raise UnreadableRecord(path, "duplicate (eid, ins_index) episodes")
    return frame


def read_hesin_diag(path: str | Path) -> pl.DataFrame:
    """``hesin_diag.txt``: keys as Int64, codes upper-case without dots (empty -> null)."""
    path = Path(path)
    frame = _read_tsv(path, DIAG_REQUIRED)
    ints = [_to_int(path, frame[c], c) for c in ("eid", "ins_index", "arr_index", "level")]
    codes = [
        pl.col(c).str.strip_chars().str.replace_all(".", "", literal=True).str.to_uppercase()
        .replace("", None)
        for c in ("diag_icd9", "diag_icd10") if c in frame.columns
    ]  # fmt: skip
    return frame.with_columns(ints).with_columns(codes)


def parse_dates(values: pl.Series, path: str | Path, column: str) -> pl.Series:
    """Strings in ISO ``yyyy-mm-dd`` or ``dd/mm/yyyy`` (mixed allowed) to ``pl.Date``; empty -> null."""
    text = values.cast(pl.String).str.strip_chars().replace("", None)
    parsed = pl.select(
        pl.coalesce([text.str.strptime(pl.Date, fmt, strict=False) for fmt in DATE_FORMATS])
    ).to_series()
    bad = text.is_not_null() & parsed.is_null()
    if bad.any():
        raise UnreadableRecord(
            path,
            f"column {column}: unrecognised date {text.filter(bad)[0]!r} (expected "
            "dd/mm/yyyy or yyyy-mm-dd)",
        )
    return parsed.alias(values.name)


def _header(path: Path) -> tuple[list[str], str]:
    """Column names and separator (tab if the header line has one, else comma)."""
    if not path.is_file():
        raise MissingRecord(path, "file does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            line = handle.readline(MAX_HEADER_BYTES + 1)
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
        raise UnreadableRecord(path, f"cannot read header ({exc})") from exc
    if len(line) > MAX_HEADER_BYTES:
        raise UnreadableRecord(path, f"no line break in the first {MAX_HEADER_BYTES} characters")
    line = line.rstrip("\r\n")
    if not line:
        raise UnreadableRecord(path, "empty file (no header line)")
    separator = "\t" if "\t" in line else ","
    return [name.strip().strip('"') for name in line.split(separator)], separator


def _read_tsv(path: Path, required: Iterable[str]) -> pl.DataFrame:
    """All columns as strings; the required ones must be named exactly so in the header."""
    _header(path)  # missing, empty or undecodable file: a clear error before polars
    try:
        frame = pl.read_csv(path, separator="\t", infer_schema=False, quote_char=None)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UnreadableRecord(path, f"cannot read table ({exc})") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:  # checked on polars' names: a quoted or padded header name is not the column
        raise UnreadableRecord(path, f"missing column(s) {missing}")
    return frame


def _to_int(path: Path, values: pl.Series, column: str) -> pl.Series:
    text = values.str.strip_chars().replace("", None)
    out = text.cast(pl.Int64, strict=False)
    bad = text.is_not_null() & out.is_null()
    if bad.any():
        raise UnreadableRecord(path, f"column {column}: not an integer: {text.filter(bad)[0]!r}")
    return out.alias(column)


def _to_float(path: Path, values: pl.Series, column: str) -> pl.Series:
    text = values.str.strip_chars().replace("", None)
    out = text.cast(pl.Float64, strict=False)
    bad = text.is_not_null() & out.is_null()
    if bad.any():
        raise UnreadableRecord(path, f"column {column}: not a number: {text.filter(bad)[0]!r}")
    return out.alias(column)
