"""Misalignment injection: manifest draws, byte-determinism, loader indirection, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gated_symile.cli import main
from gated_symile.data.datasets import load_tensor_dataset
from gated_symile.errors import GatedSymileError, RecordError
from gated_symile.data.misalign.draw import MisalignConfig, draw_manifest, feature_stats
from gated_symile.stages.misalign import write_misalignment
from gated_symile.data.tensor_format import write_metadata, write_split

SIZES = {"train": 900, "val": 600, "test": 500}
MODS = ("ecg", "labs", "cxr")


def write_dataset(root: Path, sizes: dict[str, int] = SIZES) -> Path:
    """Rows are identifiable: labs row i = [sample_id, ...], ecg row i all equal to sample_id."""
    start = 0
    for name, n in sizes.items():
        ids = np.arange(start, start + n, dtype=np.int64)
        start += n
        labs = np.repeat(ids[:, None].astype(np.float32), 4, axis=1) + np.arange(4, dtype=np.float32)
        arrays = {
            "ecg": np.broadcast_to(ids[:, None, None, None], (n, 1, 6, 2)).astype(np.float32),
            "labs": labs,
            "cxr": (ids[:, None, None] % 251).astype(np.uint8) * np.ones((1, 4, 4), np.uint8),
            "labs_present": ids % 7 != 0,
            "candidates": np.stack([np.roll(np.arange(n), -i) for i in range(3)], axis=1),
        }
        write_split(root / name, arrays, {"sample_id": ids, "subject_id": ids // 2})
    write_metadata(root, {
        "dataset": "tiny", "modalities": list(MODS), "target": "cxr", "protocol": "candidates",
        "splits": sizes,
        "inputs": {
            "ecg": {"kind": "float32", "shape": [1, 6, 2]},
            "labs": {"kind": "float32", "shape": [4]},
            "cxr": {"kind": "image_uint8", "shape": [4, 4], "normalize": "imagenet"},
        },
    })
    return root


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("clean") / "tiny")


def misalign(clean: Path, out: Path, **kw) -> Path:
    cfg = MisalignConfig(**{"p": 0.5, "mode": "swap", **kw})
    write_misalignment(clean, out, cfg)
    return out


def tree_sha(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_counts_within_binomial_error_and_exclusive(clean, tmp_path, p):
    out = misalign(clean, tmp_path / "m", p=p)
    spec = json.loads((out / "misalign.json").read_text())
    for name, n in SIZES.items():
        manifest = pd.read_parquet(out / f"manifest_{name}.parquet")
        corr = manifest[[f"corr_{m}" for m in MODS]].to_numpy()
        k = int(corr.any(axis=1).sum())
        assert abs(k - n * p) <= 3 * np.sqrt(n * p * (1 - p))
        assert corr.sum(axis=1).max() <= 1  # exclusive: never two modalities
        assert not manifest["corr_cxr"].any()  # never the target
        expected = np.where(corr[:, 0], 1, np.where(corr[:, 1], 2, 0))
        np.testing.assert_array_equal(manifest["corr_mod"], expected)
        # the two query modalities share the corrupted samples about evenly
        assert abs(int(corr[:, 0].sum()) - k / 2) <= 3 * np.sqrt(k / 4)
        assert spec["counts"][name]["corrupted"] == k and spec["counts"][name]["n"] == n
        assert list(manifest.columns) == ["sample_id", *(f"corr_{m}" for m in MODS),
                                          *(f"donor_{m}" for m in MODS), "mode", "corr_mod"]
        assert set(manifest["mode"]) <= {"none", "swap"}


def test_same_seed_same_bytes_other_seed_differs(clean, tmp_path):
    a = tree_sha(misalign(clean, tmp_path / "a", seed=3, mode="noise"))
    b = tree_sha(misalign(clean, tmp_path / "b", seed=3, mode="noise"))
    c = tree_sha(misalign(clean, tmp_path / "c", seed=4, mode="noise"))
    assert a == b
    assert a["manifest_train.parquet"] != c["manifest_train.parquet"]


def test_masks_are_nested_across_p(clean):
    kw = {"mode": "swap", "seed": 1}
    ids = np.arange(400)
    low = draw_manifest(MisalignConfig(p=0.2, **kw), "train", ids, MODS, "cxr")
    high = draw_manifest(MisalignConfig(p=0.6, **kw), "train", ids, MODS, "cxr")
    for m in ("ecg", "labs"):
        lo, hi = low[f"corr_{m}"].to_numpy(), high[f"corr_{m}"].to_numpy()
        assert not (lo & ~hi).any()
        np.testing.assert_array_equal(low[f"donor_{m}"][lo], high[f"donor_{m}"][lo])


def test_swap_reads_donor_rows_and_self_donor_keeps_data(clean, tmp_path):
    out = misalign(clean, tmp_path / "m", p=1.0, modalities=("labs",))
    split = load_tensor_dataset(clean, misalignment=out).split("val")
    manifest = pd.read_parquet(out / "manifest_val.parquet")
    assert manifest["corr_labs"].all() and not manifest["corr_ecg"].any()
    donors = manifest["donor_labs"].to_numpy()
    assert sorted(donors) == list(range(SIZES["val"]))  # a permutation
    idx = np.arange(SIZES["val"])
    batch = split.batch(idx)
    ids = split.index["sample_id"].to_numpy()
    np.testing.assert_array_equal(batch["labs"][:, 0].numpy(), ids[donors].astype(np.float32))
    np.testing.assert_array_equal(batch["ecg"][:, 0, 0, 0].numpy(), ids.astype(np.float32))  # untouched
    np.testing.assert_array_equal(batch["labs_present"].numpy(), ids[donors] % 7 != 0)  # donor's presence
    self_rows = np.flatnonzero(donors == idx)
    np.testing.assert_array_equal(batch["labs"][self_rows, 0].numpy(), ids[self_rows])
    assert split.flags["corr_labs"].all() and set(split.flags) == {f"corr_{m}" for m in MODS} | {"corr_mod"}
    # batch order and composition do not matter
    sub = np.array([5, 3, 5, 0])
    np.testing.assert_array_equal(split.batch(sub)["labs"].numpy(), batch["labs"][sub].numpy())


def test_self_donor_occurs_and_keeps_data():
    """Over many small splits a sample is drawn as its own donor; its manifest donor is itself."""
    found = 0
    for seed in range(40):
        manifest = draw_manifest(MisalignConfig(p=1.0, mode="swap", seed=seed), "train", np.arange(5), MODS, "cxr")
        for m in ("ecg", "labs"):
            donors = manifest[f"donor_{m}"].to_numpy()
            found += int(((donors == np.arange(5)) & manifest[f"corr_{m}"].to_numpy()).sum())
    assert found > 0


def test_exclude_same_subject(clean, tmp_path):
    out = misalign(clean, tmp_path / "m", p=1.0, exclude_same_subject=True)
    for name in SIZES:
        manifest = pd.read_parquet(out / f"manifest_{name}.parquet")
        subjects = pd.read_parquet(clean / name / "index.parquet")["subject_id"].to_numpy()
        for m in ("ecg", "labs"):
            rows = np.flatnonzero(manifest[f"corr_{m}"])
            donors = manifest[f"donor_{m}"].to_numpy()[rows]
            assert (donors >= 0).all() and (subjects[donors] != subjects[rows]).all()


def test_noise_is_deterministic_standardised_and_images_uniform(clean, tmp_path):
    out = misalign(clean, tmp_path / "m", p=1.0, mode="noise", modalities=("labs", "cxr"), seed=7)
    ds = load_tensor_dataset(clean, misalignment=out)
    split = ds.split("test")
    idx = np.arange(SIZES["test"])
    a = split.batch(idx)
    b = load_tensor_dataset(clean, misalignment=out).split("test").batch(idx[::-1].copy())
    np.testing.assert_array_equal(a["labs"].numpy(), b["labs"].numpy()[::-1])
    np.testing.assert_array_equal(a["cxr"].numpy(), b["cxr"].numpy()[::-1])
    assert (pd.read_parquet(out / "manifest_test.parquet")["corr_mod"] == 4).all()  # labs and cxr: several
    # standardised with the clean train statistics of the present rows
    train = load_tensor_dataset(clean).split("train")
    mean, std = feature_stats(train.arrays["labs"], train.present["labs"])
    np.testing.assert_allclose(np.load(out / "noise_mean_labs.npy"), mean)
    z = (a["labs"].numpy() - mean) / std
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.1
    clean_labs = load_tensor_dataset(clean).split("test").batch(idx)["labs"].numpy()
    assert not np.isclose(a["labs"].numpy(), clean_labs).any(axis=1).all()
    # image noise: uniform random pixels, normalised like any image
    raw = split.corruption.rows("cxr", split.arrays["cxr"], idx, split.inputs["cxr"])
    assert raw.dtype == np.uint8 and raw.min() < 20 and raw.max() > 235
    assert np.array_equal(a["ecg"].numpy(), load_tensor_dataset(clean).split("test").batch(idx)["ecg"].numpy())


def test_noise_depends_on_seed(clean, tmp_path):
    idx = np.arange(10)
    out1 = misalign(clean, tmp_path / "a", p=1.0, mode="noise", modalities=("ecg",), seed=1)
    out2 = misalign(clean, tmp_path / "b", p=1.0, mode="noise", modalities=("ecg",), seed=2)
    x1 = load_tensor_dataset(clean, misalignment=out1).split("val").batch(idx)["ecg"]
    x2 = load_tensor_dataset(clean, misalignment=out2).split("val").batch(idx)["ecg"]
    assert not torch.equal(x1, x2)


def test_drop_sets_present_false(clean, tmp_path):
    out = misalign(clean, tmp_path / "m", p=0.5, mode="drop")
    split = load_tensor_dataset(clean, misalignment=out).split("train")
    clean_split = load_tensor_dataset(clean).split("train")
    idx = np.arange(SIZES["train"])
    batch = split.batch(idx)
    for m in ("ecg", "labs"):
        dropped = split.flags[f"corr_{m}"]
        expected = clean_split.present[m] & ~dropped
        np.testing.assert_array_equal(split.present[m], expected)
        np.testing.assert_array_equal(batch[f"{m}_present"].numpy(), expected)
        np.testing.assert_array_equal(batch[m].numpy(), clean_split.batch(idx)[m].numpy())  # data kept
    assert split.present["cxr"].all()


def test_train_only_leaves_other_splits_clean(clean, tmp_path):
    out = misalign(clean, tmp_path / "m", p=0.8, splits=("train",))
    ds = load_tensor_dataset(clean, misalignment=out)
    assert ds.split("train").flags["corr_mod"].any()
    for name in ("val", "test"):
        manifest = pd.read_parquet(out / f"manifest_{name}.parquet")
        assert not manifest[[f"corr_{m}" for m in MODS]].to_numpy().any()
        assert (manifest[[f"donor_{m}" for m in MODS]].to_numpy() == -1).all()
        assert (manifest["mode"] == "none").all() and (manifest["corr_mod"] == 0).all()
        split, clean_split = ds.split(name), load_tensor_dataset(clean).split(name)
        idx = np.arange(split.n)
        for key, value in split.batch(idx).items():
            assert torch.equal(value, clean_split.batch(idx)[key])


def test_clean_files_untouched_and_bank_batch_follows_manifest(clean, tmp_path):
    before = tree_sha(clean)
    out = misalign(clean, tmp_path / "m", p=1.0, modalities=("cxr",))
    split = load_tensor_dataset(clean, misalignment=out).split("val")
    split.batch(np.arange(50))
    donors = pd.read_parquet(out / "manifest_val.parquet")["donor_cxr"].to_numpy()
    np.testing.assert_array_equal(split.bank_batch(np.arange(5)).numpy(), split.batch(np.arange(5))["cxr"].numpy())
    clean_val = load_tensor_dataset(clean).split("val")
    np.testing.assert_array_equal(split.bank_batch(np.arange(5)).numpy(), clean_val.bank_batch(donors[:5]).numpy())
    assert tree_sha(clean) == before
    with pytest.raises(GatedSymileError, match="outside the dataset"):
        misalign(clean, clean / "misalign")


def test_manifest_for_another_dataset_is_refused(clean, tmp_path):
    out = misalign(clean, tmp_path / "m", p=0.3)
    other = write_dataset(tmp_path / "other", {"train": 30, "val": 20, "test": 20})
    with pytest.raises(RecordError, match="another dataset"):
        load_tensor_dataset(other, misalignment=out)
    with pytest.raises(RecordError, match="misalign.json is missing"):
        load_tensor_dataset(clean, misalignment=tmp_path)


def test_bad_arguments(clean, tmp_path):
    with pytest.raises(GatedSymileError):
        MisalignConfig(p=1.5, mode="swap")
    with pytest.raises(GatedSymileError):
        MisalignConfig(p=0.5, mode="shuffle")
    with pytest.raises(GatedSymileError, match="not in the dataset"):
        misalign(clean, tmp_path / "m", modalities=("eeg",))
    with pytest.raises(GatedSymileError, match="splits"):
        misalign(clean, tmp_path / "m", splits=("holdout",))


def test_cli(clean, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["misalign", "--tensors", str(clean), "--out", str(out), "--p", "0.25", "--mode", "drop",
               "--modalities", "ecg", "--splits", "train", "--seed", "5", "--exclude-same-subject"])
    assert rc == 0
    spec = json.loads((out / "misalign.json").read_text())
    assert spec["parameters"] == {"p": 0.25, "mode": "drop", "modalities": ["ecg"], "splits": ["train"],
                                  "seed": 5, "exclude_same_subject": True}
    assert spec["counts"]["val"]["corrupted"] == 0 and spec["counts"]["train"]["labs"] == 0
    assert spec["source"]["metadata_sha256"] == hashlib.sha256((clean / "metadata.json").read_bytes()).hexdigest()
    assert json.loads(capsys.readouterr().out)["counts"] == spec["counts"]
    rc = main(["misalign", "--tensors", str(clean), "--out", str(out), "--p", "2", "--mode", "drop"])
    assert rc == 2 and capsys.readouterr().err == "error: misalign.p: must be <= 1, got 2.0\n"
