"""Paths and header names reach DuckDB as quoted literals: quotes, spaces and non-ASCII are data."""

from __future__ import annotations

import duckdb
import numpy as np

from gated_symile.data.mimic.cohort import open_duckdb
from gated_symile.records.mimic_tables import PATIENTS, load_table
from gated_symile.records.ukb_tables import pivot_olink
from tests.mimic_raw_fixtures import write_csv

AWKWARD = 'it\'s a "dir" with spaces, ümlauts; DROP TABLE x; --'


def test_duckdb_temp_folder_with_quotes(tmp_path):
    temp = tmp_path / AWKWARD
    temp.mkdir()
    con = open_duckdb(1, "1GB", temp)
    try:
        setting = con.execute("SELECT current_setting('temp_directory')").fetchone()[0]
        assert setting == temp.as_posix()
    finally:
        con.close()


def test_olink_table_with_a_quote_in_its_path_and_header(tmp_path):
    folder = tmp_path / AWKWARD
    folder.mkdir()
    path = folder / "olink_data.txt"
    path.write_text(
        "eid\tins_index\tprotein_id\tresult\tit's notes\n"
        "1\t0\t7\t0.5\tx\n2\t0\t7\t-1.25\ty\n1\t0\t9\t2\tz\n"
    )
    wide = pivot_olink(path, 0)
    assert wide.eids.tolist() == [1, 2] and wide.protein_ids.tolist() == [7, 9]
    np.testing.assert_array_equal(wide.values, [[0.5, 2.0], [-1.25, np.nan]])


def test_mimic_table_in_a_folder_with_quotes(tmp_path):
    path = write_csv(
        tmp_path / AWKWARD / "patients.csv.gz",
        ["subject_id", "gender", "anchor_age", "anchor_year", "dod"],
        [[1, "F", 50, 2180, None]],
    )
    con = duckdb.connect()
    load_table(con, "patients", path, PATIENTS)
    assert con.execute("SELECT subject_id, anchor_age FROM patients").fetchall() == [(1, 50)]
