"""The Symile-MIMIC cohort rules (docs/data.md §4) as DuckDB SQL over the raw tables.

Why SQL: every rule is a windowed join of a small table (admissions) with a large one (labevents,
~120 M rows); DuckDB streams the large side through a hash join whose build side is the admissions,
so memory does not grow with labevents.  The lab criterion is :mod:`gated_symile.data.mimic.lab_rules`.

Inputs (views/tables on the connection, created by the readers):

- ``admissions``, ``patients`` (:mod:`gated_symile.records.mimic_tables`);
- ``cxr_meta`` (:data:`gated_symile.data.mimic.cxr_index.CXR_META_COLUMNS`), ``chexpert`` (+ ``file_row``);
- ``ecg_list`` (``record_list.csv`` + ``file_row``), ``ecg_candidates`` (:func:`build_ecg_candidates`),
  ``ecg_rejected(file_row, reason, problem)`` from ECG QC of the candidates the rule consumed;
- ``cxr_absent(file_row)``: images whose file is missing; ``cxr_unreadable(file_row, subject_id,
  study_id, problem)``: DICOM-release images left out of ``cxr_meta`` (missing or unreadable file,
  :func:`gated_symile.data.mimic.cxr_index.register_cxr_tables`).

Determinism: every "earliest" orders by (event time, ``file_row``), so ties go to the first row in
file order, whatever the number of threads.  All windows are anchored on ``admittime``:
CXR ``24 h < Δ <= 72 h``, ECG and labs ``-24 h <= Δ <= +24 h``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from itertools import chain

from gated_symile.data.mimic.cxr_index import CXR_MISSING
from gated_symile.data.mimic.labs import LAB_ITEMIDS, lab_column
from gated_symile.records.mimic_tables import CHEXPERT_LABELS, number_blocks, sql_name

__all__ = [
    "ADMISSION_COLUMNS",
    "CRITERIA",
    "CXR_TIME_UNPARSEABLE",
    "VIEW_POSITIONS",
    "attrition_counts",
    "build_admissions",
    "build_cxr_index",
    "build_ecg_candidates",
    "cohort_batches",
    "cohort_patients",
    "cxr_window_candidates",
    "database_setting",
    "decide_admissions",
    "exclusions_select_sql",
    "select_cxr",
    "select_ecg",
    "time_then_file_order",
    "unparseable_cxr_images",
]

VIEW_POSITIONS: tuple[str, ...] = ("AP", "PA")
CXR_AFTER_HOURS = 24  # open bound: Δ > 24 h
CXR_UNTIL_HOURS = 72  # closed bound: Δ <= 72 h
ECG_HOURS = 24  # closed: -24 h <= Δ <= 24 h
LAB_HOURS = 24  # closed: -24 h <= Δ <= 24 h
CXR_TIME_UNPARSEABLE = "StudyDate/StudyTime not parseable"


def time_then_file_order(time: str, file_row: str) -> str:
    """SQL for one sort key of a row: its event ``time``, then file order (``file_row < 2**40``).

    Why a key and not ``row_number()`` or a window: "earliest per admission" then is ``arg_min`` /
    ``min``, aggregates that spill to disk, where a window over the whole join held its partitions
    in memory (at 431,000 admissions more than a 40 MB limit).  One HUGEINT also compares about
    twice as fast as the equivalent struct ``(time, file_row)``."""
    return f"epoch_us({time})::HUGEINT * 1099511627776 + {file_row}"


STREAM_ROWS = 1024
"""Rows per Arrow batch of a cohort block (:func:`cohort_batches`): DuckDB streams the sorted
block to the writer instead of handing over its ~230 columns as one Arrow table."""

ADMISSION_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "hadm_id",
    "admittime",
    "dischtime",
    "deathtime",
    "admission_type",
    "admission_location",
    "discharge_location",
    "race",
    "hospital_expire_flag",
    "gender",
    "anchor_age",
    "anchor_year",
    "dod",
    "admittime_year",
    "age",
)

CRITERIA: tuple[tuple[str, str], ...] = (
    ("all admissions", "admissions"),
    ("with AP/PA CXR in (24 h, 72 h]", "cxr_select"),
    ("with CheXpert labels", "chexpert"),
    ("with valid ECG in [-24 h, +24 h]", "ecg_select"),
    ("with labs in [-24 h, +24 h]", "labs_select"),
    ("final cohort", "final"),
)
"""Attrition rows: (criterion, stage name used in the exclusions table)."""


@contextmanager
def database_setting(con, name: str, value: str | int) -> Iterator[None]:
    """Run the statements inside with the DuckDB setting ``name`` at ``value``, then restore the
    value it had (also after an error).  Only between statements: a setting is the database's, not
    the connection's, so never while another statement runs unless it may run under the new value."""
    before = con.execute(f"SELECT current_setting('{name}')").fetchall()[0][0]
    con.execute(f"SET {name} = ?", [value])
    try:
        yield
    except BaseException:  # restored after an interrupt too, as before the fatal case was handled
        with suppress(Exception):  # a fatal error leaves no database to restore: report the first
            con.execute(f"SET {name} = ?", [before])
        raise
    con.execute(f"SET {name} = ?", [before])


