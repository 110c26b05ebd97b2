"""Non-finite lab values (``inf``, ``-inf``, ``1e999``, ``NaN``) are missing values, and counted.

They used to pass the NaN-only filter and become observed, extreme values: the earliest value of
the window even when a finite one followed, then the top (or bottom) training percentile.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from gated_symile.data.mimic.cohort import MimicCohortConfig, build_mimic_cohort
from gated_symile.data.mimic.lab_percentiles import apply_lab_ecdf, fit_lab_ecdf
from tests.mimic_raw_fixtures import LABEVENTS_HEADER, RawWorld
from tests.test_cohort_rules import T0, H, complete, hid, sid

VALUENUM = LABEVENTS_HEADER.index("valuenum")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("non_finite")
    w = RawWorld()
    complete(w, 1)  # lab 51221 = 1.0 at T0 + 1 h
    w.add_lab(sid(1), 50912, T0 - 2 * H, float("inf"))  # earliest of the window ...
    w.add_lab(sid(1), 50912, T0 + 2 * H, 1.5)  # ... so without the fix this one is not chosen
    w.add_lab(sid(1), 50971, T0, 0.0)
    w.labs[-1][VALUENUM] = "1e999"  # the only value of this lab: overflows to inf
    w.add_lab(sid(1), 50983, T0, float("-inf"))
    w.add_lab(sid(1), 50960, T0 + 40 * H, float("inf"))  # outside every window: irrelevant
    complete(w, 2, lab=False)
    w.add_lab(sid(2), 51221, T0 + H, float("inf"))  # the admission's only lab value
    complete(w, 3, cxr=False)  # excluded before the labs criterion: its labs are never selected
    w.add_lab(sid(3), 50912, T0 + H, float("inf"))
    paths = w.write(root / "raw")
    out = root / "out"
    build_mimic_cohort(MimicCohortConfig(**paths, out=out))
    return {
        "cohort": pd.read_parquet(out / "cohort.parquet").set_index("hadm_id"),
        "exclusions": pd.read_parquet(out / "exclusions.parquet"),
        "summary": json.loads((out / "summary.json").read_text()),
    }


def test_a_non_finite_value_is_never_selected(built):
    row = built["cohort"].loc[hid(1)]
    assert row["51221"] == 1.0
    assert row["50912"] == 1.5  # the finite later value, not the earlier inf
    assert math.isnan(row["50971"]) and math.isnan(row["50983"])  # 1e999 and -inf: missing
    assert np.isfinite(built["cohort"].filter(regex=r"^\d+$").fillna(0).to_numpy()).all()


def test_an_admission_whose_only_lab_value_is_non_finite_has_no_lab(built):
    ex = built["exclusions"]
    (reason,) = ex[(ex.level == "admission") & (ex.hadm_id == hid(2))].reason
    assert reason == "no lab value within [-24 h, +24 h]"


def test_each_non_finite_value_in_a_window_is_in_the_exclusions_table(built):
    ex = built["exclusions"]
    values = ex[ex.level == "lab_value"].reset_index(drop=True)
    assert values.reason.tolist() == [
        "non-finite valuenum inf of itemid 50912 treated as missing",
        "non-finite valuenum inf of itemid 50971 treated as missing",
        "non-finite valuenum -inf of itemid 50983 treated as missing",
        "non-finite valuenum inf of itemid 51221 treated as missing",
    ]
    assert values.id.tolist() == [f"labevents.csv.gz row {n}" for n in (2, 4, 5, 7)]
    assert values.hadm_id.tolist() == [hid(1)] * 3 + [hid(2)]
    assert values.subject_id.tolist() == [sid(1)] * 3 + [sid(2)]
    assert set(values.stage) == {"labs_select"}
    assert built["summary"]["quarantined_records"]["lab_value"] == 4


def test_labs_of_an_admission_excluded_earlier_are_not_selected(built):
    """Labs are the rule's last criterion: an admission without a CXR never has its labs
    matched, so its non-finite value is neither selected nor listed as treated as missing."""
    ex = built["exclusions"]
    assert (ex.subject_id[ex.level == "lab_value"] != sid(3)).all()
    reason = ex.reason[(ex.level == "admission") & (ex.subject_id == sid(3))]
    assert list(reason) == ["no AP/PA CXR within (24 h, 72 h]"]


def test_percentiles_treat_non_finite_values_as_missing():
    train = pd.DataFrame({"1": [1.0, 2.0, np.inf, 3.0, np.nan, -np.inf]})
    ecdf = fit_lab_ecdf(train, ["1"])
    np.testing.assert_array_equal(ecdf.sorted_values[0], [1.0, 2.0, 3.0])
    out = apply_lab_ecdf(pd.DataFrame({"1": [np.inf, 2.0, -np.inf, np.nan]}), ecdf)
    assert out["1_mask"].tolist() == [0, 1, 0, 0]
    mean = ecdf.means[0]
    np.testing.assert_allclose(out["1_percentile"], [mean, 2 / 3, mean, mean], rtol=1e-6)
