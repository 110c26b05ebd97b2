"""Synthetic MIMIC generator: formats, ids, branch coverage, determinism, faults, scale path."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gated_symile.synthetic.mimic import MimicSynthConfig, generate_mimic
from gated_symile.synthetic.mimic.ecg_waveform import LEADS
from gated_symile.synthetic.mimic.lab_catalogue import SYMILE_LABS
from gated_symile.synthetic.mimic.latents import draw_latents

N_ADMISSIONS = 30
REAL_ECG_HEADER = Path(__file__).resolve().parents[2] / (
    "shared/realdata/mimic-iv-ecg-from-SebPelay0-Mimic-Prep/SampleData/p10000032/s40689238/40689238.hea"
)
HEADERS = {
    "mimic-iv/hosp/patients.csv.gz": "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod",
    "mimic-iv/hosp/admissions.csv.gz": "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,"
    "admit_provider_id,admission_location,discharge_location,insurance,language,marital_status,race,"
    "edregtime,edouttime,hospital_expire_flag",
    "mimic-iv/hosp/labevents.csv.gz": "labevent_id,subject_id,hadm_id,specimen_id,itemid,order_provider_id,"
    "charttime,storetime,value,valuenum,valueuom,ref_range_lower,ref_range_upper,flag,priority,comments",
    "mimic-iv/hosp/d_labitems.csv.gz": "itemid,label,fluid,category",
    "mimic-iv-ecg/record_list.csv": "subject_id,study_id,file_name,ecg_time,path",
    "mimic-cxr/cxr-record-list.csv.gz": "subject_id,study_id,dicom_id,path",
    "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz": "dicom_id,subject_id,study_id,"
    "PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,StudyTime,"
    "ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,PatientOrientationCodeSequence_CodeMeaning",
    "mimic-cxr-jpg/mimic-cxr-2.0.0-chexpert.csv.gz": "subject_id,study_id,Atelectasis,Cardiomegaly,"
    "Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,Lung Lesion,Lung Opacity,No Finding,"
    "Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices",
}


def _config(**kw) -> MimicSynthConfig:
    return MimicSynthConfig(
        **{"admissions": N_ADMISSIONS, "seed": 0, "image_size": 64, **kw}
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "default"
    return out, generate_mimic(out, _config())


@pytest.fixture(scope="module")
def faults_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "faults"
    return out, generate_mimic(out, _config(faults=True, seed=1))


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / name, keep_default_na=True)


# ---------------------------------------------------------------- formats


def test_headers_are_exact_and_gzip_is_real(run):
    root, _ = run
    for name, header in HEADERS.items():
        raw = (root / name).read_bytes()
        if name.endswith(".gz"):
            assert raw[:2] == b"\x1f\x8b", name
            assert raw[4:8] == b"\x00\x00\x00\x00", f"{name}: gzip mtime must be 0"
            raw = gzip.decompress(raw)
        assert raw.decode().split("\n", 1)[0] == header, name


def test_id_and_timestamp_conventions(run):
    root, _ = run
    adm = _read(root, "mimic-iv/hosp/admissions.csv.gz")
    pat = _read(root, "mimic-iv/hosp/patients.csv.gz")
    ecg = _read(root, "mimic-iv-ecg/record_list.csv")
    meta = _read(root, "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz")
    labs = _read(root, "mimic-iv/hosp/labevents.csv.gz")
    assert (
        pat.subject_id.astype(str).str.fullmatch(r"1\d{7}").all()
        and pat.subject_id.is_unique
    )
    assert adm.hadm_id.between(20_000_000, 29_999_999).all() and adm.hadm_id.is_unique
    assert set(adm.subject_id) <= set(pat.subject_id)
    assert (
        ecg.study_id.astype(str).str.fullmatch(r"4\d{7}").all()
        and ecg.study_id.is_unique
    )
    assert (ecg.file_name == ecg.study_id).all()
    sid = ecg.subject_id.astype(str)
    assert (
        ecg.path
        == "files/p"
        + sid.str[:4]
        + "/p"
        + sid
        + "/s"
        + ecg.study_id.astype(str)
        + "/"
        + ecg.study_id.astype(str)
    ).all()
    assert meta.study_id.astype(str).str.fullmatch(r"5\d{7}").all()
    assert (
        meta.dicom_id.str.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}").all()
        and meta.dicom_id.is_unique
    )
    assert labs.labevent_id.is_unique and (labs.labevent_id.diff().dropna() == 1).all()
    stamp = r"2(1[1-9]\d|200)-\d\d-\d\d \d\d:\d\d:\d\d"
    for frame, cols in (
        (adm, ["admittime", "dischtime", "edregtime"]),
        (ecg, ["ecg_time"]),
        (labs, ["charttime", "storetime"]),
    ):
        for col in cols:
            assert frame[col].dropna().str.fullmatch(stamp).all(), col
    assert meta.StudyDate.astype(str).str.fullmatch(r"2(1[1-9]\d|200)\d{4}").all()
    assert meta.StudyTime.map(lambda v: 0 <= v < 240000).all()
    itemids = set(_read(root, "mimic-iv/hosp/d_labitems.csv.gz").itemid)
    assert set(labs.itemid) <= itemids and set(SYMILE_LABS) <= set(labs.itemid)
    assert set(labs.itemid) - set(SYMILE_LABS), "labs outside the 50 must also appear"


def test_wfdb_records_round_trip(run):
    import wfdb

    root, _ = run
    ecg = _read(root, "mimic-iv-ecg/record_list.csv")
    kinds = {"nan": 0, "zero": 0, "ok": 0}
    for row in ecg.itertuples():
        rec = wfdb.rdrecord(str(root / "mimic-iv-ecg" / row.path))
        assert (
            rec.fs == 500 and rec.sig_len == 5000 and rec.p_signal.shape == (5000, 12)
        )
        assert (
            rec.sig_name == list(LEADS)
            and rec.adc_gain == [200.0] * 12
            and rec.fmt == ["16"] * 12
        )
        assert rec.comments == [f"<subject_id>: {row.subject_id}"]
        sig = rec.p_signal
        kinds[
            "nan" if np.isnan(sig).any() else "zero" if np.all(sig == 0) else "ok"
        ] += 1
        if kinds["ok"] == 1 and not np.isnan(sig).any() and sig.any():
            assert 0.2 < np.ptp(sig[:, 1]) < 8.0  # lead II in a plausible mV range
    assert min(kinds.values()) >= 1
    header = (root / "mimic-iv-ecg" / f"{ecg.path[0]}.hea").read_text().splitlines()
    assert re.fullmatch(r"\d{8} 12 500 5000 \d\d:\d\d:\d\d \d\d/\d\d/\d{4}", header[0])
    if REAL_ECG_HEADER.exists():  # same field layout as a real MIMIC-IV-ECG header
        real = REAL_ECG_HEADER.read_text().splitlines()
        assert [len(line.split()) for line in header] == [
            len(line.split()) for line in real
        ]
        assert header[-1].split(":")[0] == real[-1].split(":")[0]


def test_wfdb_writer_matches_wfdb_wrsamp_bytes(tmp_path):
    import datetime as dt

    import wfdb

    from gated_symile.synthetic.mimic.ecg_waveform import (
        digitize,
        synthesize_ecg,
        write_wfdb,
    )

    when = dt.datetime(2180, 7, 23, 8, 44, 0)
    for kind in ("ok", "nan_partial", "zero"):
        rng = np.random.default_rng(7)
        digital = digitize(synthesize_ecg(rng, 0.5, 1), kind, rng)
        write_wfdb(tmp_path / "ours", 40689238, 10000032, when, digital)
        (tmp_path / "wfdb").mkdir(exist_ok=True)
        wfdb.wrsamp(
            record_name="40689238", fs=500, units=["mV"] * 12, sig_name=list(LEADS), d_signal=digital,
            fmt=["16"] * 12, adc_gain=[200.0] * 12, baseline=[0] * 12, base_time=when.time(),
            base_date=when.date(), comments=["<subject_id>: 10000032"], write_dir=str(tmp_path / "wfdb"),
        )  # fmt: skip
        for ext in ("hea", "dat"):
            ours = (tmp_path / "ours" / f"40689238.{ext}").read_bytes()
            assert ours == (tmp_path / "wfdb" / f"40689238.{ext}").read_bytes(), (
                kind,
                ext,
            )


def test_dicoms_decode_with_both_photometrics(run):
    import pydicom

    root, summary = run
    records = _read(root, "mimic-cxr/cxr-record-list.csv.gz")
    photometric = []
    for path in records.path:
        ds = pydicom.dcmread(root / "mimic-cxr" / path)
        pixels = ds.pixel_array
        assert (
            pixels.shape == (64, 64)
            and pixels.dtype == np.uint16
            and pixels.max() <= 4095
        )
        assert (
            ds.Modality == "DX"
            and ds.BitsStored == 12
            and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
        )
        photometric.append(ds.PhotometricInterpretation)
    assert (
        photometric.count("MONOCHROME1") == summary["branches"]["cxr_monochrome1"] >= 1
    )
    assert "MONOCHROME2" in photometric


def test_jpgs_present_except_injected_missing(run):
    from PIL import Image

    root, summary = run
    meta = _read(root, "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz")
    path = (
        "files/p"
        + meta.subject_id.astype(str).str[:2]
        + "/p"
        + meta.subject_id.astype(str)
        + "/s"
        + meta.study_id.astype(str)
        + "/"
        + meta.dicom_id
        + ".jpg"
    )
    exists = path.map(lambda p: (root / "mimic-cxr-jpg" / p).exists())
    b = summary["branches"]
    assert (~exists).sum() == b["cxr_missing_jpg"] + b["cxr_main_missing_jpg"] >= 2
    image = np.asarray(Image.open(root / "mimic-cxr-jpg" / path[exists].iloc[0]))
    assert image.dtype == np.uint8 and image.shape == (64, 64)


# ---------------------------------------------------------------- cohort branches


def _hours(series: pd.Series, anchor: pd.Series) -> pd.Series:
    return (series - anchor) / pd.Timedelta(hours=1)


def _reference_cohort(root: Path) -> pd.DataFrame:
    """docs/data.md §4 applied the way the reference script reads the files (a test oracle)."""
    import wfdb

    hosp = root / "mimic-iv" / "hosp"
    adm = pd.read_csv(hosp / "admissions.csv.gz").merge(
        pd.read_csv(hosp / "patients.csv.gz"), on="subject_id", how="left"
    )
    adm = adm.drop(
        columns=[
            "admit_provider_id",
            "insurance",
            "language",
            "marital_status",
            "edregtime",
            "edouttime",
            "anchor_year_group",
        ]
    )
    adm["admittime"] = pd.to_datetime(adm.admittime)
    cxr = pd.read_csv(root / "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz")
    chex = pd.read_csv(root / "mimic-cxr-jpg/mimic-cxr-2.0.0-chexpert.csv.gz")
    cxr["t"] = pd.to_datetime(
        cxr.StudyDate.astype(str)
        + " "
        + cxr.StudyTime.astype(int).astype(str).str.zfill(6),
        format="%Y%m%d %H%M%S",
    )
    cxr = cxr.drop(
        columns=[
            "ProcedureCodeSequence_CodeMeaning",
            "PatientOrientationCodeSequence_CodeMeaning",
        ]
    )
    cxr = cxr[cxr.ViewPosition.isin(["AP", "PA"])]
    sid = cxr.subject_id.astype(str)
    cxr["jpg"] = (
        "files/p"
        + sid.str[:2]
        + "/p"
        + sid
        + "/s"
        + cxr.study_id.astype(str)
        + "/"
        + cxr.dicom_id
        + ".jpg"
    )
    cxr = cxr[cxr.jpg.map(lambda p: (root / "mimic-cxr-jpg" / p).exists())]
    ecg = pd.read_csv(root / "mimic-iv-ecg/record_list.csv")
    ecg["t"] = pd.to_datetime(ecg.ecg_time)
    bad = ecg.path.map(
        lambda p: (lambda s: np.isnan(s).any() or np.all(s == 0))(
            wfdb.rdrecord(str(root / "mimic-iv-ecg" / p)).p_signal
        )
    )
    ecg = ecg[~bad]
    labs = pd.read_csv(hosp / "labevents.csv.gz")
    labs = labs[labs.itemid.isin(SYMILE_LABS) & labs.valuenum.notna()].copy()
    labs["t"] = pd.to_datetime(labs.charttime)

    def first(events, lo, hi, lo_open):
        m = adm[["subject_id", "hadm_id", "admittime"]].merge(events, on="subject_id")
        h = _hours(m.t, m.admittime)
        m = m[((h > lo) if lo_open else (h >= lo)) & (h <= hi)]
        return m.sort_values("t", kind="stable").groupby("hadm_id", sort=False).head(1)

    c = first(cxr, 24, 72, True).merge(chex[["study_id"]], on="study_id")
    e = first(ecg, -24, 24, False)
    lab = adm[["subject_id", "hadm_id", "admittime"]].merge(
        labs.drop(columns="hadm_id"), on="subject_id"
    )
    h = _hours(lab.t, lab.admittime)
    lab = lab[(h >= -24) & (h <= 24)]
    return adm[adm.hadm_id.isin(set(c.hadm_id) & set(e.hadm_id) & set(lab.hadm_id))]


def test_every_branch_is_present_and_most_admissions_survive(run):
    root, summary = run
    expected = [
        "subjects_with_several_admissions", "readmissions_2_20h", "ecg_before_window", "ecg_after_window",
        "ecg_bound_24h", "ecg_none_in_window", "ecg_nan_partial", "ecg_nan_all", "ecg_all_zero",
        "ecg_time_tie", "cxr_none_in_window", "cxr_bound_72h", "cxr_at_24h", "cxr_no_chexpert",
        "cxr_main_missing_jpg", "cxr_missing_jpg", "cxr_ap_pa_tie", "cxr_with_lateral", "cxr_before_24h",
        "cxr_after_72h", "cxr_lateral_only", "cxr_blank_view", "cxr_odd_view", "cxr_monochrome1",
        "labs_null_hadm_admission_panels", "labs_before_window", "labs_text_without_valuenum",
        "labs_at_minus_24h", "labs_at_plus_24h", "labs_none_in_window", "labs_text_only_in_window",
        "labs_from_adjacent_admission",
    ]  # fmt: skip
    assert {
        k: summary["branches"].get(k, 0)
        for k in expected
        if summary["branches"].get(k, 0) < 1
    } == {}
    assert not [
        k
        for k in summary["branches"]
        if k.startswith("fault") and summary["branches"][k]
    ]

    adm = _read(root, "mimic-iv/hosp/admissions.csv.gz")
    adm["admittime"] = pd.to_datetime(adm.admittime)
    ecg = _read(root, "mimic-iv-ecg/record_list.csv").merge(
        adm[["subject_id", "hadm_id", "admittime"]], on="subject_id"
    )
    h = _hours(pd.to_datetime(ecg.ecg_time), ecg.admittime)
    assert (h < -24).any() and (h > 24).any() and (h == -24).any() and (h == 24).any()
    assert ecg.duplicated(["subject_id", "ecg_time"]).any()  # ties on ecg_time
    meta = _read(root, "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz")
    views = meta.groupby("study_id").ViewPosition.agg(lambda v: set(v.dropna()))
    assert (
        views.map(lambda v: {"AP", "PA"} <= v).any() and meta.ViewPosition.isna().any()
    )
    assert meta.ViewPosition.isin(["LATERAL", "LL"]).any()
    chex = _read(root, "mimic-cxr-jpg/mimic-cxr-2.0.0-chexpert.csv.gz")
    assert not set(meta.study_id) <= set(chex.study_id)
    t = pd.to_datetime(
        meta.StudyDate.astype(str)
        + " "
        + meta.StudyTime.astype(int).astype(str).str.zfill(6),
        format="%Y%m%d %H%M%S",
    )
    m = meta.assign(t=t).merge(adm[["subject_id", "admittime"]], on="subject_id")
    hc = _hours(m.t, m.admittime)
    assert (hc < 24).any() and (hc == 24).any() and (hc == 72).any() and (hc > 72).any()
    labs = _read(root, "mimic-iv/hosp/labevents.csv.gz")
    in50 = labs.itemid.isin(SYMILE_LABS)
    assert (
        in50 & labs.valuenum.isna() & labs.value.notna()
    ).any() and labs.hadm_id.isna().any()
    assert labs.comments.dropna().str.contains("\n").any()
    lw = labs.merge(
        adm[["subject_id", "hadm_id", "admittime"]],
        on="subject_id",
        suffixes=("", "_adm"),
    )
    hl = _hours(pd.to_datetime(lw.charttime), lw.admittime)
    inside = (hl >= -24) & (hl <= 24)
    assert (
        (hl < -24).any() and (hl > 24).any() and (hl == -24).any() and (hl == 24).any()
    )
    assert (
        inside & lw.hadm_id.notna() & (lw.hadm_id != lw.hadm_id_adm)
    ).any()  # adjacent admission

    cohort = _reference_cohort(root)
    assert 0.35 <= len(cohort) / len(adm) <= 0.85


def test_latent_structure_follows_signal_strength():
    rng = np.random.default_rng(0)
    strong, none = draw_latents(rng, 20000, 1.0), draw_latents(rng, 20000, 0.0)
    corr = lambda a, b: float(np.corrcoef(a, b)[0, 1])  # noqa: E731
    assert (
        corr(strong.h_ecg, strong.h_cxr) > 0.7
        and corr(strong.f_lab, strong.f_cxr) > 0.7
    )
    xnor = (strong.a_ecg == strong.b_lab).astype(int)
    assert np.mean(xnor == strong.c_cxr) > 0.85
    assert (
        abs(corr(strong.c_cxr, strong.a_ecg)) < 0.03
        and abs(corr(strong.c_cxr, strong.b_lab)) < 0.03
    )
    assert (
        abs(corr(none.h_ecg, none.h_cxr)) < 0.03
        and abs(np.mean((none.a_ecg == none.b_lab) == none.c_cxr) - 0.5) < 0.02
    )


# ---------------------------------------------------------------- determinism, faults, scale


def test_same_seed_same_bytes_for_any_worker_count(run, tmp_path):
    root, _ = run
    generate_mimic(tmp_path / "w2", _config(workers=2))
    assert _tree_digest(tmp_path / "w2") == _tree_digest(root)


def test_faults_only_with_the_flag(run, faults_run):
    import wfdb

    from gated_symile.errors import RecordError
    from gated_symile.records.dicom_cxr import read_dicom_image

    root, summary = faults_run
    b = summary["branches"]
    assert (
        b["fault_ecg_missing"] >= 1
        and b["fault_ecg_truncated"] >= 1
        and b["fault_dicom_corrupt"] >= 1
    )
    ecg = _read(root, "mimic-iv-ecg/record_list.csv")
    missing = [p for p in ecg.path if not (root / "mimic-iv-ecg" / f"{p}.hea").exists()]
    assert len(missing) == b["fault_ecg_missing"]
    broken = 0
    for p in ecg.path:
        if p in missing:
            continue
        try:
            wfdb.rdrecord(str(root / "mimic-iv-ecg" / p))
        except Exception:
            broken += 1
    assert broken == b["fault_ecg_truncated"]
    bad = 0
    for p in _read(root, "mimic-cxr/cxr-record-list.csv.gz").path:
        try:
            read_dicom_image(root / "mimic-cxr" / p)
        except RecordError:
            bad += 1
    assert bad == b["fault_dicom_corrupt"]
    default_root, _ = (
        run  # without --faults every listed record exists (decoding checked above)
    )
    assert all(
        (default_root / "mimic-iv-ecg" / f"{p}.dat").exists()
        for p in _read(default_root, "mimic-iv-ecg/record_list.csv").path
    )


def test_scale_path_writes_tables_only(tmp_path):
    summary = generate_mimic(
        tmp_path, _config(admissions=200, scale=True, labs_per_admission=150)
    )
    assert set(summary["files"].values()) == {0}
    assert not [
        p for p in tmp_path.rglob("*") if p.suffix in (".dat", ".hea", ".dcm", ".jpg")
    ]
    for name in HEADERS:
        assert (tmp_path / name).exists(), name
    assert 0.7 * 200 * 150 < summary["rows"]["labevents"] < 1.3 * 200 * 150
