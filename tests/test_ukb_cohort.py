"""UK-Biobank-style cohort, EHR featuriser, folds and tensors (docs/data.md §9.3, docs/method.md §9)."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gated_symile.data.datasets import load_tensor_dataset
from gated_symile.errors import ConfigError, RecordError
from gated_symile.provenance.hashing import is_manifest
from gated_symile.synthetic.ukb import UkbSynthConfig, generate_ukb
from gated_symile.data.ukb.cohort import UkbCohortConfig, build_ukb_cohort
from gated_symile.data.ukb.ehr import (
    FEATURIZERS,
    CodeBagFeaturizer,
    EhrConfig,
    baseline_codes,
    make_featurizer,
    register_featurizer,
)
from gated_symile.data.ukb.folds import assign_folds, make_splits, split_roles
from gated_symile.data.ukb.tensors import UkbTensorConfig, build_ukb_tensors, zscore_fit

EHR = EhrConfig(min_count=3)


# ------------------------------------------------------------------ baseline filter and featuriser
def hes_frames():
    hesin = pl.DataFrame(
        {
            "eid": [1, 1, 1, 2, 2, 3],
            "ins_index": [0, 1, 2, 0, 1, 0],
            "episode_date": [date(2005, 1, 1), date(2008, 6, 1), date(2012, 1, 1),
                             date(2008, 6, 2), None, date(2001, 1, 1)],
        }  # fmt: skip
    )
    diag = pl.DataFrame(
        {
            "eid": [1, 1, 1, 1, 2, 2, 3, 4, 1],
            "ins_index": [0, 0, 1, 2, 0, 1, 0, 0, 9],
            "arr_index": [0, 1, 0, 0, 0, 0, 0, 0, 0],
            "diag_icd10": ["E119", "I10", "E110", "J45", "K21", "M54", None, "I10", "C50"],
        }
    )
    baseline = pl.DataFrame(
        {"eid": [1, 2, 3], "baseline_date": [date(2008, 6, 1), date(2008, 6, 1), date(2009, 1, 1)]}
    )
    return hesin, diag, baseline


def test_baseline_codes_keep_only_episodes_on_or_before_baseline():
    codes, counts, quarantine = baseline_codes(*hes_frames())
    assert codes.rows() == [
        (1, "E11"),
        (1, "I10"),
    ]  # E119 and E110 merge; J45 (2012) and K21 (after) dropped
    assert counts == {
        "diag_rows": 9, "used": 3, "after baseline": 2, "no ICD-10 code": 1,
        "episode has no epistart or admidate": 1, "participant not in main dataset": 1,
        "diagnosis without hesin episode": 1,
    }  # fmt: skip
    assert sum(v for k, v in counts.items() if k != "diag_rows") == counts["diag_rows"]
    assert sorted(quarantine["id"].to_list()) == ["1:9:0", "2:1:0"]


def codes_table() -> pl.DataFrame:
    rows = [(e, "A01") for e in range(1, 9)] + [(e, "B02") for e in range(1, 5)]
    rows += [(e, "C03") for e in (1, 2)] + [(e, "Z99") for e in range(20, 30)]  # Z99: test only
    return pl.DataFrame(rows, schema={"eid": pl.Int64, "code": pl.String}, orient="row")


def test_vocabulary_is_fitted_on_training_participants_only():
    train = np.arange(1, 11)
    bag = CodeBagFeaturizer(EhrConfig(min_count=3)).fit(codes_table(), train)
    assert bag.vocabulary == [
        "A01",
        "B02",
    ]  # Z99 frequent but never in training; C03 below min_count
    x = bag.transform(codes_table(), np.array([25, 1, 9, 100]))
    np.testing.assert_array_equal(x, [[0, 0], [1, 1], [0, 0], [0, 0]])
    capped = CodeBagFeaturizer(EhrConfig(min_count=1, max_codes=2)).fit(codes_table(), train)
    assert capped.vocabulary == ["A01", "B02"]
    with pytest.raises(ConfigError, match="vocabulary is empty"):
        CodeBagFeaturizer(EhrConfig(min_count=50)).fit(codes_table(), train)


def test_tfidf_svd_is_deterministic_with_sign_convention_and_zero_rows():
    rng = np.random.default_rng(0)
    rows = {
        (int(e), f"K{int(c):02d}")
        for e, c in zip(rng.integers(0, 200, 1500), rng.integers(0, 30, 1500))
    }
    codes = pl.DataFrame(sorted(rows), schema={"eid": pl.Int64, "code": pl.String}, orient="row")
    cfg = EhrConfig(min_count=5, dim=6)
    a = make_featurizer(cfg).fit(codes, np.arange(150))
    b = make_featurizer(cfg).fit(
        codes.sample(fraction=1.0, shuffle=True, seed=1), np.arange(150)[::-1]
    )
    eids = np.array([3, 160, 999])
    xa, xb = a.transform(codes, eids), b.transform(codes, eids)
    np.testing.assert_array_equal(xa, xb)
    assert xa.shape == (3, 6) and a.feature_names == [f"svd{k}" for k in range(6)]
    np.testing.assert_array_equal(xa[2], 0.0)  # no codes -> zero vector
    comps = a.components
    assert np.all(comps[np.arange(6), np.abs(comps).argmax(axis=1)] > 0)


def test_featurizer_registry():
    with pytest.raises(ConfigError, match="not one of"):
        make_featurizer(EhrConfig(featurizer="qwen"))

    @register_featurizer("test_constant")
    class Constant(CodeBagFeaturizer):
        pass

    try:
        assert isinstance(make_featurizer(EhrConfig(featurizer="test_constant")), Constant)
    finally:
        FEATURIZERS.pop("test_constant")


# ------------------------------------------------------------------ folds
def test_folds_are_balanced_disjoint_and_order_independent():
    eids = np.random.default_rng(1).choice(10**6, 503, replace=False)
    folds = assign_folds(eids, 5, seed=3)
    assert np.ptp(np.bincount(folds)) <= 1
    shuffled = np.random.default_rng(2).permutation(eids.size)
    np.testing.assert_array_equal(assign_folds(eids[shuffled], 5, seed=3), folds[shuffled])
    splits = make_splits(eids, 5, 0.1, seed=3)
    for k in range(5):
        roles = split_roles(splits, k)
        counts = dict(roles["role"].value_counts().iter_rows())
        assert counts["test"] == int((splits["fold"] == k).sum())
        assert counts["val"] == round(0.1 * (eids.size - counts["test"]))
    assert make_splits(eids, 5, 0.1, seed=3).equals(splits)
    assert not make_splits(eids, 5, 0.1, seed=4).equals(splits)
    with pytest.raises(ConfigError, match="fold 5 does not exist"):
        split_roles(splits, 5)


def test_zscore_fit_ignores_nan_and_handles_empty_columns():
    x = np.array([[1.0, np.nan, 5.0], [3.0, np.nan, 5.0], [np.nan, np.nan, 5.0]])
    mean, std, count = zscore_fit(x)
    np.testing.assert_allclose(mean, [2.0, 0.0, 5.0])
    np.testing.assert_allclose(std, [1.0, 1.0, 1.0])
    assert count.tolist() == [2, 0, 3]


# ------------------------------------------------------------------ pipeline
def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file() and not is_manifest(p)
    }  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("ukbpipe")
    synth = UkbSynthConfig(participants=1200, seed=9, olink_frac=0.3, ecg_frac=0.0,
                           olink_all_nan_frac=0.02, empty_frac=0.02, no_baseline_frac=0.01)  # fmt: skip
    generate_ukb(root / "raw", synth)
    summary = build_ukb_cohort(UkbCohortConfig(raw=root / "raw", out=root / "cohort", seed=1))
    for variant in ("intersect", "union"):
        for fold in (0, 1):
            build_ukb_tensors(
                root / "cohort", root / f"{variant}{fold}", UkbTensorConfig(variant, fold, ehr=EHR)
            )
    return root, summary


def test_counts_reconcile(built):
    root, summary = built
    c = summary["counts"]
    participants = pl.read_parquet(root / "cohort" / "participants.parquet")
    exclusions = pl.read_parquet(root / "cohort" / "exclusions.parquet")
    assert participants.height == c["participants"] == 1200
    assert c["participants"] == c["union"] + c["excluded"]
    assert exclusions.filter(pl.col("level") == "participant").height == c["excluded"] > 0
    assert participants["included"].sum() == c["union"]
    reasons = set(exclusions["reason"].to_list())
    assert {"no modality present", "NMR row all NaN", "Olink row all NaN",
            "Olink participant not in main dataset", "EHR: no baseline date (53-0.0)"} <= reasons  # fmt: skip
    rows = summary["diagnosis_rows"]
    assert rows["diag_rows"] == sum(v for k, v in rows.items() if k != "diag_rows")
    attrition = (root / "cohort" / "attrition.csv").read_text().splitlines()
    assert (
        attrition[0] == "group,participants"
        and f"intersect (all three),{c['intersect']}" in attrition
    )
    assert 0.25 * 0.9 < c["olink"] / c["participants"] < 0.35


def test_feature_tables_match_presence(built):
    root, _ = built
    people = pl.read_parquet(root / "cohort" / "participants.parquet")
    nmr = pl.read_parquet(root / "cohort" / "nmr.parquet")
    olink = pl.read_parquet(root / "cohort" / "olink.parquet")
    assert nmr.width == 250 and nmr["eid"].to_list() == people.filter("nmr")["eid"].to_list()
    assert olink["eid"].to_list() == people.filter("olink")["eid"].to_list()
    assert olink.columns[1:] == sorted(olink.columns[1:], key=lambda c: int(c[1:]))  # by protein id
    codes = pl.read_parquet(root / "cohort" / "ehr_codes.parquet")
    assert set(codes["eid"].to_list()) <= set(people.filter("ehr")["eid"].to_list())
    assert codes["code"].str.len_chars().eq(3).all()


@pytest.mark.parametrize("fold", [0, 1])
def test_folds_disjoint_and_intersect_subset_of_union(built, fold):
    root, _ = built
    union, inter = load_tensor_dataset(root / f"union{fold}"), load_tensor_dataset(
        root / f"intersect{fold}"
    )
    ids = {}
    for name in ("train", "val", "test"):
        u = set(union.split(name).index["sample_id"].tolist())
        i = set(inter.split(name).index["sample_id"].tolist())
        assert i <= u and len(i) > 0
        ids[name] = u
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    other = load_tensor_dataset(root / f"union{1 - fold}").split("test").index["sample_id"]
    assert not ids["test"] & set(other.tolist())


def test_union_missing_modality_is_absent_with_zero_value_and_mask(built):
    root, _ = built
    ds = load_tensor_dataset(root / "union0")
    assert ds.metadata["target"] == "olink" and ds.metadata["protocol"] == "bank"
    assert ds.metadata["missing_encoding"] == "value_mask"
    split = ds.split("train")
    for m in ("nmr", "ehr", "olink"):
        width = ds.inputs[m]["shape"][0] // 2
        x, present = np.asarray(split.arrays[m]), np.asarray(split.present[m])
        assert (~present).any() and present.any()
        np.testing.assert_array_equal(x[~present], 0.0)
        mask = x[present, width:]
        assert set(np.unique(mask)) <= {0.0, 1.0} and mask.any(axis=1).all()
        values = x[present, :width]
        np.testing.assert_array_equal(values[mask == 0], 0.0)
        observed = np.where(mask == 1, values, np.nan)
        np.testing.assert_allclose(
            np.nanmean(observed, axis=0)[mask.sum(axis=0) > 1], 0.0, atol=1e-5
        )
    assert not ds.split("test").present["olink"].all()


def test_intersect_has_all_modalities_and_no_nan(built):
    root, _ = built
    ds = load_tensor_dataset(root / "intersect0")
    assert ds.inputs["nmr"]["shape"] == [249] and ds.inputs["olink"]["shape"] == [200]
    for name in ("train", "val", "test"):
        split = ds.split(name)
        assert not any((split.path / f"{m}_present.npy").exists() for m in ds.modalities)
        for m in ds.modalities:
            assert np.isfinite(np.asarray(split.arrays[m])).all()
    meta = ds.metadata
    assert (
        len(meta["features"]["ehr"])
        == ds.inputs["ehr"]["shape"][0]
        == len(meta["ehr"]["vocabulary"])
    )
    assert len(meta["scalers"]["nmr"]["mean"]) == 249


def test_every_output_is_deterministic(built, tmp_path):
    root, _ = built
    generate_ukb(tmp_path / "raw", UkbSynthConfig(participants=1200, seed=9, olink_frac=0.3, ecg_frac=0.0,
                 olink_all_nan_frac=0.02, empty_frac=0.02, no_baseline_frac=0.01))  # fmt: skip
    assert digests(tmp_path / "raw") == digests(root / "raw")
    build_ukb_cohort(UkbCohortConfig(raw=tmp_path / "raw", out=tmp_path / "cohort", seed=1))
    assert digests(tmp_path / "cohort") == digests(root / "cohort")
    build_ukb_tensors(tmp_path / "cohort", tmp_path / "u", UkbTensorConfig("union", 0, ehr=EHR))
    assert digests(tmp_path / "u") == digests(root / "union0")


def test_tensor_errors(built, tmp_path):
    root, _ = built
    with pytest.raises(ConfigError, match="fold 7 does not exist"):
        build_ukb_tensors(root / "cohort", tmp_path / "x", UkbTensorConfig("union", 7, ehr=EHR))
    with pytest.raises(ConfigError, match="^ukb.variant: expected one of intersect, union, got 'both'$"):
        UkbTensorConfig("both", 0)
    with pytest.raises(RecordError, match="cohort file is missing"):
        build_ukb_tensors(tmp_path, tmp_path / "x", UkbTensorConfig("union", 0))
    with pytest.raises(RecordError, match="does not exist"):
        build_ukb_cohort(UkbCohortConfig(raw=tmp_path, out=tmp_path / "c"))


def test_summary_json_is_valid(built):
    root, summary = built
    assert json.loads((root / "cohort" / "summary.json").read_text()) == summary
    assert (
        summary["folds"]["n_folds"] == 5
        and sum(summary["folds"]["sizes"]) == summary["counts"]["union"]
    )


def test_cli_cohort_and_tensors_ukb(built, tmp_path, capsys):
    from gated_symile.cli import main

    root, summary = built
    assert (
        main(
            [
                "cohort",
                "ukb",
                "--raw",
                str(root / "raw"),
                "--out",
                str(tmp_path / "c"),
                "--seed",
                "1",
            ]
        )
        == 0
    )
    assert digests(tmp_path / "c") == digests(root / "cohort")
    args = ["tensors", "ukb", "--cohort", str(root / "cohort"), "--variant", "intersect", "--fold", "1",
            "--out", str(tmp_path / "t"), "--ehr-min-count", "3"]  # fmt: skip
    assert main(args) == 0
    assert digests(tmp_path / "t") == digests(root / "intersect1")
    assert '"splits"' in capsys.readouterr().out
