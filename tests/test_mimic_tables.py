"""MIMIC csv(.gz) table readers: real demo tables, quirks, clear errors, file-order row numbers."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from gated_symile.errors import RecordError
from gated_symile.data.mimic.labs import LAB_COLUMNS, LAB_ITEMIDS
from gated_symile.records.mimic_tables import (
    ADMISSIONS,
    LABEVENTS,
    PATIENTS,
    TableSpec,
    csv_select_sql,
    load_table,
    read_header,
    register_table,
)
from tests.mimic_raw_fixtures import LABEVENTS_HEADER, write_csv

DEMO_HOSP = Path(__file__).parent / "data" / "mimic-iv-demo-2.2" / "hosp"


@pytest.fixture()
def con():
    connection = duckdb.connect()
    connection.execute("SET threads = 2")
    yield connection
    connection.close()


def test_lab_itemids_are_the_50_in_ascending_order():
    assert len(LAB_ITEMIDS) == 50 == len(set(LAB_ITEMIDS))
    assert list(LAB_ITEMIDS) == sorted(LAB_ITEMIDS)
    assert LAB_ITEMIDS[0] == 50802 and LAB_ITEMIDS[-1] == 52172 and "51221" in LAB_COLUMNS


def test_real_demo_tables_load(con):
    register_table(con, "labevents", DEMO_HOSP / "labevents.csv.gz", LABEVENTS, file_row=True)
    load_table(con, "admissions", DEMO_HOSP / "admissions.csv.gz", ADMISSIONS)
    load_table(con, "patients", DEMO_HOSP / "patients.csv.gz", PATIENTS)
    rows, with_hadm, numeric, text_only, last_row = con.execute(
        "SELECT count(*), count(hadm_id), count(valuenum), "
        "count(*) FILTER (WHERE valuenum IS NULL AND value IS NOT NULL), max(file_row) "
        "FROM labevents"
    ).fetchall()[0]
    assert rows == 107_727 == last_row
    assert 0 < with_hadm < rows  # null hadm_id present (outpatient labs)
    assert 0 < text_only and numeric < rows
    assert con.execute("SELECT count(*), count(DISTINCT hadm_id) FROM admissions").fetchall()[
        0
    ] == (275, 275)
    assert con.execute("SELECT count(*), count(dod) FROM patients").fetchall()[0][0] == 100
    assert con.execute(
        "SELECT typeof(admittime), typeof(dod) FROM admissions, patients " "LIMIT 1"
    ).fetchall()[0] == ("TIMESTAMP", "DATE")


def test_columns_by_name_extra_columns_and_multiline_comments(con, tmp_path):
    header = ["extra_first", *reversed(LABEVENTS_HEADER), "extra_last"]
    row = dict.fromkeys(header, "")
    row.update(
        subject_id="10000001",
        itemid="51221",
        charttime="2180-01-01 00:00:00",
        valuenum="41.5",
        value="41.5",
        extra_first="x, y",
        comments='first line\nsecond "quoted" line, with comma\r\nthird',
    )
    path = tmp_path / "labevents.csv.gz"
    write_csv(path, header, [[row[c] for c in header], [row[c] for c in header]])
    register_table(con, "lab", path, LABEVENTS, file_row=True)
    got = con.execute("SELECT subject_id, itemid, valuenum, hadm_id, file_row FROM lab").fetchall()
    assert got == [(10000001, 51221, 41.5, None, 1), (10000001, 51221, 41.5, None, 2)]
    comments = con.execute(
        csv_select_sql(path, TableSpec(path.name, {"comments": "VARCHAR"}))
    ).fetchall()
    assert comments[0][0] == 'first line\nsecond "quoted" line, with comma\r\nthird'


def test_optional_column_absent_becomes_typed_null(con, tmp_path):
    path = write_csv(
        tmp_path / "admissions.csv.gz",
        ["hadm_id", "admittime", "subject_id"],
        [[20000001, "2180-01-01 10:00:00", 10000001]],
    )
    load_table(con, "adm", path, ADMISSIONS)
    assert con.execute("SELECT subject_id, dischtime, race FROM adm").fetchall() == [
        (10000001, None, None)
    ]


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(RecordError, match="labevents.csv.gz: file not found"):
        csv_select_sql(tmp_path / "labevents.csv.gz", LABEVENTS)


def test_missing_required_column_names_file_and_column(tmp_path):
    header = [c for c in LABEVENTS_HEADER if c != "valuenum"]
    path = write_csv(tmp_path / "labevents.csv.gz", header, [])
    with pytest.raises(
        RecordError, match=r"labevents.csv.gz: missing required column\(s\) valuenum"
    ):
        csv_select_sql(path, LABEVENTS)


def test_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "patients.csv"
    path.write_text("")
    with pytest.raises(RecordError, match="empty file"):
        read_header(path)


def test_bad_value_in_typed_column_names_the_file(con, tmp_path):
    path = write_csv(
        tmp_path / "admissions.csv.gz",
        ["subject_id", "hadm_id", "admittime"],
        [[10000001, 20000001, "yesterday"]],
    )
    with pytest.raises(RecordError, match="admissions.csv.gz: cannot parse as a MIMIC table"):
        load_table(con, "adm", path, ADMISSIONS)


def test_file_row_follows_file_order_under_parallel_scan(tmp_path):
    """``WITH ORDINALITY`` numbers rows in file order even when DuckDB scans with 4 threads."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    n = 1_500_000  # ~50 MB: several CSV buffers, so the scan really runs in parallel
    index = np.arange(n)
    table = pa.table(
        {
            "subject_id": index,
            "itemid": np.where(index % 3 == 0, 50000, 51221),
            "charttime": pa.array(["2180-01-01 00:00:00"] * n),
            "valuenum": index * 0.5,
        }
    )
    path = tmp_path / "big.csv"
    pa_csv.write_csv(table, path, pa_csv.WriteOptions(quoting_style="none"))
    connection = duckdb.connect()
    connection.execute("SET threads = 4")
    register_table(connection, "lab", path, LABEVENTS, file_row=True)
    mismatched, kept = connection.execute(
        "SELECT count(*) FILTER (WHERE file_row <> subject_id + 1), count(*) "
        "FROM lab WHERE itemid = 51221"
    ).fetchall()[0]
    assert (mismatched, kept) == (0, 1_000_000)
