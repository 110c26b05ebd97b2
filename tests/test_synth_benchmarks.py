"""Synthetic-XNOR and binary XOR generators (docs/method.md §12, §16) and their tensor-format output."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gated_symile.cli import main
from gated_symile.errors import ConfigError, GatedSymileError
from gated_symile.synthetic.xnor import XnorConfig, generate_xnor, split_sizes, write_xnor
from gated_symile.synthetic.xor import XorConfig, bit_bank, write_xor
from gated_symile.data.tensor_format import FORMAT

SMALL = XnorConfig(n_samples=4000, n_bits=8, dim=32, signal_scale=2.0, p=0.5, seed=7)
S = 3 * SMALL.n_bits


def within_binomial(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p)) + 1


def signs(x: np.ndarray) -> np.ndarray:
    return np.sign(x).astype(np.int8)


def test_b_times_c_equals_a_signal_for_uncorrupted_samples():
    data = generate_xnor(SMALL)
    clean = ~(data["corr_b"] | data["corr_c"])
    assert clean.sum() > 1000
    a, b, c = (data[m][:, :S] for m in "abc")
    assert set(np.unique(np.abs(a))) == {np.float32(2.0)}  # bits map to +-signal_scale
    np.testing.assert_array_equal((b * c / 4.0)[clean], (a / 2.0)[clean])
    # the corrupted ones break the identity (the signal came from another sample)
    broken = ~np.all(signs(b * c) == signs(a), axis=1)
    assert broken[~clean].mean() > 0.99


def test_signal_layout_and_label():
    data = generate_xnor(SMALL)
    k = SMALL.n_bits
    clean = ~(data["corr_b"] | data["corr_c"])
    a, b, c = (signs(data[m][clean, :S]) for m in "abc")
    np.testing.assert_array_equal(b[:, k : 2 * k], 1)  # B = [u, 1, u]
    np.testing.assert_array_equal(b[:, :k], b[:, 2 * k :])
    np.testing.assert_array_equal(c[:, :k], 1)  # C = [1, v, v]
    np.testing.assert_array_equal(c[:, k : 2 * k], c[:, 2 * k :])
    np.testing.assert_array_equal(a[:, :k], b[:, :k])  # A = [u, v, xnor(u, v)]
    np.testing.assert_array_equal(a[:, k : 2 * k], c[:, k : 2 * k])
    a_bits = (data["a"][:, 2 * k : 3 * k] > 0).astype(np.int64)
    np.testing.assert_array_equal(data["label"], (a_bits << np.arange(k)).sum(axis=1))
    assert data["a"][:, S:].std() == pytest.approx(SMALL.distractor_std, rel=0.05)


def test_xor_rule_and_xnor_only_mode():
    k = SMALL.n_bits
    xor = generate_xnor(replace(SMALL, a_rule="xor", p=0.0))
    np.testing.assert_array_equal(
        signs(xor["a"][:, 2 * k : S]), -signs(xor["b"][:, :k] * xor["c"][:, k : 2 * k])
    )
    only = generate_xnor(replace(SMALL, embed_mode="xnor_only", p=0.0))
    np.testing.assert_array_equal(
        signs(only["b"][:, :k] * only["c"][:, :k]), signs(only["a"][:, :k])
    )
    assert replace(SMALL, embed_mode="xnor_only").signal_width == k


def test_exclusive_corruption_rates_and_flags():
    cfg = replace(SMALL, p=0.5, bc_corr_split=0.3)
    data = generate_xnor(cfg)
    n = cfg.n_samples
    assert not (data["corr_b"] & data["corr_c"]).any()
    assert not data["corr_a"].any()
    assert within_binomial(int(data["corr_b"].sum()), n, 0.5 * 0.3)
    assert within_binomial(int(data["corr_c"].sum()), n, 0.5 * 0.7)
    expected_mod = np.select([data["corr_b"], data["corr_c"]], [2, 3], 0)
    np.testing.assert_array_equal(data["corr_mod"], expected_mod)
    full = generate_xnor(replace(cfg, p=1.0))
    assert (full["corr_b"] ^ full["corr_c"]).all()  # p = 1: exactly one of B/C, never both


def test_independent_corruption_can_hit_both():
    cfg = replace(SMALL, p=0.4, exclusive=False)
    data = generate_xnor(cfg)
    both = data["corr_b"] & data["corr_c"]
    for count, p in ((data["corr_b"].sum(), 0.4), (data["corr_c"].sum(), 0.4), (both.sum(), 0.16)):
        assert within_binomial(int(count), cfg.n_samples, p)
    np.testing.assert_array_equal(data["corr_mod"][both], 4)


def test_swap_signal_keeps_distractors_and_takes_a_real_signal():
    clean = generate_xnor(replace(SMALL, p=0.0))
    swapped = generate_xnor(replace(SMALL, p=1.0))  # masks come after the vectors: same base data
    np.testing.assert_array_equal(swapped["a"], clean["a"])  # A is never corrupted
    for m in "bc":
        rows = swapped[f"corr_{m}"]
        np.testing.assert_array_equal(swapped[m][:, S:], clean[m][:, S:])
        np.testing.assert_array_equal(swapped[m][~rows], clean[m][~rows])
        pool = {r.tobytes() for r in clean[m][:, :S]}
        assert all(r.tobytes() in pool for r in swapped[m][rows, :S])


def test_gaussian_mode_replaces_the_whole_vector():
    clean = generate_xnor(replace(SMALL, p=0.0))
    noisy = generate_xnor(replace(SMALL, p=1.0, corr_mode="gaussian"))
    for m in "bc":
        rows = noisy[f"corr_{m}"]
        np.testing.assert_array_equal(noisy[m][~rows], clean[m][~rows])
        assert (noisy[m][rows] != clean[m][rows]).all(axis=1).mean() > 0.99
        assert noisy[m][rows, :S].std() == pytest.approx(SMALL.distractor_std, rel=0.05)


def test_flips_are_a_binary_symmetric_channel():
    data = generate_xnor(replace(SMALL, p=0.0, p_flips=(0.1, 0.0)))
    k = SMALL.n_bits
    flipped = signs(data["b"][:, :k]) != signs(data["a"][:, :k])
    assert within_binomial(int(flipped.sum()), flipped.size, 0.1)
    np.testing.assert_array_equal(signs(data["c"][:, k : 2 * k]), signs(data["a"][:, k : 2 * k]))


def test_write_xnor_splits_and_metadata(tmp_path):
    cfg = replace(SMALL, n_samples=1003)
    summary = write_xnor(tmp_path / "x", cfg)
    data = generate_xnor(cfg)
    meta = json.loads((tmp_path / "x" / "metadata.json").read_text())
    assert meta["format"] == FORMAT and meta["target"] == "a" and meta["protocol"] == "inbatch"
    assert meta["modalities"] == ["a", "b", "c"] and meta["eval_batch"] == cfg.eval_batch
    assert (
        meta["splits"]
        == summary["splits"]
        == split_sizes(1003)
        == {"train": 802, "val": 100, "test": 101}
    )
    assert meta["inputs"]["b"] == {"kind": "float32", "shape": [cfg.dim]}
    ids = []
    for name, size in meta["splits"].items():
        index = pd.read_parquet(tmp_path / "x" / name / "index.parquet")
        assert list(index.columns) == [
            "sample_id",
            "label",
            "corr_a",
            "corr_b",
            "corr_c",
            "corr_mod",
        ]
        assert len(index) == size
        rows = index["sample_id"].to_numpy()
        for m in "abc":
            np.testing.assert_array_equal(
                np.load(tmp_path / "x" / name / f"{m}.npy"), data[m][rows]
            )
        np.testing.assert_array_equal(index["corr_b"], data["corr_b"][rows])
        ids.append(rows)
    np.testing.assert_array_equal(np.sort(np.concatenate(ids)), np.arange(1003))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(
    "write",
    [
        lambda out, seed: write_xnor(out, replace(SMALL, n_samples=500, seed=seed)),
        lambda out, seed: write_xor(
            out, XorConfig(d=4, n_train=200, n_val=20, n_test=50, seed=seed)
        ),
    ],
    ids=["xnor", "xor"],
)
def test_outputs_are_byte_identical_for_the_same_seed(tmp_path, write):
    write(tmp_path / "one", 1)
    write(tmp_path / "two", 1)
    write(tmp_path / "three", 2)
    one = tree_bytes(tmp_path / "one")
    assert one == tree_bytes(tmp_path / "two")
    other = tree_bytes(tmp_path / "three")
    assert one.keys() == other.keys() and one["train/b.npy"] != other["train/b.npy"]


def test_output_folder_is_replaced_only_when_it_is_a_dataset(tmp_path):
    out = tmp_path / "x"
    write_xnor(out, replace(SMALL, n_samples=100))
    (out / "train" / "b_present.npy").write_bytes(b"stale")
    write_xnor(out, replace(SMALL, n_samples=100))
    assert not (out / "train" / "b_present.npy").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(GatedSymileError, match="not a tensor dataset"):
        write_xnor(other, SMALL)
    assert (other / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "changes",
    [
        {"dim": 20},
        {"p": 1.5},
        {"p_flips": (0.0, -0.1)},
        {"n_bits": 0},
        {"embed_mode": "u"},
        {"n_samples": 5},
    ],
)
def test_bad_xnor_config_is_a_config_error(changes):
    with pytest.raises(ConfigError):
        replace(SMALL, **changes)


def load_split(root: Path, name: str) -> dict[str, np.ndarray]:
    files = ["a", "b", "c", "bank_b", "bank_index"]
    out = {f: np.load(root / name / f"{f}.npy") for f in files}
    out["index"] = pd.read_parquet(root / name / "index.parquet")
    return out


def test_xor_relation_and_bank(tmp_path):
    write_xor(tmp_path / "x", XorConfig(d=5, p_hat=1.0, n_train=300, n_val=30, n_test=100, seed=3))
    meta = json.loads((tmp_path / "x" / "metadata.json").read_text())
    assert meta["target"] == "b" and meta["protocol"] == "bank"
    assert meta["splits"] == {"train": 300, "val": 30, "test": 100}
    for name, n in meta["splits"].items():
        s = load_split(tmp_path / "x", name)
        assert s["a"].dtype == np.float32 and s["a"].shape == (n, 5)
        assert set(np.unique(s["a"])) <= {0.0, 1.0}
        np.testing.assert_array_equal(s["c"], np.logical_xor(s["a"], s["b"]).astype(np.float32))
        assert s["bank_b"].shape == (32, 5)
        np.testing.assert_array_equal(s["bank_b"][s["bank_index"]], s["b"])
        np.testing.assert_array_equal(s["index"]["label"], s["bank_index"])
        assert s["index"]["c_is_xor"].all()
    train, test = load_split(tmp_path / "x", "train"), load_split(tmp_path / "x", "test")
    assert not np.array_equal(train["a"][:100], test["a"])  # independent draws per split


def test_xor_p_hat_zero_and_half(tmp_path):
    write_xor(tmp_path / "zero", XorConfig(d=3, p_hat=0.0, n_train=200, n_val=10, n_test=10))
    s = load_split(tmp_path / "zero", "train")
    np.testing.assert_array_equal(s["c"], s["a"])
    write_xor(tmp_path / "half", XorConfig(d=3, p_hat=0.5, n_train=4000, n_val=10, n_test=10))
    s = load_split(tmp_path / "half", "train")
    is_xor = s["index"]["c_is_xor"].to_numpy()
    assert within_binomial(int(is_xor.sum()), 4000, 0.5)
    np.testing.assert_array_equal(s["c"][~is_xor], s["a"][~is_xor])
    np.testing.assert_array_equal(s["c"][is_xor], np.logical_xor(s["a"], s["b"])[is_xor])


def test_bit_bank_is_little_endian():
    bank = bit_bank(3)
    np.testing.assert_array_equal(bank[1], [1, 0, 0])
    np.testing.assert_array_equal(bank[6], [0, 1, 1])
    assert len({r.tobytes() for r in bank}) == 8


@pytest.mark.parametrize("changes", [{"d": 0}, {"d": 21}, {"p_hat": -0.1}, {"n_val": 0}])
def test_bad_xor_config_is_a_config_error(changes):
    with pytest.raises(ConfigError):
        replace(XorConfig(), **changes)


def test_cli_synth_xnor_and_xor(tmp_path, capsys):
    args = ["--n-samples", "300", "--n-bits", "4", "--dim", "16", "--p", "0.5", "--independent"]
    assert main(["synth", "xnor", "--out", str(tmp_path / "xnor"), *args]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"] == {"train": 240, "val": 30, "test": 30}
    meta = json.loads((tmp_path / "xnor" / "metadata.json").read_text())
    assert meta["generator"]["exclusive"] is False and meta["generator"]["p"] == 0.5
    assert (
        main(["synth", "xor", "--out", str(tmp_path / "xor"), "--d", "3", "--n-train", "50"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["bank_rows"] == 8
    assert (
        main(["synth", "xnor", "--out", str(tmp_path / "bad"), "--n-bits", "8", "--dim", "10"]) == 2
    )
    assert "signal width" in capsys.readouterr().err
