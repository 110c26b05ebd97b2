"""splits stage: reference split semantics, overlap dropping, scaling, candidates, lab ECDF."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gated_symile.data.mimic.lab_percentiles import (
    NO_TRAIN_PERCENTILE,
    apply_lab_ecdf,
    fit_lab_ecdf,
)
from gated_symile.data.mimic.splits import SplitConfig, draw_candidates, split_cohort


def _subjects(n_admissions: int, seed: int = 0) -> np.ndarray:
    """Sorted subject ids with 1-3 admissions each (≈ 1.3 on average, like Symile-MIMIC's 1.2),
    so overlap dropping has work to do."""
    rng = np.random.default_rng(seed)
    per_subject = rng.choice([1, 2, 3], p=[0.75, 0.2, 0.05], size=n_admissions)
    subjects = np.repeat(10_000_000 + np.arange(n_admissions), per_subject)[:n_admissions]
    return subjects.astype(np.int64)


def _reference_split(subjects: np.ndarray, train_n: int, val_n: int, seed: int):
    """The upstream algorithm written literally on a DataFrame (create_dataset_splits.py)."""
    from sklearn.model_selection import train_test_split

    df = pd.DataFrame({"subject_id": subjects, "row": np.arange(subjects.size)})
    train, rest = train_test_split(df, train_size=train_n, shuffle=True, random_state=seed)
    rest = rest[~rest["subject_id"].isin(train["subject_id"])]
    val, test = train_test_split(rest, train_size=val_n, shuffle=True, random_state=seed)
    test = test[~test["subject_id"].isin(val["subject_id"])]
    return train["row"].to_numpy(), val["row"].to_numpy(), test["row"].to_numpy()


@pytest.mark.parametrize("seed", [0, 7])
def test_split_matches_reference_algorithm_and_is_disjoint(seed):
    subjects = _subjects(300, seed)
    result = split_cohort(subjects, SplitConfig(seed=seed, train_n=180, val_n=50, candidate_n=10))
    train, val, test = _reference_split(subjects, 180, 50, seed)
    np.testing.assert_array_equal(result.train, train)
    np.testing.assert_array_equal(result.val, val)
    np.testing.assert_array_equal(result.test, test)
    assert not (result.scaled_train or result.scaled_val)
    assert result.train.size == 180 and result.val.size == 50
    groups = [set(subjects[r]) for r in (result.train, result.val, result.test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert result.dropped_rest > 0  # multi-admission patients straddle the first cut
    total = result.train.size + result.val.size + result.test.size
    assert total + result.dropped_rest + result.dropped_test == subjects.size


def test_overlap_dropping_counts_on_a_hand_example():
    # every patient has two admissions: a rest row whose sibling went to train must be dropped
    subjects = np.repeat(np.arange(20, dtype=np.int64), 2)
    result = split_cohort(subjects, SplitConfig(seed=3, train_n=10, val_n=6, candidate_n=2))
    train_subjects = set(subjects[result.train].tolist())
    not_train = np.setdiff1d(np.arange(40), result.train)
    expected_rest_drop = sum(int(subjects[i]) in train_subjects for i in not_train)
    assert result.dropped_rest == expected_rest_drop > 0
    val_subjects = set(subjects[result.val].tolist())
    assert not val_subjects & train_subjects
    assert not set(subjects[result.test].tolist()) & (train_subjects | val_subjects)
    kept = result.train.size + result.val.size + result.test.size
    assert kept + result.dropped_rest + result.dropped_test == 40


def test_small_cohort_scales_to_fractions():
    subjects = np.arange(40, dtype=np.int64)  # one admission per patient: nothing dropped
    result = split_cohort(subjects, SplitConfig(seed=0, train_n=10000, val_n=750, candidate_n=10))
    assert result.scaled_train and result.scaled_val
    assert result.effective_train_n == 28  # floor(0.70 * 40)
    assert result.effective_val_n == 6  # floor(12 / 2)
    assert (result.train.size, result.val.size, result.test.size) == (28, 6, 6)


def test_cohort_that_fits_keeps_requested_sizes_but_val_scales_when_rest_is_short():
    subjects = _subjects(200, 1)
    result = split_cohort(subjects, SplitConfig(seed=0, train_n=150, val_n=40, candidate_n=10))
    assert not result.scaled_train and result.effective_train_n == 150
    rest = 200 - 150 - result.dropped_rest
    if rest >= 50:
        assert not result.scaled_val and result.effective_val_n == 40
    else:
        assert result.scaled_val and result.effective_val_n == rest // 2


def test_too_small_cohort_is_a_clear_error():
    from gated_symile.errors import RecordError

    with pytest.raises(RecordError, match="at least 3"):
        split_cohort(np.array([1, 2]), SplitConfig(), source="c.parquet")
    with pytest.raises(RecordError, match="too few for val and test"):
        split_cohort(np.array([1, 1, 1, 1]), SplitConfig(), source="c.parquet")


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_candidate_matrix_properties(n, k, seed):
    k = min(k, n)
    first = draw_candidates(n, k, np.random.default_rng(seed))
    assert first.shape == (n, k) and first.dtype == np.int64
    np.testing.assert_array_equal(first[:, 0], np.arange(n))  # positive first
    assert ((first >= 0) & (first < n)).all()  # rows of the same split
    assert all(len(set(row)) == k for row in first)  # no duplicates, query not among negatives
    np.testing.assert_array_equal(first, draw_candidates(n, k, np.random.default_rng(seed)))


def test_candidates_equal_choice_over_the_other_rows():
    """The index-shift trick is exactly rng.choice(<rows except i>) in query order."""
    n, k = 25, 10
    got = draw_candidates(n, k, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    for i in range(n):
        expected = rng.choice(np.delete(np.arange(n), i), size=k - 1, replace=False)
        np.testing.assert_array_equal(got[i, 1:], expected)


def test_ecdf_hand_example_with_ties_and_out_of_range_values():
    train = pd.DataFrame({"1": [1.0, 2.0, 2.0, 3.0, np.nan], "2": [np.nan] * 5})
    ecdf = fit_lab_ecdf(train, [1, 2])
    queries = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 10.0, np.nan])
    got = ecdf.percentiles(0, queries)
    np.testing.assert_array_equal(got[:-1], [0.0, 0.25, 0.25, 0.75, 0.75, 1.0, 1.0])
    assert np.isnan(got[-1])
    assert ecdf.means[0] == pytest.approx((0.25 + 0.75 + 0.75 + 1.0) / 4)
    assert ecdf.labs_without_train_observations() == ["2"]
    assert ecdf.means[1] == NO_TRAIN_PERCENTILE


def test_missing_lab_gets_train_mean_and_mask_zero():
    train = pd.DataFrame({"1": [1.0, 2.0, 2.0, 3.0], "2": [np.nan] * 4})
    ecdf = fit_lab_ecdf(train, ["1", "2"])
    other = pd.DataFrame({"1": [np.nan, 2.0, -5.0], "2": [7.0, np.nan, np.nan]})
    out = apply_lab_ecdf(other, ecdf)
    assert list(out.columns[2:]) == ["1_percentile", "2_percentile", "1_mask", "2_mask"]
    assert out["1_percentile"].dtype == np.float32
    np.testing.assert_array_equal(out["1_percentile"], np.float32([0.6875, 0.75, 0.0]))
    np.testing.assert_array_equal(out["1_mask"], [0, 1, 1])
    # a lab never observed in train: 0.5 for everyone, the mask still tells what was observed
    np.testing.assert_array_equal(out["2_percentile"], np.float32([0.5, 0.5, 0.5]))
    np.testing.assert_array_equal(out["2_mask"], [1, 0, 0])


# ---------------------------------------------------------------- the CLI stage


def _cohort_frame(n_admissions: int, seed: int = 0) -> pd.DataFrame:
    from gated_symile.data.mimic.labs import LAB_COLUMNS

    rng = np.random.default_rng(seed)
    subjects = _subjects(n_admissions, seed)
    frame = pd.DataFrame(
        {
            "subject_id": subjects,
            "hadm_id": 20_000_000 + np.arange(n_admissions, dtype=np.int64),
            "cxr_path": [f"files/p10/x{i}.jpg" for i in range(n_admissions)],
            "ecg_path": [f"files/p1000/x{i}" for i in range(n_admissions)],
            "Cardiomegaly": rng.choice([1.0, 0.0, -1.0, np.nan], size=n_admissions),
        }
    )
    labs = rng.normal(size=(n_admissions, len(LAB_COLUMNS))).round(1)  # rounding makes ties
    labs[rng.random(labs.shape) < 0.3] = np.nan
    labs_frame = pd.DataFrame(labs, columns=[str(i) for i in LAB_COLUMNS])
    return pd.concat([frame, labs_frame], axis=1)


def _run_splits(cohort_path, out, *extra):
    from gated_symile.cli import main

    return main(
        ["splits", "mimic", "--cohort", str(cohort_path), "--out", str(out), "--seed", "0"]
        + list(extra)
    )


def test_stage_writes_deterministic_outputs(tmp_path):
    from gated_symile.data.mimic.labs import LAB_COLUMNS

    cohort_path = tmp_path / "cohort.parquet"
    _cohort_frame(120).to_parquet(cohort_path, index=False)
    args = ["--train-n", "70", "--val-n", "20", "--candidate-n", "10"]
    assert _run_splits(cohort_path, tmp_path / "a", *args) == 0
    assert _run_splits(cohort_path, tmp_path / "b", *args) == 0
    from gated_symile.provenance.hashing import is_manifest

    names = sorted(p.name for p in (tmp_path / "a").iterdir() if not is_manifest(p))
    assert names == sorted(
        [
            "train.parquet",
            "val.parquet",
            "test.parquet",
            "candidates_val.npy",
            "candidates_test.npy",
            "labs_means.json",
            "lab_ecdf.parquet",
            "metadata.json",
        ]
    )
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    meta = json.loads((tmp_path / "a" / "metadata.json").read_text())
    assert meta["requested"] == {"train_n": 70, "val_n": 20, "candidate_n": 10}
    assert meta["effective"]["train_n"] == 70
    sizes = {k: v["admissions"] for k, v in meta["splits"].items()}
    dropped = meta["dropped_patient_overlap"]
    assert sum(sizes.values()) + dropped["rest_after_train"] + dropped["test_after_val"] == 120
    assert meta["lab_itemids"] == [str(i) for i in sorted(LAB_COLUMNS)]

    train = pd.read_parquet(tmp_path / "a" / "train.parquet")
    val = pd.read_parquet(tmp_path / "a" / "val.parquet")
    assert len(train) == 70
    itemid = LAB_COLUMNS[0]
    assert train[f"{itemid}_percentile"].dtype == np.float32
    observed = train[f"{itemid}_mask"] == 1
    assert (train.loc[observed, f"{itemid}_percentile"] > 0).all()  # train values rank >= 1/n
    means = json.loads((tmp_path / "a" / "labs_means.json").read_text())
    assert list(means) == sorted(means)
    missing = val[f"{itemid}_mask"] == 0
    np.testing.assert_allclose(val.loc[missing, f"{itemid}_percentile"], means[itemid], rtol=1e-6)

    ecdf = pd.read_parquet(tmp_path / "a" / "lab_ecdf.parquet")
    lab0 = ecdf[ecdf["itemid"] == itemid]["value"].to_numpy()
    np.testing.assert_array_equal(lab0, np.sort(train.loc[observed, itemid].to_numpy()))

    for name in ("val", "test"):
        cands = np.load(tmp_path / "a" / f"candidates_{name}.npy")
        split = pd.read_parquet(tmp_path / "a" / f"{name}.parquet")
        assert cands.shape == (len(split), min(10, len(split)))
        np.testing.assert_array_equal(cands[:, 0], np.arange(len(split)))


def test_stage_rejects_unsorted_cohort(tmp_path, capsys):
    cohort_path = tmp_path / "cohort.parquet"
    _cohort_frame(30).iloc[::-1].to_parquet(cohort_path, index=False)
    assert _run_splits(cohort_path, tmp_path / "out") == 2
    assert "not sorted" in capsys.readouterr().err
