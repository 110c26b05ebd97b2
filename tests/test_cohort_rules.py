"""Every branch of the Symile-MIMIC cohort rules (docs/data.md §4) on one small hand-made raw world.

Each subject exercises one branch (window bounds on both sides, ties, views, missing files,
CheXpert without fallback, ECG QC, lab filters); the cohort is built once for the module.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from gated_symile.errors import ConfigError, RecordError
from gated_symile.data.mimic.cohort import MimicCohortConfig, build_mimic_cohort, open_duckdb
from gated_symile.data.mimic.labs import LAB_COLUMNS
from tests.mimic_raw_fixtures import RawWorld

T0 = datetime(2180, 1, 1, 12, 0, 0)
H = timedelta(hours=1)
S = timedelta(seconds=1)


def sid(k: int) -> int:
    return 10000000 + k


def hid(k: int) -> int:
    return 20000000 + k


def dicom(k: int, n: int = 0) -> str:
    return f"{k:08x}-{n:08x}-00000000-00000000-00000000"


def complete(
    world: RawWorld,
    k: int,
    *,
    cxr: bool = True,
    ecg: bool = True,
    lab: bool = True,
    admittime: datetime = T0,
) -> None:
    """An admission that passes every rule unless a part is switched off."""
    world.add_admission(sid(k), hid(k), admittime)
    if cxr:
        world.add_cxr(sid(k), 50000000 + k, dicom(k), admittime + 48 * H)
    if ecg:
        world.add_ecg(sid(k), 40000000 + k * 10, admittime + H)
    if lab:
        world.add_lab(sid(k), 51221, admittime + H, float(k), hadm_id=hid(k))


def build_world() -> RawWorld:
    w = RawWorld()
    complete(w, 1)
    w.add_lab(
        sid(1),
        51265,
        T0 + 2 * H,
        250.0,
        hadm_id=hid(1),
        comments='line one\nline "two", with comma\nline three',
    )
    # CXR window: (24 h, 72 h], open at 24 h, closed at 72 h
    for k, offset in ((2, 24 * H), (3, 24 * H + S), (4, 72 * H), (5, 72 * H + S)):
        complete(w, k, cxr=False)
        w.add_cxr(sid(k), 50000000 + k, dicom(k), T0 + offset)
    # ties on StudyDateTime: first row in file order wins
    for k, views in ((6, ("AP", "PA")), (7, ("PA", "AP"))):
        complete(w, k, cxr=False)
        for n, view in enumerate(views):
            w.add_cxr(sid(k), 50000000 + k, dicom(k, n), T0 + 30 * H, view)
    # lateral first, PA later -> PA; only non-AP/PA views -> dropped
    complete(w, 8, cxr=False)
    w.add_cxr(sid(8), 50000008, dicom(8, 0), T0 + 25 * H, "LATERAL")
    w.add_cxr(sid(8), 50000018, dicom(8, 1), T0 + 40 * H, "PA")
    complete(w, 9, cxr=False)
    for n, view in enumerate(("LATERAL", None, "AP AXIAL", "ap")):
        w.add_cxr(sid(9), 50000009, dicom(9, n), T0 + (30 + n) * H, view)
    # earliest image file missing -> next image
    complete(w, 10, cxr=False)
    w.add_cxr(sid(10), 50000010, dicom(10, 0), T0 + 30 * H, present=False)
    w.add_cxr(sid(10), 50000020, dicom(10, 1), T0 + 50 * H)
    # earliest study without CheXpert row -> admission dropped, no fallback
    complete(w, 11, cxr=False)
    w.add_cxr(sid(11), 50000011, dicom(11, 0), T0 + 30 * H, chexpert=False)
    w.add_cxr(sid(11), 50000021, dicom(11, 1), T0 + 50 * H)
    # ECG window [-24 h, +24 h], both ends closed
    complete(w, 12, ecg=False)
    w.add_ecg(sid(12), 40000120, T0 - 24 * H - S)
    w.add_ecg(sid(12), 40000121, T0 - 24 * H)
    complete(w, 13, ecg=False)
    w.add_ecg(sid(13), 40000130, T0 + 24 * H + S)
    complete(w, 14, ecg=False)
    w.add_ecg(sid(14), 40000140, T0 + 24 * H)
    # ECG QC before selection: NaN / all-zero / missing earliest -> next valid one
    for k, kind in ((15, "nan"), (16, "zero"), (17, "missing")):
        complete(w, k, ecg=False)
        w.add_ecg(sid(k), 40000000 + k * 10, T0 + H, kind)
        w.add_ecg(sid(k), 40000000 + k * 10 + 1, T0 + 2 * H)
    # ECG tie on ecg_time: first row in file order wins
    complete(w, 18, ecg=False)
    w.add_ecg(sid(18), 40000181, T0 + H)
    w.add_ecg(sid(18), 40000180, T0 + H)
    # lab window [-24 h, +24 h] closed, earliest wins
    complete(w, 19, lab=False)
    w.add_lab(sid(19), 51221, T0 - 24 * H - S, 1.0)
    w.add_lab(sid(19), 51221, T0 - 24 * H, 2.0)
    w.add_lab(sid(19), 51222, T0 + 24 * H, 3.0)
    w.add_lab(sid(19), 50912, T0 + 24 * H + S, 4.0)
    w.add_lab(sid(19), 51222, T0 + 24 * H + S, 99.0)
    # lab ties by file order; text-only result never chosen; NaN valuenum never chosen
    complete(w, 20, lab=False)
    w.add_lab(sid(20), 51221, T0 + H, 5.0, hadm_id=hid(20))
    w.add_lab(sid(20), 51221, T0 + H, 6.0, hadm_id=hid(20))
    w.add_lab(sid(20), 51222, T0, None, value="NEG", hadm_id=hid(20))
    w.add_lab(sid(20), 51222, T0 + 2 * H, 7.0, hadm_id=hid(20))
    w.add_lab(sid(20), 50912, T0, float("nan"), value="___")
    w.add_lab(sid(20), 50912, T0 + 3 * H, 8.0)
    # labs match by subject and time only: null hadm_id and another admission's hadm_id are used
    complete(w, 21, lab=False)
    w.add_admission(sid(21), hid(21) + 500, T0 + timedelta(days=20))
    w.add_lab(sid(21), 51221, T0 + H, 9.0, hadm_id=hid(21) + 500)
    w.add_lab(sid(21), 51222, T0 + H, 10.0, hadm_id=None)
    # only labs outside the 50 items -> dropped for labs
    complete(w, 22, lab=False)
    w.add_lab(sid(22), 50800, T0 + H, 1.0)
    # StudyTime fraction truncated: 24:00:00.999 is not > 24 h
    complete(w, 24, cxr=False)
    w.add_cxr(sid(24), 50000024, dicom(24), T0 + 24 * H, fraction=".999")
    # StudyTime before 10:00 has 5 integer digits ("84400.0")
    complete(w, 25, cxr=False, admittime=datetime(2180, 1, 1, 8, 0, 0))
    w.add_cxr(sid(25), 50000025, dicom(25), datetime(2180, 1, 3, 8, 44, 0), fraction=".0")
    # an ECG of a subject without admission is never opened (nor listed as excluded)
    w.add_ecg(10009999, 40099990, T0, "zero")
    return w


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("rules")
    paths = build_world().write(root)
    out = root / "out"
    summary = build_mimic_cohort(MimicCohortConfig(**paths, out=out, workers=1, duckdb_threads=2))
    cohort = pd.read_parquet(out / "cohort.parquet").set_index("hadm_id", drop=False)
    exclusions = pd.read_parquet(out / "exclusions.parquet")
    return {
        "root": root,
        "paths": paths,
        "out": out,
        "summary": summary,
        "cohort": cohort,
        "exclusions": exclusions,
    }


def kept(built: dict, k: int) -> pd.Series:
    assert hid(k) in built["cohort"].index, f"admission {hid(k)} unexpectedly dropped"
    return built["cohort"].loc[hid(k)]


def dropped_reason(built: dict, k: int) -> str:
    ex = built["exclusions"]
    rows = ex[(ex.level == "admission") & (ex.hadm_id == hid(k))]
    assert len(rows) == 1, f"admission {hid(k)} not excluded exactly once"
    assert hid(k) not in built["cohort"].index
    return rows.iloc[0].reason


def test_complete_admission_kept_with_all_columns(built):
    row = kept(built, 1)
    assert row.cxr_path == f"files/p10/p{sid(1)}/s50000001/{dicom(1)}.jpg"
    assert row.ecg_path == f"files/p1000/p{sid(1)}/s40000010/40000010"
    assert row["51221"] == 1.0 and row["51265"] == 250.0  # row with multi-line comment parsed
    assert row.cxr_ViewPosition == "PA" and row.age == 60 and row.admittime_year == 2180
    assert math.isnan(row["50802"])
    cohort = built["cohort"]
    assert list(cohort.columns[-50:]) == list(LAB_COLUMNS)
    assert all(cohort[c].dtype == "float64" for c in LAB_COLUMNS)
    keys = list(zip(cohort.subject_id, cohort.hadm_id))
    assert keys == sorted(keys)


@pytest.mark.parametrize("k,is_kept", [(2, False), (3, True), (4, True), (5, False)])
def test_cxr_window_open_at_24h_closed_at_72h(built, k, is_kept):
    if is_kept:
        assert kept(built, k).cxr_dicom_id == dicom(k)
    else:
        assert dropped_reason(built, k) == "no AP/PA CXR within (24 h, 72 h]"


def test_cxr_ties_go_to_first_row_in_file(built):
    assert kept(built, 6).cxr_dicom_id == dicom(6, 0) and kept(built, 6).cxr_ViewPosition == "AP"
    assert kept(built, 7).cxr_dicom_id == dicom(7, 0) and kept(built, 7).cxr_ViewPosition == "PA"


def test_only_exact_ap_pa_views(built):
    assert kept(built, 8).cxr_dicom_id == dicom(8, 1)
    assert dropped_reason(built, 9) == "no AP/PA CXR within (24 h, 72 h]"


def test_missing_image_file_quarantined_and_next_image_used(built):
    assert kept(built, 10).cxr_dicom_id == dicom(10, 1)
    ex = built["exclusions"]
    missing = ex[ex.level == "cxr_image"]
    assert list(missing.id) == [f"files/p10/p{sid(10)}/s50000010/{dicom(10, 0)}.jpg"]
    assert list(missing.reason) == ["CXR file missing"] and missing.hadm_id.isna().all()


def test_chexpert_missing_drops_admission_without_fallback(built):
    assert dropped_reason(built, 11) == "CheXpert row missing for study 50000011"


@pytest.mark.parametrize("k,study", [(12, 40000121), (13, None), (14, 40000140)])
def test_ecg_window_closed_both_ends(built, k, study):
    if study is None:
        assert dropped_reason(built, k) == "no valid ECG within [-24 h, +24 h]"
    else:
        assert kept(built, k).ecg_study_id == study


@pytest.mark.parametrize(
    "k,reason",
    [
        (15, "ECG has 1 NaN samples"),
        (16, "ECG is all zeros"),
        (17, "ECG record missing: files/p1000/p10000017/s40000170/40000170"),
    ],
)
def test_bad_earliest_ecg_quarantined_and_next_one_chosen(built, k, reason):
    assert kept(built, k).ecg_study_id == 40000000 + k * 10 + 1
    ex = built["exclusions"]
    rec = ex[(ex.level == "ecg_record") & (ex.subject_id == sid(k))]
    assert list(rec.reason) == [reason] and list(rec.stage) == ["ecg_qc"]


def test_ecg_tie_goes_to_first_row_in_file(built):
    assert kept(built, 18).ecg_study_id == 40000181


def test_ecg_records_opened_only_as_the_rule_consumes_them(built):
    """Opened: the one candidate of each of the 13 plain admissions with a selected CXR, the
    in-window ECG of 12 and 14, both ECGs of 15-17 (the first fails) and the first of the tie of
    18: 22 of 30 listed. Never opened, so never listed as excluded: outside every window (12, 13,
    the subject without an admission), in the window of an admission without a selected CXR (2, 5,
    9, 24: the CXR criterion excludes them first) and after the first valid one (the second of the
    tie of 18)."""
    summary, ex = built["summary"], built["exclusions"]
    assert summary["ecg_records_listed"] == 30 and summary["records_opened"]["ecg_records"] == 22
    assert summary["ecg_candidates"] == 23 and summary["ecg_qc_rounds"] == 2
    assert not ((ex.level == "ecg_record") & (ex.subject_id == 10009999)).any()
    assert sorted(ex[ex.level == "ecg_record"].subject_id) == [sid(15), sid(16), sid(17)]
    notes = (built["out"] / "attrition_notes.txt").read_text()
    assert "22 of 30 listed records opened" in notes and "never opened" in notes


def test_lab_window_closed_and_earliest_wins(built):
    row = kept(built, 19)
    assert row["51221"] == 2.0 and row["51222"] == 3.0 and math.isnan(row["50912"])


def test_lab_ties_text_only_and_nan_values(built):
    row = kept(built, 20)
    assert row["51221"] == 5.0  # tie on charttime -> first in file
    assert row["51222"] == 7.0  # earlier text-only result ('NEG', no valuenum) never chosen
    assert row["50912"] == 8.0  # earlier NaN valuenum never chosen


def test_labs_ignore_hadm_id(built):
    row = kept(built, 21)
    assert row["51221"] == 9.0  # lab filed under the subject's other admission
    assert row["51222"] == 10.0  # lab with null hadm_id
    assert dropped_reason(built, 22) == "no lab value within [-24 h, +24 h]"


def test_study_time_fraction_truncated(built):
    assert dropped_reason(built, 24) == "no AP/PA CXR within (24 h, 72 h]"
    assert kept(built, 25).cxr_StudyDateTime == pd.Timestamp("2180-01-03 08:44:00")


def test_counts_reconcile_and_attrition(built):
    summary, cohort, ex = built["summary"], built["cohort"], built["exclusions"]
    n_adm = (ex.level == "admission").sum()
    assert summary["admissions"] == len(cohort) + n_adm == 25
    attrition = pd.read_csv(built["out"] / "attrition.csv")
    # dropped: CXR 2, 5, 9, 24 and the second admission of 21; CheXpert 11; ECG 13; labs 22
    assert list(attrition.remaining) == [25, 20, 19, 18, 17, 17]
    assert attrition.remaining.iloc[-1] == len(cohort)
    assert set(summary["inputs"]) == {
        "patients",
        "admissions",
        "labevents",
        "ecg_record_list",
        "cxr_index",
        "chexpert",
    }


def test_rerun_is_byte_identical_with_other_worker_counts(built, tmp_path):
    out = tmp_path / "again"
    build_mimic_cohort(MimicCohortConfig(**built["paths"], out=out, workers=2, duckdb_threads=1))
    for name in ("cohort.parquet", "exclusions.parquet", "attrition.csv"):
        assert (out / name).read_bytes() == (built["out"] / name).read_bytes(), name


@pytest.mark.parametrize(
    "module, block_size",
    [("gated_symile.data.mimic.cohort", "ROWS_PER_GROUP"), ("gated_symile.data.mimic.lab_rules", "LAB_BLOCK_ADMISSIONS")],
)
def test_cohort_selected_in_blocks_is_the_same_sorted_table(built, tmp_path, monkeypatch, module, block_size):
    """The cohort is selected, and the labs aggregated, a block of admissions at a time (bounded
    memory); any block size gives the same bytes (non-finite lab values in the exclusions too),
    so the blocks come in (subject_id, hadm_id) order and none is lost."""
    import importlib

    assert built["summary"]["cohort"] > 6  # several blocks of 2, the last one partial
    monkeypatch.setattr(importlib.import_module(module), block_size, 2)
    out = tmp_path / "blocks"
    build_mimic_cohort(MimicCohortConfig(**built["paths"], out=out, workers=1, duckdb_threads=2))
    for name in ("cohort.parquet", "exclusions.parquet", "attrition.csv"):
        assert (out / name).read_bytes() == (built["out"] / name).read_bytes(), name


def test_empty_cohort_is_a_table_with_the_cohort_columns(built, tmp_path):
    world = RawWorld()
    complete(world, 1, cxr=False)
    out = tmp_path / "out"
    summary = build_mimic_cohort(MimicCohortConfig(**world.write(tmp_path), out=out))
    assert summary["cohort"] == 0 and summary["excluded_admissions"] == 1
    empty = pd.read_parquet(out / "cohort.parquet")
    assert len(empty) == 0 and list(empty.columns) == list(built["cohort"].columns)


def test_dicom_release_gives_same_cohort(built, tmp_path):
    paths = dict(built["paths"], cxr=build_world().write_cxr(tmp_path, release="dicom"))
    out = tmp_path / "out"
    build_mimic_cohort(MimicCohortConfig(**paths, out=out))
    jpg, dcm = built["cohort"].reset_index(drop=True), pd.read_parquet(out / "cohort.parquet")
    assert (dcm.cxr_path == jpg.cxr_path.str.replace(".jpg", ".dcm", regex=False)).all()
    pd.testing.assert_frame_equal(dcm.drop(columns="cxr_path"), jpg.drop(columns="cxr_path"))
    ex = pd.read_parquet(out / "exclusions.parquet")
    assert list(ex[ex.level == "cxr_image"].reason) == ["CXR file missing"]


def test_dicom_headers_read_in_blocks_give_the_same_cohort(built, tmp_path, monkeypatch):
    """The DICOM release's headers are read and indexed a block of files at a time (bounded
    memory); any block size gives the same bytes, quarantined files included."""
    import gated_symile.data.mimic.cxr_index as cxr_index

    paths = dict(built["paths"], cxr=build_world().write_cxr(tmp_path, release="dicom"))
    whole = tmp_path / "whole"
    build_mimic_cohort(MimicCohortConfig(**paths, out=whole))
    monkeypatch.setattr(cxr_index, "HEADER_BLOCK", 3)
    blocks = tmp_path / "blocks"
    summary = build_mimic_cohort(MimicCohortConfig(**paths, out=blocks))
    assert summary["records_opened"]["cxr_dicom_files"] > 3 * 3
    for name in ("cohort.parquet", "exclusions.parquet", "attrition.csv"):
        assert (blocks / name).read_bytes() == (whole / name).read_bytes(), name


def test_cxr_root_without_release_files_is_a_clear_error(built, tmp_path):
    paths = dict(built["paths"], cxr=tmp_path)
    with pytest.raises(RecordError, match="not a MIMIC-CXR release"):
        build_mimic_cohort(MimicCohortConfig(**paths, out=tmp_path / "out"))


def test_dicom_release_without_chexpert_is_a_clear_error(tmp_path):
    w = RawWorld()
    complete(w, 1)
    paths = w.write(tmp_path, release="dicom")
    (Path(paths["cxr"]) / "mimic-cxr-2.0.0-chexpert.csv.gz").unlink()
    with pytest.raises(RecordError, match="--chexpert"):
        build_mimic_cohort(MimicCohortConfig(**paths, out=tmp_path / "out"))


def test_bad_resource_settings_are_config_errors(built, tmp_path):
    with pytest.raises(ConfigError, match="memory limit"):
        open_duckdb(1, "2GB'; DROP", tmp_path)
    with pytest.raises(ConfigError, match="^mimic.cohort.qc_rule: expected one of symile, strict"):
        MimicCohortConfig(**built["paths"], out=tmp_path, qc_rule="lenient")
    with pytest.raises(ConfigError, match="^mimic.cohort.duckdb_threads: must be >= 1"):
        MimicCohortConfig(**built["paths"], out=tmp_path, duckdb_threads=0)


def test_unreadable_dicom_quarantined_and_next_image_used(tmp_path):
    w = RawWorld()
    complete(w, 1)
    w.add_cxr(sid(1), 50000099, dicom(1, 9), T0 + 30 * H)
    paths = w.write(tmp_path, release="dicom")
    broken = Path(paths["cxr"]) / f"files/p10/p{sid(1)}/s50000099/{dicom(1, 9)}.dcm"
    broken.write_bytes(b"not a dicom file")
    out = tmp_path / "out"
    build_mimic_cohort(MimicCohortConfig(**paths, out=out))
    assert pd.read_parquet(out / "cohort.parquet").cxr_dicom_id.tolist() == [dicom(1)]
    ex = pd.read_parquet(out / "exclusions.parquet")
    (reason,) = ex[ex.level == "cxr_image"].reason
    assert reason.startswith("unreadable image: not a DICOM file")


def test_duckdb_works_in_a_file_with_memory_bounded_per_thread(tmp_path):
    """Tables in a database file can leave memory; an in-memory database kept them all resident
    and the stage's memory grew with the release."""
    from gated_symile.data.mimic.cohort import MEMORY_PER_THREAD_MIB

    con = open_duckdb(3, None, tmp_path)
    try:
        [(path,)] = con.sql("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
        [(limit,)] = con.sql("SELECT current_setting('memory_limit')").fetchall()
    finally:
        con.close()
    assert Path(path).parent == tmp_path
    assert limit == f"{3 * MEMORY_PER_THREAD_MIB:.1f} MiB"  # whole MiB: shown exactly


def test_default_memory_limit_gives_one_thread_the_floor_of_two():
    """The cohort block's joins need more than 20 MiB on one thread as on two, whatever the
    release: one thread's share alone (12 MiB) failed even the 1,000-admission release."""
    from gated_symile.data.mimic.cohort import default_memory_limit

    assert default_memory_limit(1) == default_memory_limit(2) == "24MiB"
    assert default_memory_limit(1, 1000) == "25MiB"
    assert default_memory_limit(4) == "48MiB"


def test_default_memory_limit_grows_with_the_release_only_by_its_hash_tables(tmp_path):
    """Without --memory-limit the stage's limit is fitted to the admissions once they are loaded:
    a limit sized for the largest release let every smaller one fill it, and its peak memory grew
    with the release."""
    from gated_symile.data.mimic.cohort import (
        MEMORY_PER_ADMISSION_BYTES,
        MEMORY_PER_THREAD_MIB,
        fit_memory_limit_to_release,
    )

    con = open_duckdb(2, None, tmp_path)
    try:
        con.execute("CREATE TABLE admissions AS SELECT range AS hadm_id FROM range(431231)")
        fit_memory_limit_to_release(con, 2)
        [(limit,)] = con.sql("SELECT current_setting('memory_limit')").fetchall()
    finally:
        con.close()
    release_mib = math.ceil(431231 * MEMORY_PER_ADMISSION_BYTES / 2**20)
    assert limit == f"{2 * MEMORY_PER_THREAD_MIB + release_mib:.1f} MiB"


def test_cohort_assembles_under_a_small_memory_limit(built, tmp_path):
    """Each hash join of a statement holds about 8 MB however few rows it builds on: the cohort's
    block select joined five per-admission tables and needed ~44 MB even for a tiny cohort, the
    floor of the stage's memory limit. Joined two at a time first, the stage runs under 24 MB, and
    gives the same bytes."""
    out = tmp_path / "small"
    build_mimic_cohort(MimicCohortConfig(**built["paths"], out=out, duckdb_threads=2, memory_limit="24MB"))
    for name in ("cohort.parquet", "exclusions.parquet", "attrition.csv"):
        assert (out / name).read_bytes() == (built["out"] / name).read_bytes(), name


def test_tables_are_written_in_fixed_row_groups_whatever_the_batches(tmp_path, monkeypatch):
    """Readers hold one row group at a time; the same rows give the same bytes however DuckDB
    happened to batch them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import gated_symile.outputs as outputs

    monkeypatch.setattr(outputs, "ROWS_PER_GROUP", 4)
    table = pa.table({"x": list(range(11)), "s": [str(i) for i in range(11)]})
    written = []
    for sizes in ([11], [3, 3, 5], [1] * 11):
        batches, start = [], 0
        for size in sizes:
            batches.append(table.slice(start, size).to_batches()[0])
            start += size
        path = tmp_path / f"t{len(written)}.parquet"
        outputs.write_parquet_groups(path, pa.RecordBatchReader.from_batches(table.schema, batches))
        written.append(path.read_bytes())
        meta = pq.ParquetFile(path).metadata
        assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [4, 4, 3]
        assert pq.read_table(path).equals(table)
    assert written[0] == written[1] == written[2]


def test_checkpoint_out_of_memory_is_the_memory_limit_and_not_masked_by_a_setting():
    """DuckDB failing to pin a block while checkpointing (a FatalException that invalidates the
    database; met at 50,000 admissions under the default limit by a reverted change) is the
    limit's fault, and restoring a setting on the dead database must not replace it with a second traceback."""
    import duckdb

    from gated_symile.data.mimic.cohort_rules import database_setting
    from gated_symile.records.mimic_tables import duckdb_out_of_memory

    fatal = duckdb.FatalException(
        "FATAL Error: Failed to create checkpoint because of error: failed to pin block of size "
        "256.0 KiB (28.8 MiB/29.0 MiB used)"
    )
    assert duckdb_out_of_memory(fatal)
    con = duckdb.connect()
    with pytest.raises(duckdb.FatalException, match="failed to pin block"):
        with database_setting(con, "threads", 1):
            con.close()  # as a fatal error leaves it: nothing more can run on it
            raise fatal


def test_duckdb_out_of_memory_names_the_setting_not_a_table(built, tmp_path):
    """A limit too small for the work is the setting's fault: one line naming --memory-limit (not
    'cannot parse' blamed on the table DuckDB happened to be reading)."""
    with pytest.raises(ConfigError, match=r"^--memory-limit: DuckDB needed more than its 256KB limit"):
        build_mimic_cohort(MimicCohortConfig(**built["paths"], out=tmp_path / "out", memory_limit="256KB"))
    assert not (tmp_path / "out").exists()


def test_out_of_memory_while_committing_a_table_also_names_the_setting(tmp_path):
    """DuckDB also reports its memory limit as a failed commit ("could not allocate block"), which
    was blamed on labevents ("cannot parse as a MIMIC table") on a 50,000-admission release."""
    import duckdb

    from gated_symile.data.mimic.cohort import _duckdb_resources
    from gated_symile.records.mimic_tables import reading

    message = "TransactionContext Error: Failed to commit: could not allocate block of size 256.0 KiB (45.7 MiB/45.7 MiB used)"
    table = tmp_path / "labevents.csv.gz"
    config = MimicCohortConfig(mimic_iv=tmp_path, ecg=tmp_path, cxr=tmp_path, out=tmp_path / "out", memory_limit="48MB")
    with pytest.raises(ConfigError, match=r"^--memory-limit: DuckDB needed more than its 48MB limit \(.*could not allocate block"):
        with _duckdb_resources(config), reading(table):
            raise duckdb.TransactionException(message)


def _world_copy(built: dict, tmp_path: Path) -> dict:
    """The fixture's raw releases, with ``mimic_iv`` copied so that a test may damage its tables."""
    import shutil

    shutil.copytree(built["paths"]["mimic_iv"], tmp_path / "mimic-iv")
    return {**built["paths"], "mimic_iv": tmp_path / "mimic-iv"}


def test_a_damaged_labevents_row_ends_the_stage_naming_the_file(built, tmp_path):
    """labevents is scanned on a connection of its own while the ECGs are checked: a row it cannot
    parse is still the one-line error naming the file, not a traceback of the scan's thread."""
    import gzip

    paths = _world_copy(built, tmp_path)
    table = paths["mimic_iv"] / "hosp" / "labevents.csv.gz"
    lines = gzip.decompress(table.read_bytes()).decode().splitlines()
    fields = lines[-1].split(",")
    fields[lines[0].split(",").index("itemid")] = "not-an-item"
    table.write_bytes(gzip.compress(("\n".join([*lines, ",".join(fields)]) + "\n").encode()))
    with pytest.raises(RecordError, match=r"labevents\.csv\.gz: cannot parse as a MIMIC table"):
        build_mimic_cohort(MimicCohortConfig(**paths, out=tmp_path / "out", workers=1))
    assert not (tmp_path / "out").exists()


def test_a_failing_ecg_check_stops_the_labevents_scan(built, tmp_path, monkeypatch):
    """An error while the ECGs are checked interrupts the labevents scan running meanwhile (not
    waited for to its end) and is the error the stage ends with; no scan thread is left behind."""
    import threading

    import duckdb

    from gated_symile.data.mimic import cohort

    scan_ended = []

    def long_scan(con, labevents_sql):  # seconds of DuckDB work unless interrupted
        try:
            con.execute("SELECT sum(i) FROM range(20000000000) t(i)").fetchall()
            scan_ended.append("completed")
        except duckdb.InterruptException:
            scan_ended.append("interrupted")
            raise

    def broken_scan(*args, **kwargs):
        raise RuntimeError("the ECG check broke")

    monkeypatch.setattr(cohort.lab_rules, "select_labs", long_scan)
    monkeypatch.setattr(cohort, "scan_ecg_candidates", broken_scan)
    with pytest.raises(RuntimeError, match="the ECG check broke"):
        build_mimic_cohort(MimicCohortConfig(**built["paths"], out=tmp_path / "out", workers=1))
    assert scan_ended == ["interrupted"]
    assert not [t for t in threading.enumerate() if t.name.startswith("labevents")]
