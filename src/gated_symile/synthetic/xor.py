"""Binary XOR dataset of the Symile paper (docs/method.md §16), written in the tensor format.

a, b ~ Bernoulli(½)^d independently and c = a XOR b (with probability ``p_hat``, else c = a). Every
pair of modalities is then independent when p_hat = 1, so a pairwise (CLIP) score cannot predict b
from a and c, while the three-way (Symile) score can. The task is to pick b among all 2^d bit
vectors, so each split carries an explicit bank ``bank_b.npy`` (row k = the bits of k,
little-endian) and the true row per sample in ``bank_index.npy``. The three splits are drawn from
independent generators derived from ``seed``, as in the paper's separately generated sets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gated_symile.schemas import check_section
from gated_symile.data.tensor_format import SPLITS, dataset_folder, write_metadata, write_split

MODALITIES: tuple[str, ...] = ("a", "b", "c")
TARGET = "b"


@dataclass(frozen=True)
class XorConfig:
    """``d`` bits per modality, ``p_hat`` = P(c = a XOR b), split sizes and the master seed."""

    d: int = 5
    p_hat: float = 1.0
    n_train: int = 10000
    n_val: int = 1000
    n_test: int = 5000
    seed: int = 0

    def __post_init__(self) -> None:
        check_section(asdict(self), "synth.xor")

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}


def bit_bank(d: int) -> np.ndarray:
    """All 2^d bit vectors, float32 (2^d, d); row k holds the bits of k, least significant first."""
    k = np.arange(2**d, dtype=np.int64)[:, None]
    return ((k >> np.arange(d, dtype=np.int64)) & 1).astype(np.float32)


def generate_xor_split(
    n: int, d: int, p_hat: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One split: ``a``, ``b``, ``c`` float32 0/1 (n, d), ``c_is_xor`` and ``bank_index`` int64."""
    a = rng.integers(0, 2, size=(n, d), dtype=np.int64)
    b = rng.integers(0, 2, size=(n, d), dtype=np.int64)
    c_is_xor = rng.random(n) < p_hat
    c = np.where(c_is_xor[:, None], a ^ b, a)
    return {
        "a": a.astype(np.float32),
        "b": b.astype(np.float32),
        "c": c.astype(np.float32),
        "c_is_xor": c_is_xor,
        "bank_index": (b << np.arange(d, dtype=np.int64)).sum(axis=1),
    }


def write_xor(out: Path, cfg: XorConfig) -> dict[str, Any]:
    """Generate the three splits, write them to ``out`` in the tensor format; return a summary."""
    with dataset_folder(out) as work:
        bank = bit_bank(cfg.d)
        split_seeds = np.random.SeedSequence(cfg.seed).spawn(len(SPLITS))
        xor_rate = {}
        for name, seed_seq in zip(SPLITS, split_seeds):
            n = cfg.sizes[name]
            data = generate_xor_split(n, cfg.d, cfg.p_hat, np.random.default_rng(seed_seq))
            arrays = {m: data[m] for m in MODALITIES}
            arrays.update({f"bank_{TARGET}": bank, "bank_index": data["bank_index"]})
            index = {
                "sample_id": np.arange(n, dtype=np.int64),
                "label": data["bank_index"],
                "c_is_xor": data["c_is_xor"],
            }
            write_split(work / name, arrays, index)
            xor_rate[name] = float(data["c_is_xor"].mean())
        write_metadata(
            work,
            {
                "dataset": "xor",
                "modalities": list(MODALITIES),
                "target": TARGET,
                "protocol": "bank",
                "eval_batch": None,
                "splits": cfg.sizes,
                "inputs": {m: {"kind": "float32", "shape": [cfg.d]} for m in MODALITIES},
                "seeds": {"xor": cfg.seed},
                "sources": {},
                "generator": asdict(cfg),
            },
        )
    return {
        "out": str(out),
        "dataset": "xor",
        "splits": cfg.sizes,
        "bank_rows": 2**cfg.d,
        "c_is_xor_rate": xor_rate,
    }
