"""The synthetic MIMIC generator at scale: ECGs listed outside every admission window (as in the
real release) and the cohort on such a release, against the check-everything oracle."""

from __future__ import annotations

import pandas as pd

from gated_symile.data.mimic.cohort import MimicCohortConfig, build_mimic_cohort
from gated_symile.synthetic.mimic import MimicSynthConfig, generate_mimic
from tests.test_cohort_selective import check_everything


def test_outside_mode_lists_ecgs_outside_every_window_and_the_cohort_never_opens_them(tmp_path):
    raw = tmp_path / "raw"
    config = MimicSynthConfig(admissions=40, seed=5, image_size=32, faults=True, ecg_outside_per_admission=2.0)
    summary = generate_mimic(raw, config)
    n_outside = summary["branches"]["ecg_outside_any_window"]
    assert 40 < n_outside < 130

    adm = pd.read_csv(raw / "mimic-iv/hosp/admissions.csv.gz", parse_dates=["admittime"])
    ecg = pd.read_csv(raw / "mimic-iv-ecg/record_list.csv", parse_dates=["ecg_time"])
    pairs = ecg.reset_index().merge(adm[["subject_id", "admittime"]], on="subject_id")
    near = (pairs.ecg_time - pairs.admittime).abs() <= pd.Timedelta(hours=24)
    in_some_window = set(pairs[near]["index"])
    assert len(ecg) - len(in_some_window) >= n_outside  # every one of them is outside all windows
    assert all((raw / "mimic-iv-ecg" / f"{p}.hea").is_file() for p in ecg.path.sample(10, random_state=0))

    paths = {"mimic_iv": raw / "mimic-iv", "ecg": raw / "mimic-iv-ecg", "cxr": raw / "mimic-cxr-jpg"}
    result = build_mimic_cohort(MimicCohortConfig(**paths, out=tmp_path / "out"))
    assert result["records_opened"]["ecg_records"] <= len(in_some_window) < len(ecg)
    status = pd.read_parquet(tmp_path / "out" / "exclusions.parquet")
    # the ECG criterion comes after the CXR's: only admissions not excluded before it read ECGs
    before_ecg = status[status.stage.isin(["admissions", "cxr_select"])].hadm_id
    chosen, read = check_everything(paths, reach_ecg=set(adm.hadm_id) - set(before_ecg))
    cohort = pd.read_parquet(tmp_path / "out" / "cohort.parquet").set_index("hadm_id")
    assert 0 < len(cohort) and cohort.ecg_study_id.to_dict() == chosen.study_id[cohort.index].to_dict()
    no_ecg = set(status[status.stage == "ecg_select"].hadm_id)
    assert no_ecg and not no_ecg & set(chosen.index)
    opened = status[status.level == "ecg_record"]
    assert sorted(opened.reason) == sorted(read.dropna())