def one_thread(con) -> AbstractContextManager[None]:
    """Run the statements inside on one DuckDB thread (:func:`database_setting`).

    Why: each DuckDB thread builds its own hash-table partitions, and the joins of the stage's
    release-sized tables (under a second each with all 431,231 admissions of MIMIC-IV) failed
    under a 40-48 MB limit with two threads but ran in it with one, so the stage's limit need not
    grow with its threads for them.  The labevents scan, which keeps every thread, starts after
    these joins.
    """
    return database_setting(con, "threads", 1)


def _views_sql() -> str:
    return ", ".join(f"'{view}'" for view in VIEW_POSITIONS)


def build_admissions(con) -> dict[str, int]:
    """Table ``adm``: admissions left-joined to patients with ``admittime_year`` and ``age`` (the
    two tables are then dropped: ``adm`` holds all of them, and they held DuckDB memory).

    Returns ``{"duplicate_hadm_id": n, "duplicate_subject_id": n}`` so the caller can refuse
    tables where a join would multiply rows.
    """
    with one_thread(con):
        con.execute("""
            CREATE OR REPLACE TABLE adm AS
            SELECT a.subject_id, a.hadm_id, a.admittime, a.dischtime, a.deathtime, a.admission_type,
                   a.admission_location, a.discharge_location, a.race, a.hospital_expire_flag,
                   p.gender, p.anchor_age, p.anchor_year, p.dod,
                   year(a.admittime) AS admittime_year,
                   p.anchor_age + year(a.admittime) - p.anchor_year AS age
            FROM admissions a LEFT JOIN patients p USING (subject_id)
            """)
    dup_hadm = con.execute("SELECT count(*) - count(DISTINCT hadm_id) FROM adm").fetchall()[0][0]
    dup_subject = con.execute("SELECT count(*) - count(DISTINCT subject_id) FROM patients").fetchall()[0][0]
    con.execute("DROP TABLE admissions; DROP TABLE patients")  # all in adm
    return {"duplicate_hadm_id": int(dup_hadm), "duplicate_subject_id": int(dup_subject)}


def build_cxr_index(con) -> None:
    """Table ``cxr_index``: ``cxr_meta`` with ``StudyDateTime``.

    ``StudyDateTime`` = ``StudyDate`` + the zero-padded 6-digit integer part of ``StudyTime``
    (fractional seconds truncated); NULL when unparseable.
    """
    con.execute("""
        CREATE OR REPLACE TABLE cxr_index AS
        SELECT *, try_strptime(
                   trim(StudyDate) || ' ' || lpad(split_part(trim(StudyTime), '.', 1), 6, '0'),
                   '%Y%m%d %H%M%S') AS StudyDateTime
        FROM cxr_meta
        """)


def unparseable_cxr_images(con) -> list[tuple[str, int]]:
    """``(cxr_path, subject_id)`` of AP/PA images whose StudyDate/StudyTime cannot be parsed."""
    return con.execute(
        "SELECT cxr_path, subject_id FROM cxr_index WHERE StudyDateTime IS NULL "
        f"AND ViewPosition IN ({_views_sql()}) ORDER BY file_row"
    ).fetchall()


