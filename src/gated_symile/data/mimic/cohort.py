"""Build the Symile-MIMIC cohort from the three raw releases (docs/data.md §4): the ``cohort mimic`` stage.

Order of work: load the small tables (admissions, patients, record list, CXR index, CheXpert) into
DuckDB; select each admission's ECG candidates by time and QC them in the rule's order, stopping
at the first valid one (:mod:`gated_symile.data.mimic.ecg_candidates`: records outside every window are
never opened), while labevents is streamed (never loaded) on a connection of its own; index the
radiographs and check that candidate image files exist; run the SQL rules of
:mod:`gated_symile.data.mimic.cohort_rules`; write the cohort, the exclusions, the attrition (with
notes on what was opened) and a summary.

Outputs are byte-deterministic for the same inputs: rows are sorted, ties are broken by file order,
and parquet is written in row groups of a fixed size with fixed settings.  ``workers`` and DuckDB
threads change speed only.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Literal

from gated_symile.errors import ConfigError, GatedSymileError, RecordError
from gated_symile.data.mimic import cohort_rules as rules
from gated_symile.data.mimic import lab_rules
from gated_symile.data.mimic.attrition import write_attrition
from gated_symile.data.mimic.cxr_index import (
    CXR_MISSING,
    CxrRelease,
    detect_cxr_release,
    file_presence,
    register_cxr_tables,
)
from gated_symile.data.mimic.ecg_candidates import EcgScan, scan_ecg_candidates
from gated_symile.data.mimic.parallel import RecordPool
from gated_symile.provenance.hashing import file_sha256
from gated_symile.provenance.read_set import active, opened_file
from gated_symile.outputs import ROWS_PER_GROUP, staged_folder, write_parquet_groups
from gated_symile.schemas import check_section
from gated_symile.records.mimic_tables import (
    ADMISSIONS,
    ECG_RECORD_LIST,
    LABEVENTS,
    PATIENTS,
    csv_select_sql,
    duckdb_message,
    duckdb_out_of_memory,
    duckdb_resource_error,
    load_table,
    reading,
    store_arrow,
)

__all__ = ["MimicCohortConfig", "build_mimic_cohort", "open_duckdb"]

@dataclass(frozen=True)
class MimicCohortConfig:
    """Inputs and resources of one cohort build.

    ``mimic_iv`` holds ``hosp/``; ``ecg`` holds ``record_list.csv`` and ``files/``; ``cxr`` is the
    root of the MIMIC-CXR-JPG or the DICOM release; ``chexpert`` overrides the labels file.
    """

    mimic_iv: Path
    ecg: Path
    cxr: Path
    out: Path
    chexpert: Path | None = None
    workers: int = 1
    qc_rule: Literal["symile", "strict"] = "symile"
    duckdb_threads: int = 2
    memory_limit: str | None = None  # None: default_memory_limit(duckdb_threads, admissions)

    def __post_init__(self) -> None:
        check_section(asdict(self), "mimic.cohort")  # memory_limit: where DuckDB opens


MEMORY_PER_THREAD_MIB = 12
MEMORY_MIN_THREADS = 2
MEMORY_PER_ADMISSION_BYTES = 96
"""DuckDB's memory limit when none is given: ``MEMORY_PER_THREAD_MIB`` per DuckDB thread, counted
as at least ``MEMORY_MIN_THREADS``, and ``MEMORY_PER_ADMISSION_BYTES`` per admission of the
release (25 MiB for 1,000 admissions on one or two threads, 29 MiB for 50,000, 64 MiB for
MIMIC-IV's 431,231).  Everything larger spills to the database file, and a larger limit only lets
DuckDB keep more of the release resident, which it then does: the stage's peak memory follows its
limit.  Why two threads' share at least: the cohort block's joins hold about 8 MB each however few
rows they build on, so every release needs more than 20 MiB on one thread as on two (the
1,000-admission one fails under 20 MiB).  Why it grows with the admissions: the hash tables of the
joins of release-sized tables (admissions with the ECG listing, the CXR index, the lab rows) must
be held whole; a limit sized for the largest release made every smaller one fill it (50,000
admissions peaked at 264-267 MB under a fixed 64 MB, 235-239 MB under 36 MiB, 228-232 MB under
29 MiB).  The full-size release fails under 51 MiB on two threads (the ECG candidates' join) and
gets at least the limit it ran under before on 1, 2, 4 and 16 threads (docs/data.md §4)."""


def default_memory_limit(threads: int, admissions: int = 0) -> str:
    """The limit DuckDB gets when the user gives none, for a release of ``admissions`` admissions
    (see :data:`MEMORY_PER_ADMISSION_BYTES`); whole MiB, rounded up."""
    release_mib = -(-MEMORY_PER_ADMISSION_BYTES * admissions // 2**20)
    return f"{MEMORY_PER_THREAD_MIB * max(MEMORY_MIN_THREADS, int(threads)) + release_mib}MiB"


def fit_memory_limit_to_release(con, threads: int) -> None:
    """Raise DuckDB's limit from the one it opened with to the default for the release's size,
    once the ``admissions`` table is loaded (loading the small tables needs no more)."""
    con.execute("SET memory_limit = ?", [default_memory_limit(threads, _count(con, "admissions"))])


_MEMORY_LIMIT = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


def _progress(start: float, message: str) -> None:
    """One line per step on stderr (the Snakemake rule log)."""
    print(f"[cohort {time.perf_counter() - start:7.1f} s] {message}", file=sys.stderr, flush=True)


def open_duckdb(threads: int, memory_limit: str | None, temp_dir: str | Path):
    """A DuckDB connection with explicit resources, its database a file in ``temp_dir``.

    Why a file and not ``:memory:``: the stage's tables (admissions, the ECG listing, the CXR
    index; at real scale 431 k, 800 k and 377 k rows) then live in evictable blocks, so
    ``memory_limit`` bounds the stage's memory; an in-memory database kept every table resident
    until the connection closed, and the stage's peak RSS grew with the release.
    """
    import duckdb

    if memory_limit is None:
        memory_limit = default_memory_limit(threads)
    if not _MEMORY_LIMIT.match(str(memory_limit).strip()):
        raise ConfigError(f"memory limit must look like '2GB' or '500MiB', got {memory_limit!r}")
    con = duckdb.connect(str(Path(temp_dir) / "cohort.duckdb"))
    con.execute("SET threads = ?", [int(threads)])
    con.execute("SET memory_limit = ?", [str(memory_limit).strip()])
    con.execute("SET temp_directory = ?", [Path(temp_dir).as_posix()])
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET enable_progress_bar = false")
    return con


def build_mimic_cohort(config: MimicCohortConfig) -> dict:
    """Run the whole stage; returns the summary also written to ``summary.json``.

    The folder is built beside ``config.out`` and moved there when complete (``gated_symile.outputs``).
    """
    with staged_folder(config.out, markers=["summary.json"], what="cohort folder") as work:
        return _build_mimic_cohort(config, work)


def _build_mimic_cohort(config: MimicCohortConfig, out: Path) -> dict:
    files, release = _input_files(config)
    labevents_sql = csv_select_sql(files["labevents"], LABEVENTS, file_row=True)  # checks header

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".duckdb-", dir=out) as temp_dir, _duckdb_resources(config):
        con = open_duckdb(config.duckdb_threads, config.memory_limit, temp_dir)
        try:
            _load_admissions(con, files, config)
            _progress(start, f"admissions loaded; indexing the {release.kind.upper()} CXR release")
            with RecordPool(config.workers) as pool:
                quarantine, images_opened = _cxr_images(con, release, pool)
                rules.select_cxr(con)
                rules.build_ecg_candidates(con)
                _progress(start, "CXR selected; ECG QC of the candidates in the rule's order, labevents streamed meanwhile")
                with _labs_meanwhile(con, files["labevents"], labevents_sql):
                    ecg_quarantine, scan = _ecg_quality_control(con, config, pool)
                    _progress(
                        start,
                        f"ECG QC done: {scan.opened} of {scan.listed} listed records opened in "
                        f"{scan.rounds} rounds; waiting for the labevents scan",
                    )
            quarantine += ecg_quarantine
            rules.select_ecg(con)
            lab_rules.keep_labs_of_selected_ecg(con)
            quarantine += _non_finite_labs(con, files["labevents"].name)
            _progress(start, "labevents streamed; ECG selected; deciding and writing the outputs")
            rules.decide_admissions(con)
            opened = {"ecg_records": scan.opened, f"cxr_{release.kind}_files": images_opened}
            summary = _write_outputs(con, out, quarantine, _attrition_notes(scan, release.kind, images_opened))
            summary["records_opened"] = opened
            summary["ecg_records_listed"] = scan.listed
            summary["ecg_candidates"] = scan.candidates
            summary["ecg_qc_rounds"] = scan.rounds
            _progress(start, f"cohort of {summary['cohort']} admissions written")
        finally:
            con.close()
    summary["inputs"] = {name: _table_input(path) for name, path in files.items()}
    summary["parameters"] = _parameters(config, release.kind)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


@contextmanager
def _duckdb_resources(config: MimicCohortConfig) -> Iterator[None]:
    """DuckDB running out of its memory limit or of disk for its database file ends the stage
    with one line naming the setting or the file, not a DuckDB traceback."""
    import duckdb

    try:
        yield
    except duckdb.Error as exc:
        if not duckdb_resource_error(exc):
            raise
        message = duckdb_message(exc)
        if duckdb_out_of_memory(exc):
            limit = config.memory_limit or "default"  # the message gives the figure
            raise ConfigError(
                f"--memory-limit: DuckDB needed more than its {limit} limit ({message}); rerun with a "
                "larger --memory-limit, e.g. 1GB"
            ) from None
        written = re.search(r'Could not write file "(.+?)": (.+)$', message)
        path, reason = written.groups() if written else (str(config.out), message)
        raise GatedSymileError(f"{path}: cannot write ({reason})") from None


def _input_files(config: MimicCohortConfig) -> tuple[dict[str, Path], CxrRelease]:
    """Every table the stage reads, by name, and the detected CXR release.

    Named once here so that the summary hashes exactly the tables the rules consumed.
    """
    hosp = Path(config.mimic_iv) / "hosp"
    files = {
        "patients": hosp / PATIENTS.filename,
        "admissions": hosp / ADMISSIONS.filename,
        "labevents": hosp / LABEVENTS.filename,
        "ecg_record_list": Path(config.ecg) / ECG_RECORD_LIST.filename,
    }
    release = detect_cxr_release(config.cxr, config.chexpert)
    files["cxr_index"] = release.index_file
    files["chexpert"] = release.chexpert_file
    return files, release


def _load_admissions(con, files: dict[str, Path], config: MimicCohortConfig) -> None:
    """Load patients, admissions and the ECG record list; refuse duplicate ids.  Without a
    ``--memory-limit``, DuckDB's limit is then fitted to the number of admissions.

    Every later rule joins on ``hadm_id`` and ``subject_id``: a duplicate would silently multiply
    rows, so it is an error naming the table it came from.
    """
    load_table(con, "patients", files["patients"], PATIENTS)
    load_table(con, "admissions", files["admissions"], ADMISSIONS)
    if config.memory_limit is None:
        fit_memory_limit_to_release(con, config.duckdb_threads)
    duplicates = rules.build_admissions(con)
    if duplicates["duplicate_hadm_id"]:
        raise RecordError(
            files["admissions"], f"{duplicates['duplicate_hadm_id']} duplicate hadm_id rows"
        )
    if duplicates["duplicate_subject_id"]:
        raise RecordError(
            files["patients"],
            f"{duplicates['duplicate_subject_id']} duplicate subject_id rows",
        )
    load_table(con, "ecg_list", files["ecg_record_list"], ECG_RECORD_LIST, file_row=True)


def _parameters(config: MimicCohortConfig, cxr_release: str) -> dict[str, Any]:
    """The rule's settings in the summary, so that a cohort says which windows made it."""
    return {
        "qc_rule": config.qc_rule,
        "cxr_release": cxr_release,
        "view_positions": list(rules.VIEW_POSITIONS),
        "cxr_window_hours": f"({rules.CXR_AFTER_HOURS}, {rules.CXR_UNTIL_HOURS}]",
        "ecg_window_hours": f"[-{rules.ECG_HOURS}, {rules.ECG_HOURS}]",
        "lab_window_hours": f"[-{rules.LAB_HOURS}, {rules.LAB_HOURS}]",
    }


@contextmanager
def _labs_meanwhile(con, labevents: Path, labevents_sql: str) -> Iterator[None]:
    """Scan labevents (:func:`~gated_symile.data.mimic.lab_rules.select_labs`) on a connection
    of its own while the block runs, and wait for it at the end; a failing block interrupts it.

    Why: the scan (the stage's largest serial step, one gzip stream) is DuckDB's work, outside
    the interpreter lock, and the ECG QC is the record workers' work; the scan needs only the
    admissions with a selected CXR and an ECG candidate, known before the QC.  The block must run
    no SQL join meanwhile: the scan switches DuckDB's join-order optimizers off, for the database.
    """
    from concurrent.futures import ThreadPoolExecutor, wait

    def scan() -> None:
        with reading(labevents):
            lab_rules.select_labs(cursor, labevents_sql)

    cursor = con.cursor()
    thread = ThreadPoolExecutor(1, thread_name_prefix="labevents")
    done = thread.submit(scan)
    try:
        yield
    except BaseException:
        while not done.done():  # an interrupt that comes before the scan's query is lost: repeat
            cursor.interrupt()
            wait([done], timeout=0.05)
        raise
    finally:
        thread.shutdown(wait=True)
        cursor.close()
    done.result()  # the scan's own error, once the block succeeded


def _ecg_quality_control(con, config: MimicCohortConfig, pool: RecordPool) -> tuple[list[dict], EcgScan]:
    """QC the ECG candidates (table ``ecg_candidates``) the rule consumes; creates ``ecg_rejected``;
    returns the quarantine rows and the scan counts."""
    scan = scan_ecg_candidates(con, config.ecg, pool, config.qc_rule)
    quarantine = [
        {"level": "ecg_record", "id": path, "subject_id": subject_id, "reason": reason, "stage": "ecg_qc"}
        for _, subject_id, path, reason, _ in scan.rejected
    ]
    return quarantine, scan


def _non_finite_labs(con, labevents_name: str) -> list[dict]:
    """Quarantine rows for the non-finite lab values the rules treated as missing (one per cell)."""
    return [
        {
            "level": "lab_value",
            "id": f"{labevents_name} row {file_row}",
            "subject_id": subject_id,
            "hadm_id": hadm_id,
            "reason": f"non-finite valuenum {value} of itemid {itemid} treated as missing",
            "stage": "labs_select",
        }
        for file_row, subject_id, hadm_id, itemid, value in lab_rules.non_finite_lab_values(con)
    ]


def _cxr_images(con, release, pool: RecordPool) -> tuple[list[dict], int]:
    """Index radiographs; creates ``cxr_index`` and ``cxr_absent``; returns the quarantine rows
    and the number of image files opened (DICOM headers; the JPG release's files are only
    checked for existence, and only those inside an admission's window)."""
    import pyarrow as pa

    quarantine = [{**row, "stage": "cxr_index"} for row in register_cxr_tables(con, release, pool)]
    opened = _count(con, "cxr_meta") + len(quarantine) if release.kind == "dicom" else 0
    rules.build_cxr_index(con)
    quarantine += [
        {
            "level": "cxr_image",
            "id": path,
            "subject_id": subject_id,
            "reason": rules.CXR_TIME_UNPARSEABLE,
            "stage": "cxr_index",
        }
        for path, subject_id in rules.unparseable_cxr_images(con)
    ]
    absent_rows: list[int] = []
    if release.kind == "jpg":
        # one thread: the candidates' sort then fits the stage's limit (on two it needed 40 MiB at
        # 50,000 admissions); nothing else runs on the connection until the result is read
        with rules.one_thread(con):
            candidates = rules.cxr_window_candidates(con)  # fetched a block at a time
            while block := candidates.fetchmany(ROWS_PER_GROUP):
                present = file_presence(release.root, [row[3] for row in block])
                for (file_row, subject_id, _, path), ok in zip(block, present):
                    if not ok:
                        absent_rows.append(file_row)
                        quarantine.append(
                            {"level": "cxr_image", "id": path, "subject_id": subject_id, "reason": CXR_MISSING,
                             "stage": "cxr_index"}
                        )  # fmt: skip
    absent = pa.table({"file_row": pa.array(absent_rows, pa.int64())})
    store_arrow(con, "CREATE OR REPLACE TABLE cxr_absent AS", absent)
    return quarantine, opened


def _count(con, table: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def _attrition_notes(scan: EcgScan, cxr_kind: str, images_opened: int) -> list[str]:
    """What the exclusions table lists and what it cannot list (records never opened)."""
    images = (
        f"{images_opened} DICOM headers read (every listed image of a subject with an admission)"
        if cxr_kind == "dicom"
        else "JPG images: only those inside an admission's CXR window are checked for existence"
    )
    return [
        f"ECG records: {scan.opened} of {scan.listed} listed records opened "
        f"({scan.candidates} inside the window of an admission with a selected CXR, checked in "
        f"{scan.rounds} rounds).",
        "Records are opened in the order the rule consumes them and no further: records outside "
        "every window, those of admissions already excluded for their CXR, and candidates after an "
        "admission's first valid ECG are never opened and are not listed as excluded.",
        "Labs: only admissions with a selected CXR and ECG are matched (the last criterion); a "
        "non-finite value in another admission's window is not listed.",
        f"CXR: {images}.",
    ]


def _table_input(path: Path) -> dict[str, str]:
    """A table's entry in the summary; also noted as read while a stage records (one hash)."""
    digest = file_sha256(path)
    read_set = active()
    if read_set is not None:
        read_set.add_opened(path.parent, [opened_file(path, path.name, digest)])
    return {"file": path.name, "sha256": digest}


def _write_outputs(con, out: Path, quarantine: list[dict], notes: list[str]) -> dict:
    import pyarrow as pa

    kept = write_parquet_groups(out / "cohort.parquet", rules.cohort_batches(con, ROWS_PER_GROUP))
    schema = pa.schema(
        [
            ("level", pa.string()),
            ("id", pa.string()),
            ("subject_id", pa.int64()),
            ("hadm_id", pa.int64()),
            ("reason", pa.string()),
            ("stage", pa.string()),
        ]
    )
    # excluded admissions (at real scale 420,000 of 431,000) streamed, then quarantined records
    dropped = con.sql(rules.exclusions_select_sql()).to_arrow_reader(ROWS_PER_GROUP)
    records = pa.Table.from_pylist([{"hadm_id": None, **row} for row in quarantine], schema=schema)
    rows = chain((batch.cast(schema) for batch in dropped), records.to_batches())
    excluded = write_parquet_groups(out / "exclusions.parquet", pa.RecordBatchReader.from_batches(schema, rows))
    excluded_admissions = excluded - records.num_rows

    attrition = rules.attrition_counts(con)
    write_attrition(attrition, out, notes)
    n_in = attrition[0][1]
    if n_in != kept + excluded_admissions:
        raise RuntimeError(
            f"cohort bookkeeping broken: {n_in} admissions != {kept} kept + {excluded_admissions} excluded"
        )
    levels: dict[str, int] = {}
    for row in quarantine:
        levels[row["level"]] = levels.get(row["level"], 0) + 1
    return {
        "admissions": n_in,
        "cohort": kept,
        "excluded_admissions": excluded_admissions,
        "attrition": {criterion: count for criterion, count in attrition},
        "quarantined_records": levels,
        "cxr_images_indexed": _count(con, "cxr_index"),
        "patients_in_cohort": rules.cohort_patients(con),
    }


