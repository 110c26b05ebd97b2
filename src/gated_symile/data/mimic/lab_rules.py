"""The lab criterion of the Symile-MIMIC cohort rules (docs/data.md §4) as DuckDB SQL: per
admission, the earliest finite value of each of the 50 labs within [-24 h, +24 h] of admission.

The rest of the rules, and the tables this module reads (``adm``, ``sel_cxr``,
``ecg_candidates``, ``sel_ecg``), are :mod:`gated_symile.data.mimic.cohort_rules`'.
"""

from __future__ import annotations

from gated_symile.data.mimic.cohort_rules import LAB_HOURS, database_setting, time_then_file_order
from gated_symile.data.mimic.labs import LAB_ITEMIDS
from gated_symile.records.mimic_tables import number_blocks

__all__ = ["LAB_BLOCK_ADMISSIONS", "keep_labs_of_selected_ecg", "non_finite_lab_values", "select_labs"]

LAB_BLOCK_ADMISSIONS = 2048
"""Admissions whose lab cells are aggregated in one statement (:func:`select_labs`): 2,048 x 50
cells of aggregate state, a few MB, whatever the size of the release."""


_LAB_ADMISSIONS = """
    SELECT a.subject_id, a.hadm_id, a.admittime FROM adm a JOIN sel_cxr USING (hadm_id)
    WHERE a.hadm_id IN (SELECT hadm_id FROM ecg_candidates)
"""
"""Admissions whose labs are selected: with a selected CXR and an ECG candidate (known before the
QC: labevents is scanned meanwhile); :func:`keep_labs_of_selected_ecg` then drops those without ECG."""


def select_labs(con, labevents_sql: str) -> None:
    """Tables ``sel_labs`` (hadm_id + 50 labs) and ``sel_labs_non_finite`` (hadm_id, itemid,
    non_finite), built from ``lab_rows``, the lab rows inside an admission's window, which is
    dropped with the other working tables: nothing reads them later.

    ``labevents_sql`` selects ``subject_id, itemid, charttime, valuenum, file_row`` from the raw
    file (:func:`gated_symile.records.mimic_tables.csv_select_sql` with ``file_row``).  Rows are
    filtered to the 50 items with a non-null ``valuenum``, and only finite values are selected (a
    text-only result is never chosen); matching is by subject and time only (``hadm_id`` ignored).
    A non-finite ``valuenum`` (``inf``, ``-inf``, ``1e999``, ``NaN``) is treated like a missing
    one: never selected, but kept per cell in ``non_finite`` (file row and value, file order) for
    :func:`non_finite_lab_values`.

    Only :data:`_LAB_ADMISSIONS` are matched: labs are the last criterion, so no other admission's
    labs can change the cohort or an exclusion (in real MIMIC-IV ~11,000 of 431,000 get this far).

    Memory: the join must *build* its hash table on the admissions and *stream* the lab rows.
    DuckDB cannot estimate how many rows a csv.gz holds and, left alone, builds on the labs (RSS
    then grows with labevents), so the join-order optimizers are switched off for this statement
    and the join runs as written (``lab`` probes, ``adm`` builds).  The join only writes rows to
    ``lab_rows``; the earliest value per cell is then aggregated :data:`LAB_BLOCK_ADMISSIONS`
    admissions at a time.  Aggregated in the join, every (admission, lab) cell of the release
    held its state at once: at 20,000 admissions 58 MB of hash table, DuckDB's whole limit.
    """
    items = ", ".join(str(item) for item in LAB_ITEMIDS)
    blocks = number_blocks(con, "lab_blocks", _LAB_ADMISSIONS, "subject_id, hadm_id", LAB_BLOCK_ADMISSIONS)
    with database_setting(con, "disabled_optimizers", "join_order,build_side_probe_side"):
        con.execute(f"""
            CREATE OR REPLACE TABLE lab_rows AS
            WITH lab AS (
                SELECT subject_id, itemid, charttime, valuenum, file_row
                FROM ({labevents_sql})
                WHERE itemid IN ({items}) AND valuenum IS NOT NULL
            )
            SELECT a.block, a.hadm_id, l.itemid, {time_then_file_order("l.charttime", "l.file_row")} AS sort_key,
                   l.valuenum, l.file_row
            FROM lab l JOIN lab_blocks a
              ON l.subject_id = a.subject_id
             AND l.charttime >= a.admittime - INTERVAL {LAB_HOURS} HOUR
             AND l.charttime <= a.admittime + INTERVAL {LAB_HOURS} HOUR
            """)
    for block in range(max(blocks, 1)):  # block 0 even when empty: it gives the tables their columns
        con.execute(f"""
            CREATE OR REPLACE TABLE sel_labs_long AS
            SELECT hadm_id, itemid,
                   arg_min(valuenum, sort_key) FILTER (WHERE isfinite(valuenum)) AS valuenum,
                   list({{'file_row': file_row, 'value': valuenum}} ORDER BY file_row)
                       FILTER (WHERE NOT isfinite(valuenum)) AS non_finite
            FROM lab_rows WHERE block = {block}
            GROUP BY hadm_id, itemid
            """)
        # one row per (hadm_id, itemid) cell, so max() just moves the value into its column
        create = "CREATE OR REPLACE TABLE {} AS" if block == 0 else "INSERT INTO {} BY NAME"
        con.execute(f"""
            {create.format("sel_labs")}
            PIVOT (SELECT hadm_id, itemid, valuenum FROM sel_labs_long)
            ON itemid IN ({items}) USING max(valuenum) GROUP BY hadm_id;

            {create.format("sel_labs_non_finite")}
            SELECT hadm_id, itemid, non_finite FROM sel_labs_long WHERE non_finite IS NOT NULL;
            """)
    con.execute("DROP TABLE sel_labs_long; DROP TABLE lab_rows; DROP TABLE lab_blocks")


def keep_labs_of_selected_ecg(con) -> None:
    """Drop the labs of admissions whose every ECG candidate failed QC: they never reach the labs."""
    for table in ("sel_labs", "sel_labs_non_finite"):
        con.execute(f"DELETE FROM {table} WHERE hadm_id NOT IN (SELECT hadm_id FROM sel_ecg)")


def non_finite_lab_values(con) -> list[tuple[int, int, int, int, float]]:
    """``(file_row, subject_id, hadm_id, itemid, value)`` of every non-finite lab value that fell in
    an admission's window (after :func:`select_labs`), sorted; each was treated as missing."""
    return con.execute("""
        SELECT v.file_row, a.subject_id, s.hadm_id, s.itemid, v.value
        FROM (SELECT hadm_id, itemid, unnest(non_finite) AS v FROM sel_labs_non_finite) s
        JOIN adm a USING (hadm_id)
        ORDER BY v.file_row, s.hadm_id
        """).fetchall()