def _cxr_in_window_sql(extra_filter: str = "") -> str:
    return f"""
        SELECT a.hadm_id, c.*
        FROM adm a JOIN cxr_index c ON c.subject_id = a.subject_id
        WHERE c.ViewPosition IN ({_views_sql()})
          AND c.StudyDateTime > a.admittime + INTERVAL {CXR_AFTER_HOURS} HOUR
          AND c.StudyDateTime <= a.admittime + INTERVAL {CXR_UNTIL_HOURS} HOUR
          {extra_filter}
    """


def cxr_window_candidates(con):
    """``(file_row, subject_id, dicom_id, cxr_path)`` of AP/PA images inside some admission's window.

    Only these can be selected, so only their files need an existence check.  Returns the
    pending DuckDB result: the caller fetches it a block at a time (tens of thousands of rows at
    scale) and runs no other query on ``con`` meanwhile.
    """
    return con.execute(
        f"SELECT DISTINCT file_row, subject_id, dicom_id, cxr_path FROM ({_cxr_in_window_sql()}) "
        "ORDER BY file_row"
    )


def select_cxr(con) -> None:
    """Table ``sel_cxr``: per admission the earliest present AP/PA image in (24 h, 72 h]."""
    present = "AND c.file_row NOT IN (SELECT file_row FROM cxr_absent)"
    with one_thread(con):
        con.execute(f"""
        CREATE OR REPLACE TABLE sel_cxr AS
        WITH earliest AS (
            SELECT hadm_id, arg_min(file_row, {time_then_file_order("StudyDateTime", "file_row")}) AS file_row
            FROM ({_cxr_in_window_sql(present)})
            GROUP BY hadm_id
        )
        SELECT e.hadm_id, c.dicom_id AS cxr_dicom_id, c.study_id AS cxr_study_id,
               c.ViewPosition AS cxr_ViewPosition,
               c.ViewCodeSequence_CodeMeaning AS cxr_ViewCodeSequence_CodeMeaning,
               c.StudyDateTime AS cxr_StudyDateTime, c.cxr_path
        FROM earliest e JOIN cxr_index c USING (file_row)
        """)  # fmt: skip


def build_ecg_candidates(con) -> None:
    """Table ``ecg_candidates``: every listed ECG inside the [-24 h, +24 h] window of an admission
    with a selected CXR (``sel_cxr``), with its ``sort_key`` in the order the rule consumes them
    (``ecg_time``, then file order: :func:`time_then_file_order`).

    Only these records can be chosen, so only they need QC; records outside every window are never
    opened (:mod:`gated_symile.data.mimic.ecg_candidates`). The CXR criterion comes before the ECG
    criterion, so an admission without a CXR is excluded whatever its ECGs: opening them could
    change neither the cohort nor an exclusion reason (in real MIMIC-IV most admissions have no
    radiograph in their window).
    """
    with one_thread(con):
        con.execute(
            f"""
            CREATE OR REPLACE TABLE ecg_candidates AS
            SELECT a.hadm_id, e.file_row, e.subject_id, e.path,
                   {time_then_file_order("e.ecg_time", "e.file_row")} AS sort_key
            FROM adm a JOIN sel_cxr USING (hadm_id) JOIN ecg_list e ON e.subject_id = a.subject_id
            WHERE e.ecg_time >= a.admittime - to_hours(CAST($hours AS BIGINT))
              AND e.ecg_time <= a.admittime + to_hours(CAST($hours AS BIGINT))
            """,
            {"hours": ECG_HOURS},
        )


def select_ecg(con) -> None:
    """Table ``sel_ecg``: per admission the earliest QC-passed ECG in [-24 h, +24 h].

    Needs ``ecg_candidates`` and ``ecg_rejected``: the first candidate not rejected.  Candidates
    after it were never opened and are not in ``ecg_rejected``; they cannot matter.
    """
    con.execute("""
        CREATE OR REPLACE TABLE sel_ecg AS
        WITH earliest AS (
            SELECT hadm_id, arg_min(file_row, sort_key) AS file_row
            FROM ecg_candidates
            WHERE file_row NOT IN (SELECT file_row FROM ecg_rejected)
            GROUP BY hadm_id
        )
        SELECT c.hadm_id, e.study_id AS ecg_study_id, e.file_name AS ecg_file_name,
               e.ecg_time, e.path AS ecg_path
        FROM earliest c JOIN ecg_list e USING (file_row)
        """)


