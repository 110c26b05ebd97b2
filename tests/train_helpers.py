"""Shared fixtures for the training, resume and tracking tests: a tiny Synthetic-XNOR dataset and
run configs sized to train in about a second per epoch on one CPU thread."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gated_symile.config import RunConfig, resolve_run_config

BIN = Path(sys.executable).parent
OBJECTIVES = ("clip", "symile", "gated_symile")


def write_tiny_xnor(out: Path, n_samples: int = 640, p: float = 0.5) -> Path:
    """A small XNOR tensor dataset (4 bits, width 16, eval batches of 16)."""
    from gated_symile.synthetic.xnor import XnorConfig, write_xnor

    write_xnor(out, XnorConfig(n_samples=n_samples, n_bits=4, dim=16, p=p, eval_batch=16, seed=7))
    return out


def workflow_config(**train: Any) -> dict[str, Any]:
    """A workflow-style config (defaults + overrides) like config.yaml, but tiny; ``train`` keys
    go into the dataset overrides (they win over the defaults)."""
    return {
        "methods": {
            "clip": {"objective": "clip", "overrides": {"model": {"logit_scale": {"init": 2.659}}}},
            "symile": {"objective": "symile"},
            "gated_symile": {
                "objective": "gated_symile",
                "overrides": {"loss": {"negatives": "full"}},
            },
        },
        "datasets": {
            "xnor": {"overrides": {"train": {"epochs": 3, "batch_size": 32, "lr": 3.0e-3, **train}}}
        },
        "model": {
            "embed_dim": 16,
            "embedding_norm": "l2_dvs",
            "logit_scale": {"init": -0.5525},
            "encoders": {m: {"arch": "mlp_relu", "hidden": [32]} for m in ("a", "b", "c")},
        },
        "gate": {"d_k": 16},
        "train": {"progress": "never", "patience": 0},
        "evaluate": {"batch_size": 128},
    }


def tiny_run_config(method: str, seed: int = 0, **train: Any) -> RunConfig:
    return resolve_run_config(workflow_config(**train), "xnor", method, seed)


def inline(run_cfg: RunConfig) -> str:
    """The run config as the Snakemake rule passes it: inline JSON."""
    return json.dumps(run_cfg.to_dict())


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
