"""The two published claims, reproduced at small size on CPU through the real CLI stages.

1. Symile paper (arXiv 2411.01053), binary XOR at p-hat = 1: Symile retrieves b from (a, c)
   almost perfectly, CLIP stays at chance (pairwise dot products carry no information about b).
2. Gated Symile paper (arXiv 2604.05834), Synthetic-XNOR at p = 1 (every sample has one
   misaligned modality): Gated Symile beats ungated Symile, mean test top-1 over 3 seeds.

The methods and training settings are the repository's config.yaml, unchanged; only the
dataset sizes and the XNOR distractor noise are reduced so that the whole file runs in minutes (at the
paper's noise level the gap needs 30,000 samples: see README "Results").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from gated_symile.cli import main
from gated_symile.config import resolve_run_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def repository_config() -> dict:
    """config.yaml as shipped (methods, per-dataset training settings), without tracking."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["tracking"]["uri"] = "none"
    config["train"]["progress"] = "never"
    return config


def train_and_test(config: dict, dataset: str, method: str, seed: int, tensors: Path, out: Path) -> float:
    run_cfg = resolve_run_config(config, dataset, method, seed)
    run_dir = out / f"{method}-seed{seed}"
    argv = ["train", "--tensors", str(tensors), "--run-config", json.dumps(run_cfg.to_dict())]
    assert main([*argv, "--out", str(run_dir), "--tracking-uri", "none"]) == 0
    metrics = run_dir / "metrics.json"
    argv = ["evaluate", "--run", str(run_dir), "--tensors", str(tensors), "--out", str(metrics)]
    assert main([*argv, "--bootstrap-n", "0", "--tracking-uri", "none"]) == 0
    return json.loads(metrics.read_text())["metrics"]["top1"]


def test_binary_xor_symile_near_one_clip_at_chance(tmp_path):
    tensors = tmp_path / "xor"
    argv = ["synth", "xor", "--out", str(tensors), "--d", "5", "--p-hat", "1.0"]
    assert main([*argv, "--n-train", "4000", "--n-val", "500", "--n-test", "2000", "--seed", "0"]) == 0
    config = repository_config()
    symile = train_and_test(config, "xor", "symile", 0, tensors, tmp_path)
    clip = train_and_test(config, "xor", "clip", 0, tensors, tmp_path)
    chance = 1 / 32
    assert symile >= 0.95, f"Symile top-1 {symile:.3f} on binary XOR"
    assert clip <= 3 * chance, f"CLIP top-1 {clip:.3f} should be at chance ({chance:.3f})"


def test_synthetic_xnor_gated_symile_beats_symile_at_p1(tmp_path):
    tensors = tmp_path / "xnor"
    argv = ["synth", "xnor", "--out", str(tensors), "--n-samples", "8000", "--n-bits", "16"]
    argv += ["--dim", "64", "--distractor-std", "1.0", "--p", "1.0", "--seed", "420"]
    assert main(argv) == 0
    config = repository_config()
    top1 = {
        method: [train_and_test(config, "xnor", method, seed, tensors, tmp_path) for seed in (0, 1, 2)]
        for method in ("symile", "gated_symile")
    }
    gated, plain = np.mean(top1["gated_symile"]), np.mean(top1["symile"])
    assert gated > plain + 0.05, f"gated {top1['gated_symile']} vs symile {top1['symile']}"