def decide_admissions(con) -> None:
    """Table ``adm_status``: every admission with the first criterion it fails (NULL = kept).

    The CheXpert join is on the *chosen* study only: no CheXpert row drops the admission, with no
    fallback to the admission's next image (as in the reference).  An admission without a CXR
    (ECG) whose window held images (records) that could not be used is excluded as
    ``no usable AP/PA CXR ...: <problems>`` (``no valid ECG ...: <problems>``), the distinct kinds
    of problem in the order the rule met them (:func:`_unusable_cxr_problems`,
    :func:`_rejected_ecg_problems`).

    Memory: each fact about the admissions (selected CXR, its CheXpert row, ECG, labs, problems)
    is added by its own join, one statement each, so one hash table at a time is built and may
    spill; the six joins in one statement needed all six resident (the 431,276 admissions of a
    full-scale tables-only release failed under the default of the time, 96 MB).
    """
    _unusable_cxr_problems(con)
    _rejected_ecg_problems(con)
    lab_any = " OR ".join(f"l.{sql_name(lab_column(i))} IS NOT NULL" for i in LAB_ITEMIDS)
    with one_thread(con):
        con.execute("""
            CREATE OR REPLACE TABLE chexpert_first AS
            SELECT * EXCLUDE (file_row) FROM chexpert
            WHERE file_row IN (SELECT min(file_row) FROM chexpert GROUP BY study_id)
            """)
    facts = (  # (columns added, relation joined, join condition)
        ("c.cxr_study_id, c.hadm_id IS NOT NULL AS has_cxr", "sel_cxr c", "c.hadm_id = f.hadm_id"),
        ("x.study_id IS NOT NULL AS has_chexpert", "(SELECT study_id FROM chexpert_first) x", "x.study_id = f.cxr_study_id"),
        ("e.hadm_id IS NOT NULL AS has_ecg", "(SELECT hadm_id FROM sel_ecg) e", "e.hadm_id = f.hadm_id"),
        ("l.hadm_id IS NOT NULL AS has_lab", f"(SELECT hadm_id FROM sel_labs l WHERE {lab_any}) l", "l.hadm_id = f.hadm_id"),
        ("uc.problems AS cxr_problems", "cxr_unusable_problems uc", "uc.hadm_id = f.hadm_id"),
        ("ue.problems AS ecg_problems", "ecg_rejected_problems ue", "ue.hadm_id = f.hadm_id"),
    )  # fmt: skip
    con.execute("CREATE OR REPLACE TABLE adm_facts AS SELECT subject_id, hadm_id, admittime FROM adm")
    for columns, relation, condition in facts:
        con.execute(f"""
            CREATE OR REPLACE TABLE adm_facts AS
            SELECT f.*, {columns} FROM adm_facts f LEFT JOIN {relation} ON {condition}
            """)
    no_cxr = f"AP/PA CXR within ({CXR_AFTER_HOURS} h, {CXR_UNTIL_HOURS} h]"
    no_ecg = f"valid ECG within [-{ECG_HOURS} h, +{ECG_HOURS} h]"
    con.execute(f"""
        CREATE OR REPLACE TABLE adm_status AS
        SELECT subject_id, hadm_id,
            CASE
              WHEN admittime IS NULL THEN 'admittime missing'
              WHEN NOT has_cxr AND cxr_problems IS NOT NULL THEN 'no usable {no_cxr}: ' || cxr_problems
              WHEN NOT has_cxr THEN 'no {no_cxr}'
              WHEN NOT has_chexpert THEN 'CheXpert row missing for study ' || cxr_study_id
              WHEN NOT has_ecg AND ecg_problems IS NOT NULL THEN 'no {no_ecg}: ' || ecg_problems
              WHEN NOT has_ecg THEN 'no {no_ecg}'
              WHEN NOT has_lab THEN 'no lab value within [-{LAB_HOURS} h, +{LAB_HOURS} h]'
            END AS reason,
            CASE
              WHEN admittime IS NULL THEN 'admissions'
              WHEN NOT has_cxr THEN 'cxr_select'
              WHEN NOT has_chexpert THEN 'chexpert'
              WHEN NOT has_ecg THEN 'ecg_select'
              WHEN NOT has_lab THEN 'labs_select'
            END AS stage
        FROM adm_facts;

        DROP TABLE adm_facts
        """)


