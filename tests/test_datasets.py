"""Tensor-format loader: validation with file-naming errors, batches, banks, flags."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from gated_symile.data.datasets import IMAGENET_MEAN, IMAGENET_STD, load_tensor_dataset
from gated_symile.errors import GatedSymileError, RecordError
from gated_symile.synthetic.xnor import XnorConfig, write_xnor
from gated_symile.synthetic.xor import XorConfig, write_xor
from gated_symile.data.tensor_format import write_metadata, write_split

N = {"train": 6, "val": 4, "test": 5}


def write_image_dataset(root: Path) -> Path:
    """cxr uint8 (8x8) with a presence mask, ecg (1, 20, 3), labs (10,); candidates protocol."""
    rng = np.random.default_rng(0)
    for name, n in N.items():
        cxr = rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8)
        cxr[0] = 0
        cxr[1] = 255
        arrays = {
            "cxr": cxr,
            "cxr_present": np.arange(n) % 2 == 0,
            "ecg": rng.standard_normal((n, 1, 20, 3)).astype(np.float32),
            "labs": rng.standard_normal((n, 10)).astype(np.float32),
            "candidates": np.stack([np.roll(np.arange(n), -i) for i in range(3)], axis=1),
        }
        write_split(root / name, arrays, {"sample_id": np.arange(100, 100 + n, dtype=np.int64)})
    write_metadata(
        root,
        {
            "dataset": "tiny",
            "modalities": ["ecg", "labs", "cxr"],
            "target": "cxr",
            "protocol": "candidates",
            "eval_batch": 4,
            "splits": N,
            "inputs": {
                "cxr": {"kind": "image_uint8", "shape": [8, 8], "normalize": "imagenet"},
                "ecg": {"kind": "float32", "shape": [1, 20, 3]},
                "labs": {"kind": "float32", "shape": [10]},
            },
        },
    )
    return root


@pytest.fixture
def image_dataset(tmp_path):
    return write_image_dataset(tmp_path / "img")


def test_metadata_and_split_attributes(image_dataset):
    ds = load_tensor_dataset(image_dataset)
    assert ds.modalities == ("ecg", "labs", "cxr")
    assert (ds.target, ds.target_index, ds.protocol) == ("cxr", 2, "candidates")
    assert ds.metadata["dataset"] == "tiny"
    split = ds.split("val")
    assert split.n == 4 and split is ds.split("val")
    assert isinstance(split.arrays["cxr"], np.memmap)
    assert split.arrays["ecg"].shape == (4, 1, 20, 3)
    np.testing.assert_array_equal(split.present["cxr"], [True, False, True, False])
    np.testing.assert_array_equal(split.present["labs"], True)  # no file: all present
    assert list(split.index["sample_id"]) == [100, 101, 102, 103]
    assert split.candidates.shape == (4, 3) and split.bank is None and split.bank_index is None
    assert split.flags == {}


def test_batch_converts_images_and_passes_floats(image_dataset):
    split = load_tensor_dataset(image_dataset).split("train")
    idx = np.array([1, 0, 4])
    batch = split.batch(idx)
    assert set(batch) == {"ecg", "labs", "cxr", "ecg_present", "labs_present", "cxr_present"}
    cxr = batch["cxr"]
    assert cxr.shape == (3, 3, 8, 8) and cxr.dtype == torch.float32
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(cxr[0, :, 0, 0], (1 - mean) / std)  # row 1 is all 255
    torch.testing.assert_close(cxr[1, :, 3, 5], (0 - mean) / std)  # row 0 is all 0
    raw = torch.from_numpy(split.arrays["cxr"][4].astype(np.float32) / 255)
    torch.testing.assert_close(cxr[2], (raw[None] - mean[:, None, None]) / std[:, None, None])
    np.testing.assert_array_equal(batch["ecg"].numpy(), split.arrays["ecg"][idx])
    assert batch["cxr_present"].dtype == torch.bool
    assert batch["cxr_present"].tolist() == [False, True, True]
    assert batch["labs_present"].all()


def test_bank_batch_uses_target_rows_without_an_explicit_bank(image_dataset):
    split = load_tensor_dataset(image_dataset).split("test")
    rows = split.candidates[2]
    torch.testing.assert_close(split.bank_batch(rows), split.batch(rows)["cxr"])
    assert split.n_bank == 5
    with pytest.raises(IndexError):
        split.bank_batch(np.array([5]))
    with pytest.raises(ValueError):
        split.batch(np.array([0.5]))


def test_xnor_dataset_flags_and_batches(tmp_path):
    cfg = XnorConfig(n_samples=200, n_bits=4, dim=16, p=0.5)
    write_xnor(tmp_path / "x", cfg)
    ds = load_tensor_dataset(tmp_path / "x")
    assert (ds.protocol, ds.target, ds.metadata["eval_batch"]) == ("inbatch", "a", 128)
    split = ds.split("test")
    flags = split.flags
    assert sorted(flags) == ["corr_a", "corr_b", "corr_c", "corr_mod"]
    assert flags["corr_b"].dtype == bool and len(flags["corr_b"]) == split.n == 20
    batch = split.batch(np.arange(5))
    np.testing.assert_array_equal(batch["b"].numpy(), split.arrays["b"][:5])


def test_xor_dataset_explicit_bank(tmp_path):
    write_xor(tmp_path / "x", XorConfig(d=3, n_train=20, n_val=5, n_test=7))
    split = load_tensor_dataset(tmp_path / "x").split("test")
    assert split.bank.shape == (8, 3) and split.n_bank == 8
    bank_rows = split.bank_batch(split.bank_index)
    torch.testing.assert_close(bank_rows, split.batch(np.arange(7))["b"])
    assert bank_rows.dtype == torch.float32


def rewrite_metadata(**changes) -> Callable[[Path], str]:
    def mutate(root: Path) -> str:
        meta = json.loads((root / "metadata.json").read_text())
        meta.update(changes)
        (root / "metadata.json").write_text(json.dumps(meta))
        return "metadata.json"

    return mutate


def replace_file(relpath: str, array: np.ndarray | None) -> Callable[[Path], str]:
    """Delete (``None``) or (re)write the array at ``relpath``."""

    def mutate(root: Path) -> str:
        (root / relpath).unlink(missing_ok=True)
        if array is not None:
            np.save(root / relpath, array)
        return relpath

    return mutate


def garble(relpath: str) -> Callable[[Path], str]:
    def mutate(root: Path) -> str:
        (root / relpath).write_bytes(b"garbage")
        return relpath

    return mutate


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (rewrite_metadata(format="gated-symile-tensors/0"), "format"),
        (rewrite_metadata(target="rna"), "target"),
        (rewrite_metadata(protocol="knn"), "protocol"),
        (rewrite_metadata(protocol="inbatch", eval_batch=None), "eval_batch"),
        (rewrite_metadata(modalities=["ecg", "ecg"]), "modalities"),
        (rewrite_metadata(inputs={"ecg": {"kind": "float32", "shape": [1, 20, 3]}}), "labs"),
        (rewrite_metadata(inputs={"ecg": {"kind": "float64", "shape": [1]}}), "kind"),
        (garble("metadata.json"), "JSON"),
        (replace_file("train/labs.npy", None), "missing"),
        (replace_file("train/labs.npy", np.zeros((6, 10), np.float64)), "dtype"),
        (replace_file("train/labs.npy", np.zeros((6, 11), np.float32)), "shape"),
        (replace_file("train/cxr.npy", np.zeros((5, 8, 8), np.uint8)), "shape"),
        (replace_file("train/cxr_present.npy", np.ones(6, np.int64)), "dtype"),
        (replace_file("train/candidates.npy", np.full((6, 3), 6, np.int64)), "0..5"),
        (garble("train/ecg.npy"), "npy"),
        (garble("train/index.parquet"), "parquet"),
        (replace_file("train/bank_cxr.npy", np.zeros((3, 8, 8), np.uint8)), "protocol"),
    ],
)
def test_bad_dataset_names_the_file(image_dataset, mutate, problem):
    culprit = mutate(image_dataset)
    with pytest.raises(RecordError, match=problem) as info:
        load_tensor_dataset(image_dataset).split("train")
    assert info.value.path.endswith(culprit)


def test_candidate_sets_required_for_evaluated_splits_only(image_dataset):
    """Training uses in-batch negatives: train may lack candidates.npy, val and test may not."""
    (image_dataset / "train" / "candidates.npy").unlink()
    (image_dataset / "val" / "candidates.npy").unlink()
    ds = load_tensor_dataset(image_dataset)
    assert ds.split("train").candidates is None
    with pytest.raises(RecordError, match="missing") as info:
        ds.split("val")
    assert info.value.path.endswith("val/candidates.npy")


def test_missing_folders_and_splits(tmp_path, image_dataset):
    with pytest.raises(GatedSymileError, match="metadata.json"):
        load_tensor_dataset(tmp_path / "nowhere")
    ds = load_tensor_dataset(image_dataset)
    with pytest.raises(RecordError, match="no split 'dev'"):
        ds.split("dev")
    (image_dataset / "val" / "index.parquet").rename(image_dataset / "val" / "moved.parquet")
    with pytest.raises(RecordError, match="index.parquet"):
        ds.split("val")
    rewrite_metadata(splits={**N, "test": 9})(image_dataset)
    with pytest.raises(RecordError, match="expected"):
        load_tensor_dataset(image_dataset).split("test")
