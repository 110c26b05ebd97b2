"""Build the Symile-MIMIC cohort from the three raw releases (docs/data.md §4): the ``cohort mimic`` stage.

Order of work: load the small tables (admissions, patients, record list, CXR index, CheXpert) into
DuckDB; QC every listed ECG record in parallel; index the radiographs and check that candidate image
files exist; run the SQL rules of :mod:`gated_symile.data.mimic.cohort_rules` (labevents is streamed,
never loaded); write the cohort, the exclusions, the attrition and a summary.

Outputs are byte-deterministic for the same inputs: rows are sorted, ties are broken by file order,
and parquet is written from one contiguous Arrow table with fixed settings.  ``workers`` and DuckDB
threads change speed only.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gated_symile.errors import ConfigError, RecordError
from gated_symile.data.mimic import cohort_rules as rules
from gated_symile.data.mimic.attrition import write_attrition
from gated_symile.data.mimic.cxr_index import (
    detect_cxr_release,
    file_presence,
    register_cxr_tables,
)
from gated_symile.data.mimic.ecg_qc_scan import scan_ecg_records
from gated_symile.outputs import staged_folder
from gated_symile.provenance.hashing import file_sha256
from gated_symile.records.mimic_tables import (
    ADMISSIONS,
    ECG_RECORD_LIST,
    LABEVENTS,
    PATIENTS,
    csv_select_sql,
    load_table,
    reading,
    sql_string,
)

__all__ = ["EXCLUSION_COLUMNS", "MimicCohortConfig", "build_mimic_cohort", "open_duckdb"]

EXCLUSION_COLUMNS: tuple[str, ...] = ("level", "id", "subject_id", "hadm_id", "reason", "stage")


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
    qc_rule: str = "symile"
    duckdb_threads: int = 2
    memory_limit: str = "2GB"


_MEMORY_LIMIT = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


def _progress(start: float, message: str) -> None:
    """One line per step on stderr (the Snakemake rule log)."""
    print(f"[cohort {time.perf_counter() - start:7.1f} s] {message}", file=sys.stderr, flush=True)


def open_duckdb(threads: int, memory_limit: str, temp_dir: str | Path):
    """An in-memory DuckDB connection with explicit resources (spills to ``temp_dir``)."""
    import duckdb

    if not _MEMORY_LIMIT.match(str(memory_limit).strip()):
        raise ConfigError(f"memory limit must look like '2GB' or '500MiB', got {memory_limit!r}")
    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {int(threads)}")
    con.execute(f"SET memory_limit = {sql_string(str(memory_limit).strip())}")
    con.execute(f"SET temp_directory = {sql_string(Path(temp_dir).as_posix())}")
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
    from gated_symile.records.ecg_qc import QC_RULES

    if config.qc_rule not in QC_RULES:
        raise ConfigError(f"--qc-rule must be one of {QC_RULES}, got {config.qc_rule!r}")
    if config.workers < 1 or config.duckdb_threads < 1:
        raise ConfigError("--workers and --duckdb-threads must be >= 1")
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
    labevents_sql = csv_select_sql(files["labevents"], LABEVENTS, file_row=True)  # checks header

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".duckdb-", dir=out) as temp_dir:
        con = open_duckdb(config.duckdb_threads, config.memory_limit, temp_dir)
        try:
            load_table(con, "patients", files["patients"], PATIENTS)
            load_table(con, "admissions", files["admissions"], ADMISSIONS)
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
            _progress(start, "admissions loaded; ECG QC of every listed record")
            quarantine = _ecg_quality_control(con, files["ecg_record_list"], config)
            _progress(start, f"ECG QC done; indexing the {release.kind.upper()} CXR release")
            quarantine += _cxr_images(con, release, config.workers)
            rules.select_cxr(con)
            rules.select_ecg(con)
            _progress(start, "CXR and ECG selected; streaming labevents")
            with reading(files["labevents"]):
                rules.select_labs(con, labevents_sql)
            rules.decide_admissions(con)
            summary = _write_outputs(con, out, quarantine)
            _progress(start, f"cohort of {summary['cohort']} admissions written")
        finally:
            con.close()
    summary["inputs"] = {
        name: {"file": path.name, "sha256": file_sha256(path)} for name, path in files.items()
    }
    summary["parameters"] = {
        "qc_rule": config.qc_rule,
        "cxr_release": release.kind,
        "view_positions": list(rules.VIEW_POSITIONS),
        "cxr_window_hours": f"({rules.CXR_AFTER_HOURS}, {rules.CXR_UNTIL_HOURS}]",
        "ecg_window_hours": f"[-{rules.ECG_HOURS}, {rules.ECG_HOURS}]",
        "lab_window_hours": f"[-{rules.LAB_HOURS}, {rules.LAB_HOURS}]",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _ecg_quality_control(con, record_list: Path, config: MimicCohortConfig) -> list[dict]:
    """QC every listed record; creates ``ecg_list`` and ``ecg_rejected``; returns quarantine rows."""
    import pyarrow as pa

    load_table(con, "ecg_list", record_list, ECG_RECORD_LIST, file_row=True)
    listed = con.execute(
        "SELECT file_row, subject_id, path FROM ecg_list ORDER BY file_row"
    ).fetchall()
    readable = [row for row in listed if row[2]]
    reasons = scan_ecg_records(
        config.ecg, [row[2] for row in readable], rule=config.qc_rule, workers=config.workers
    )
    verdict = {row[0]: reason for row, reason in zip(readable, reasons)}
    rejected = []
    for file_row, subject_id, path in listed:
        reason = verdict[file_row] if path else "ECG record has no path in record_list.csv"
        if reason is not None:
            rejected.append((file_row, subject_id, path or f"record_list row {file_row}", reason))
    table = pa.table(
        {
            "file_row": pa.array([r[0] for r in rejected], pa.int64()),
            "reason": pa.array([r[3] for r in rejected], pa.string()),
        }
    )
    con.register("ecg_rejected_arrow", table)
    con.execute("CREATE OR REPLACE TABLE ecg_rejected AS SELECT * FROM ecg_rejected_arrow")
    con.unregister("ecg_rejected_arrow")
    return [
        {
            "level": "ecg_record",
            "id": path,
            "subject_id": subject_id,
            "reason": reason,
            "stage": "ecg_qc",
        }
        for _, subject_id, path, reason in rejected
    ]


def _cxr_images(con, release, workers: int) -> list[dict]:
    """Index radiographs; creates ``cxr_index`` and ``cxr_absent``; returns quarantine rows."""
    import pyarrow as pa

    quarantine = [
        {**row, "stage": "cxr_index"} for row in register_cxr_tables(con, release, workers=workers)
    ]
    rules.build_cxr_index(con)
    quarantine += [
        {
            "level": "cxr_image",
            "id": path,
            "subject_id": subject_id,
            "reason": "StudyDate/StudyTime not parseable",
            "stage": "cxr_index",
        }
        for path, subject_id in rules.unparseable_cxr_images(con)
    ]
    absent_rows: list[int] = []
    if release.kind == "jpg":
        candidates = rules.cxr_window_candidates(con)
        present = file_presence(release.root, [row[3] for row in candidates])
        for (file_row, subject_id, _, path), ok in zip(candidates, present):
            if not ok:
                absent_rows.append(file_row)
                quarantine.append(
                    {
                        "level": "cxr_image",
                        "id": path,
                        "subject_id": subject_id,
                        "reason": "CXR file missing",
                        "stage": "cxr_index",
                    }
                )
    con.register("cxr_absent_arrow", pa.table({"file_row": pa.array(absent_rows, pa.int64())}))
    con.execute("CREATE OR REPLACE TABLE cxr_absent AS SELECT * FROM cxr_absent_arrow")
    con.unregister("cxr_absent_arrow")
    return quarantine


def _write_outputs(con, out: Path, quarantine: list[dict]) -> dict:
    import pyarrow as pa

    cohort = con.sql(rules.cohort_select_sql()).to_arrow_table()
    _write_parquet(cohort, out / "cohort.parquet")
    dropped = con.sql(rules.exclusions_select_sql()).to_arrow_table()
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
    records = pa.Table.from_pylist([{**row, "hadm_id": None} for row in quarantine], schema=schema)
    exclusions = pa.concat_tables([dropped.cast(schema), records])
    _write_parquet(exclusions, out / "exclusions.parquet")

    attrition = rules.attrition_counts(con)
    write_attrition(attrition, out)
    n_in = attrition[0][1]
    if n_in != cohort.num_rows + dropped.num_rows:
        raise RuntimeError(
            f"cohort bookkeeping broken: {n_in} admissions != {cohort.num_rows} kept + "
            f"{dropped.num_rows} excluded"
        )
    levels: dict[str, int] = {}
    for row in quarantine:
        levels[row["level"]] = levels.get(row["level"], 0) + 1
    return {
        "admissions": n_in,
        "cohort": cohort.num_rows,
        "excluded_admissions": dropped.num_rows,
        "attrition": {criterion: count for criterion, count in attrition},
        "quarantined_records": levels,
        "ecg_records_listed": con.execute("SELECT count(*) FROM ecg_list").fetchall()[0][0],
        "cxr_images_indexed": con.execute("SELECT count(*) FROM cxr_index").fetchall()[0][0],
        "patients_in_cohort": len(set(cohort.column("subject_id").to_pylist())),
    }


def _write_parquet(table, path: Path) -> None:
    """Parquet with fixed settings from one contiguous table (same rows -> same bytes)."""
    import pyarrow.parquet as pq

    pq.write_table(
        table.combine_chunks().replace_schema_metadata(None),
        path,
        compression="zstd",
        row_group_size=1 << 20,
    )