def _unusable_cxr_problems(con) -> None:
    """Table ``cxr_unusable_problems(hadm_id, problems)``: per admission, the problems of the images
    that could have been its CXR but were not usable, distinct, in file order.

    Such an image is an AP/PA image in the window whose file is missing (JPG release), an AP/PA
    image whose study time cannot be parsed, or a DICOM file that is missing or unreadable, whose
    view is unknown and whose time is its study's: StudyDate/StudyTime belong to the study, so a
    readable image of the same study gives it; with none, the image could lie in any window.
    """
    con.execute(
        f"""
        CREATE OR REPLACE TABLE cxr_unusable AS
        SELECT subject_id, file_row, StudyDateTime, $missing AS problem FROM cxr_index
        WHERE file_row IN (SELECT file_row FROM cxr_absent)
        UNION ALL
        SELECT subject_id, file_row, NULL, $unparseable FROM cxr_index
        WHERE StudyDateTime IS NULL AND ViewPosition IN ({_views_sql()})
        UNION ALL
        SELECT u.subject_id, u.file_row, s.StudyDateTime, u.problem FROM cxr_unreadable u
        LEFT JOIN (SELECT study_id, min(StudyDateTime) AS StudyDateTime FROM cxr_index
                   GROUP BY study_id) s USING (study_id)
        """,
        {"missing": CXR_MISSING, "unparseable": CXR_TIME_UNPARSEABLE},
    )
    con.execute(f"""
        CREATE OR REPLACE TABLE cxr_unusable_problems AS
        SELECT hadm_id, string_agg(problem, '; ' ORDER BY first_row) AS problems
        FROM (
            SELECT a.hadm_id, u.problem, min(u.file_row) AS first_row
            FROM adm a JOIN cxr_unusable u ON u.subject_id = a.subject_id
            WHERE u.StudyDateTime IS NULL
               OR (u.StudyDateTime > a.admittime + INTERVAL {CXR_AFTER_HOURS} HOUR
                   AND u.StudyDateTime <= a.admittime + INTERVAL {CXR_UNTIL_HOURS} HOUR)
            GROUP BY a.hadm_id, u.problem
        )
        GROUP BY hadm_id
        """)


def _rejected_ecg_problems(con) -> None:
    """Table ``ecg_rejected_problems(hadm_id, problems)``: per admission, the kinds of problem of
    its rejected ECG candidates, distinct, in the order the rule checked them."""
    con.execute("""
        CREATE OR REPLACE TABLE ecg_rejected_problems AS
        SELECT hadm_id, string_agg(problem, '; ' ORDER BY first_key) AS problems
        FROM (
            SELECT c.hadm_id, r.problem, min(c.sort_key) AS first_key
            FROM ecg_candidates c JOIN ecg_rejected r USING (file_row)
            GROUP BY c.hadm_id, r.problem
        )
        GROUP BY hadm_id
        """)


_KEPT_ADMISSIONS = "adm_status WHERE reason IS NULL"  # the cohort, once decide_admissions ran


def cohort_patients(con) -> int:
    """Distinct subjects of the cohort (reading them back from its file held 8 MB more at peak)."""
    return con.sql(f"SELECT count(DISTINCT subject_id) FROM {_KEPT_ADMISSIONS}").fetchall()[0][0]


