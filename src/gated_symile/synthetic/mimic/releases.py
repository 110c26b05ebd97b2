"""Orchestration: draw the plan, write the tables, render the records in parallel.

Layout under ``out`` (docs/data.md §1-§3)::

    mimic-iv/hosp/{patients,admissions,labevents,d_labitems}.csv.gz
    mimic-iv-ecg/record_list.csv
    mimic-iv-ecg/files/p1000/p10000032/s4xxxxxxx/4xxxxxxx.{hea,dat}
    mimic-cxr/cxr-record-list.csv.gz
    mimic-cxr/files/p10/p10000032/s5xxxxxxx/<dicom_id>.dcm
    mimic-cxr-jpg/mimic-cxr-2.0.0-{metadata,chexpert}.csv.gz
    mimic-cxr-jpg/files/p10/p10000032/s5xxxxxxx/<dicom_id>.jpg

Records are rendered by ``workers`` processes; every record's random stream is keyed on its id,
so the bytes do not depend on the worker count or on the order in which chunks finish.  Workers
are *spawned* (not forked: the parent holds polars' thread pool), so a script that calls
``generate_mimic(..., workers > 1)`` needs the usual ``if __name__ == "__main__":`` guard; the
CLI has it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from gated_symile.outputs import staged_folder
from gated_symile.synthetic.mimic.cohort_plan import (
    CXR_STREAM,
    ECG_STREAM,
    Plan,
    draw_plan,
)
from gated_symile.synthetic.mimic.config import MimicSynthConfig
from gated_symile.synthetic.mimic.cxr_studies import plan_cxrs
from gated_symile.synthetic.mimic.events import plan_ecgs
from gated_symile.synthetic.mimic.identifiers import format_times
from gated_symile.synthetic.mimic.labs import write_d_labitems, write_labevents
from gated_symile.records.mimic_tables import CHEXPERT_LABELS
from gated_symile.synthetic.mimic.tables import write_csv

RELEASES = ("mimic-iv", "mimic-iv-ecg", "mimic-cxr", "mimic-cxr-jpg")
METADATA_COLUMNS = [
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
    "Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning",
]  # fmt: skip
TASKS_PER_WORKER = 8
FILE_COUNTS = ("ecg_records", "ecg_faults", "dicom", "dicom_faults", "jpg")


def generate_mimic(out: Path, cfg: MimicSynthConfig) -> dict:
    """Write the synthetic releases under ``out`` and return a JSON-able summary.

    The releases are built in a staged folder beside ``out`` that replaces it whole when complete
    (``gated_symile.outputs.staged_folder``; a folder holding release folders is the generator's),
    so a killed run leaves the earlier releases or none, never a half release that the cohort
    would read as complete, and a rerun never leaves files of an earlier run behind.
    """
    out = Path(out)
    plan = draw_plan(cfg)
    ecg, ecg_counts = plan_ecgs(plan)
    images, studies, cxr_counts = plan_cxrs(plan)

    with staged_folder(out, markers=RELEASES, what="synthetic MIMIC release folder") as work:
        with _Rendering(work, plan, ecg, images) as rendering:  # render while tables are written
            rows, lab_counts = _write_tables(work, plan, ecg, images, studies)
            files = rendering.counts()
    return {
        "out": str(out),
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "rows": rows,
        "files": files,
        "branches": {**plan.branches, **ecg_counts, **cxr_counts, **lab_counts},
    }


def _write_tables(out: Path, plan: Plan, ecg: pl.DataFrame, images: pl.DataFrame, studies: pl.DataFrame):
    """Every table of the three releases; returns (rows per table, lab branch counts)."""
    hosp = out / "mimic-iv" / "hosp"
    rows = {
        "patients": write_csv(plan.patients, hosp / "patients.csv.gz"),
        "admissions": write_csv(plan.admissions, hosp / "admissions.csv.gz"),
        "d_labitems": write_d_labitems(hosp / "d_labitems.csv.gz"),
    }
    lab_counts = write_labevents(hosp / "labevents.csv.gz", plan)
    rows["labevents"] = lab_counts.pop("labevents_rows")
    rows["record_list"] = write_csv(
        _record_list(ecg), out / "mimic-iv-ecg" / "record_list.csv"
    )
    images = images.with_columns(_study_time(images))
    rows["cxr_record_list"] = write_csv(
        images.select(
            "subject_id",
            "study_id",
            "dicom_id",
            pl.format("{}{}.dcm", "dir", "dicom_id").alias("path"),
        ),
        out / "mimic-cxr" / "cxr-record-list.csv.gz",
    )
    jpg = out / "mimic-cxr-jpg"
    rows["cxr_metadata"] = write_csv(
        images.select(METADATA_COLUMNS), jpg / "mimic-cxr-2.0.0-metadata.csv.gz"
    )
    rows["cxr_chexpert"] = write_csv(
        studies.filter("has_chexpert").select(
            "subject_id", "study_id", *CHEXPERT_LABELS
        ),
        jpg / "mimic-cxr-2.0.0-chexpert.csv.gz",
    )
    return rows, lab_counts


def _record_list(ecg: pl.DataFrame) -> pl.DataFrame:
    return ecg.select(
        "subject_id",
        "study_id",
        pl.col("study_id").alias("file_name"),
        format_times(ecg["time_s"], "ecg_time"),
        "path",
    )


def _study_time(images: pl.DataFrame) -> pl.Expr:
    """``StudyTime`` as the metadata CSV prints it: float ``HHMMSS.fff`` (``84400.0``, ``213014.531``)."""
    text = pl.format("{}.{}", "hhmmss", pl.col("millis").cast(pl.String).str.zfill(3))
    text = text.str.strip_chars_end("0")
    return (
        pl.when(text.str.ends_with("."))
        .then(text + "0")
        .otherwise(text)
        .alias("StudyTime")
    )


class _Rendering:
    """Every ECG record, DICOM and JPG, split into tasks over ``cfg.workers`` processes that start
    on entry, so that they render while the parent writes the tables (every core busy).  With one
    worker, or ``cfg.scale`` (no records), :meth:`counts` does the work itself."""

    def __init__(self, out: Path, plan: Plan, ecg: pl.DataFrame, images: pl.DataFrame) -> None:
        self.cfg = plan.cfg
        self.tasks = [] if self.cfg.scale else _render_tasks(out, plan, ecg, images)
        self.pool = self.pending = None

    def __enter__(self) -> _Rendering:
        if self.cfg.workers > 1 and self.tasks:
            import multiprocessing

            self.pool = multiprocessing.get_context("spawn").Pool(self.cfg.workers)
            self.pending = self.pool.map_async(_render, self.tasks, chunksize=1)
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if self.pool is not None:
            if exc_type is not None:
                self.pool.terminate()
            self.pool.close()
            self.pool.join()

    def counts(self) -> dict[str, int]:
        """Wait for the records; files written per kind (:data:`FILE_COUNTS`)."""
        results = self.pending.get() if self.pending is not None else [_render(t) for t in self.tasks]
        total = dict.fromkeys(FILE_COUNTS, 0)
        for result in results:
            for key, value in result.items():
                total[key] += value
        return total


def _render_tasks(out: Path, plan: Plan, ecg: pl.DataFrame, images: pl.DataFrame) -> list[tuple]:
    """The records as ``workers x TASKS_PER_WORKER`` interleaved slices (balanced work)."""
    cfg, lat = plan.cfg, plan.latents
    ecg_jobs = [
        ("ecg", str(out / "mimic-iv-ecg" / r["path"]), r["study_id"], r["subject_id"], r["time_s"],
         r["kind"], float(lat.h_ecg[r["adm"]]), int(lat.a_ecg[r["adm"]]), int(lat.a2_ecg[r["adm"]]))
        for r in ecg.iter_rows(named=True)
    ]  # fmt: skip
    cxr_jobs = [
        ("cxr", str(out), r["dir"], r["dicom_id"], r["subject_id"], r["study_id"],
         {k: r[k] for k in ("ViewPosition", "PerformedProcedureStepDescription",
                            "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning")},
         f"{r['StudyDate']}", f"{r['hhmmss']:06d}.{r['millis']:03d}", r["photometric"], r["has_jpg"],
         r["fault"], float(lat.h_cxr[r["adm"]]), float(lat.f_cxr[r["adm"]]), int(lat.c_cxr[r["adm"]]),
         int(lat.c2_cxr[r["adm"]]))
        for r in images.iter_rows(named=True)
    ]  # fmt: skip
    jobs = ecg_jobs + cxr_jobs
    n_tasks = max(1, min(len(jobs), cfg.workers * TASKS_PER_WORKER))
    return [(cfg.seed, cfg.image_size, jobs[i::n_tasks]) for i in range(n_tasks)]


def _render(task) -> dict[str, int]:
    """Worker: render one slice of records; returns file counts."""
    seed, size, jobs = task
    counts = {
        "ecg_records": 0,
        "ecg_faults": 0,
        "dicom": 0,
        "dicom_faults": 0,
        "jpg": 0,
    }
    for job in jobs:
        if job[0] == "ecg":
            counts[_render_ecg(seed, *job[1:])] += 1
        else:
            for key in _render_cxr(seed, size, *job[1:]):
                counts[key] += 1
    return counts


def _render_ecg(
    seed, record_path, study_id, subject_id, time_s, kind, h_ecg, a_ecg, a2_ecg
) -> str:
    from gated_symile.synthetic.mimic.ecg_waveform import (
        digitize,
        synthesize_ecg,
        write_wfdb,
    )

    if kind == "missing":  # listed in record_list.csv, nothing on disk
        return "ecg_faults"
    rng = np.random.default_rng([seed, ECG_STREAM, study_id])
    digital = digitize(synthesize_ecg(rng, h_ecg, a_ecg, axis_bit=a2_ecg), kind, rng)
    path = Path(record_path)
    when = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=int(time_s))
    write_wfdb(path.parent, study_id, subject_id, when, digital)
    if kind == "truncated":
        dat = path.with_suffix(".dat")
        dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 3])
        return "ecg_faults"
    return "ecg_records"


def _render_cxr(seed, size, root, folder, dicom_id, subject_id, study_id, view_tags, study_date,
                study_time, photometric, has_jpg, fault, h_cxr, f_cxr, c_cxr, c2_cxr) -> list[str]:  # fmt: skip
    from gated_symile.synthetic.mimic.radiograph import (
        corrupt_dicom,
        synthesize_cxr,
        write_dicom,
        write_jpg,
    )

    key = [int(part, 16) for part in dicom_id.split("-")]
    rng = np.random.default_rng([seed, CXR_STREAM, *key])
    pixels = synthesize_cxr(rng, view_tags["ViewPosition"], h_cxr, f_cxr, c_cxr, size, c2_cxr)
    dcm = Path(root) / "mimic-cxr" / folder / f"{dicom_id}.dcm"
    tags = dict(view_tags, subject_id=subject_id, study_key=f"{seed}:{study_id}",
                StudyDate=study_date, StudyTime=study_time)  # fmt: skip
    write_dicom(dcm, pixels, photometric, tags, uid_key=f"{seed}:{dicom_id}")
    if fault:
        corrupt_dicom(dcm, rng)
        return ["dicom_faults"]
    if has_jpg:
        write_jpg(dcm, Path(root) / "mimic-cxr-jpg" / folder / f"{dicom_id}.jpg")
        return ["dicom", "jpg"]
    return ["dicom"]