def cohort_batches(con, rows_per_block: int):
    """The cohort as a ``pyarrow.RecordBatchReader``: one row per kept admission, sorted by
    (subject_id, hadm_id), selected a block of ``rows_per_block`` admissions at a time.

    Why blocks: the cohort row is about 230 columns wide, and selecting the whole cohort at once
    made DuckDB hold every joined row for the final sort (at 68,000 admissions more than the
    default limit of the time, 96 MB, and memory that grew with the cohort); a block's select
    joins and sorts only its own rows, and the blocks in order are the sorted cohort. An empty
    cohort is the empty select of block 0, which still gives the schema.

    Why a block is joined in three statements (:func:`_join_block_parts`, then its labs): each
    hash join of a statement holds its own hash table and partitions, about 8 MB however few rows
    it builds on; the five joins of one select needed ~44 MB even for a 642-row cohort, the floor
    of the stage's memory limit.
    """
    import pyarrow as pa

    blocks = number_blocks(
        con,
        "cohort_blocks",
        f"SELECT subject_id, hadm_id FROM {_KEPT_ADMISSIONS}",
        "subject_id, hadm_id",
        rows_per_block,
    )
    select = _cohort_block_sql()

    def block_rows(block: int):  # called once the previous block's rows are all read
        _join_block_parts(con, block)
        return con.sql(select).to_arrow_reader(STREAM_ROWS)

    first = block_rows(0)
    rest = (batch for block in range(1, blocks) for batch in block_rows(block))
    return pa.RecordBatchReader.from_batches(first.schema, chain(first, rest))


def _join_block_parts(con, block: int) -> None:
    """Table ``cohort_block``: the admissions of cohort block ``block`` with their admission, CXR,
    CheXpert and ECG columns (the cohort row's columns before the labs, in order), joined two
    tables a statement (see :func:`cohort_batches`).  Temporary tables: not written to the
    database file (regular ones made the assembly of 72 blocks a third slower)."""
    adm_cols = ", ".join(f"a.{name}" for name in ADMISSION_COLUMNS)
    labels = ", ".join(f"x.{sql_name(label)}" for label in CHEXPERT_LABELS)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE cohort_block_cxr AS
        SELECT {adm_cols},
               c.cxr_dicom_id, c.cxr_study_id, c.cxr_ViewPosition,
               c.cxr_ViewCodeSequence_CodeMeaning, c.cxr_StudyDateTime, c.cxr_path
        FROM cohort_blocks k
        JOIN adm a ON a.hadm_id = k.hadm_id
        JOIN sel_cxr c ON c.hadm_id = k.hadm_id
        WHERE k.block = {int(block)}
        """)  # fmt: skip
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE cohort_block AS
        SELECT p.*, {labels}, e.ecg_study_id, e.ecg_file_name, e.ecg_time, e.ecg_path
        FROM cohort_block_cxr p
        JOIN chexpert_first x ON x.study_id = p.cxr_study_id
        JOIN sel_ecg e ON e.hadm_id = p.hadm_id
        """)  # fmt: skip


def _cohort_block_sql() -> str:
    """The cohort rows of table ``cohort_block`` with their labs, sorted by (subject_id, hadm_id).

    Lab columns are float64 with NaN (not NULL) for a lab without a value in the window.
    """
    labs = ", ".join(
        f"coalesce(l.{sql_name(c)}, 'NaN'::DOUBLE) AS {sql_name(c)}"
        for c in (lab_column(i) for i in LAB_ITEMIDS)
    )
    return f"""
        SELECT p.*, {labs}
        FROM cohort_block p
        JOIN sel_labs l ON l.hadm_id = p.hadm_id
        ORDER BY p.subject_id, p.hadm_id
    """


def exclusions_select_sql() -> str:
    """Dropped admissions in the exclusions-table layout, sorted by (subject_id, hadm_id)."""
    return """
        SELECT 'admission' AS level, CAST(hadm_id AS VARCHAR) AS id, subject_id, hadm_id,
               reason, stage
        FROM adm_status WHERE reason IS NOT NULL
        ORDER BY subject_id, hadm_id
    """


def attrition_counts(con) -> list[tuple[str, int]]:
    """Admissions remaining after each criterion of :data:`CRITERIA` (cumulative)."""
    total = con.execute("SELECT count(*) FROM adm_status").fetchall()[0][0]
    dropped = dict(
        con.execute(
            "SELECT stage, count(*) FROM adm_status WHERE reason IS NOT NULL GROUP BY stage"
        ).fetchall()
    )
    remaining = total - dropped.get("admissions", 0)
    rows = [(CRITERIA[0][0], int(total))]
    for criterion, stage in CRITERIA[1:-1]:
        remaining -= dropped.get(stage, 0)
        rows.append((criterion, int(remaining)))
    rows.append((CRITERIA[-1][0], int(remaining)))
    return rows
