"""Synthetic-XNOR misalignment benchmark (docs/method.md §12), written in the tensor format.

Three modalities share K latent bit pairs (u, v). A carries u, v and a = xnor(u, v); B carries u
(twice) and C carries v (twice), laid out so that, in ±1 space, B ⊙ C equals A's signal block
exactly: only the *three-way* interaction identifies a, which is what Symile's multilinear score can
see and a pairwise score cannot. Low-SNR Gaussian distractors fill the rest of each vector, and a
fraction p of samples has B or C "misaligned" (its signal taken from another sample, or replaced by
noise) so a gate has something to detect. All randomness comes from one generator seeded by
``cfg.seed``; the corruption masks are drawn once and stored as flags next to the data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gated_symile.errors import ConfigError
from gated_symile.schemas import check_section
from gated_symile.data.tensor_format import SPLITS, dataset_folder, write_metadata, write_split

MODALITIES: tuple[str, ...] = ("a", "b", "c")
_CORR_MOD_SEVERAL = len(MODALITIES) + 1


@dataclass(frozen=True)
class XnorConfig:
    """Generator settings; names and defaults follow [ref-G] ``synthetic_xnor.yaml`` (§12 table).

    ``p`` is the B/C corruption probability (p_corrs = [0, p, p]); ``exclusive`` corrupts at most
    one of B/C per sample, B with probability ``bc_corr_split``; ``eval_batch`` is the in-batch
    retrieval bank size written to metadata.
    """

    n_samples: int = 30000
    n_bits: int = 16
    dim: int = 128
    a_rule: Literal["xnor", "xor"] = "xnor"
    embed_mode: Literal["u_v_uv", "xnor_only"] = "u_v_uv"
    signal_scale: float = 1.0
    distractor_std: float = 3.0
    p: float = 1.0
    p_flips: tuple[float, float] = (0.0, 0.0)
    corr_mode: Literal["swap_signal", "gaussian"] = "swap_signal"
    exclusive: bool = True
    bc_corr_split: float = 0.5
    eval_batch: int = 128
    seed: int = 420

    def __post_init__(self) -> None:
        check_section(asdict(self), "synth.xnor")
        # Cross-field (JSON Schema compares a value with constants, not with another setting).
        if self.dim < self.signal_width:
            raise ConfigError(
                f"synth.xnor.dim: must be >= the signal width {self.signal_width}, got {self.dim}"
            )

    @property
    def signal_width(self) -> int:
        """Leading coordinates that carry signal: 3K (``u_v_uv``) or K (``xnor_only``)."""
        return 3 * self.n_bits if self.embed_mode == "u_v_uv" else self.n_bits


def generate_xnor(cfg: XnorConfig) -> dict[str, np.ndarray]:
    """All samples in generation order: ``a``, ``b``, ``c`` (n, dim) float32, flags and label.

    Returned keys: ``a``, ``b``, ``c``, ``corr_a``, ``corr_b``, ``corr_c`` (bool), ``corr_mod``
    (int64: 0 none, 1 A, 2 B, 3 C, 4 several), ``label`` (int64, bits of a little-endian) and
    ``split`` (a permutation of the rows: first 80 % train, next 10 % val, rest test).
    """
    rng = np.random.default_rng(cfg.seed)
    n, k = cfg.n_samples, cfg.n_bits
    u = rng.integers(0, 2, size=(n, k), dtype=np.int8)
    v = rng.integers(0, 2, size=(n, k), dtype=np.int8)
    a = (u ^ v) if cfg.a_rule == "xor" else 1 - (u ^ v)
    b_bits = u ^ _flips(rng, (n, k), cfg.p_flips[0])
    c_bits = v ^ _flips(rng, (n, k), cfg.p_flips[1])
    ones = np.ones_like(u)
    if cfg.embed_mode == "u_v_uv":
        signals = {"a": (u, v, a), "b": (b_bits, ones, b_bits), "c": (ones, c_bits, c_bits)}
    else:
        signals = {"a": (a,), "b": (b_bits,), "c": (c_bits,)}

    clean = {}
    for m in MODALITIES:
        x = rng.standard_normal((n, cfg.dim), dtype=np.float32) * np.float32(cfg.distractor_std)
        bits = np.concatenate(signals[m], axis=1)
        x[:, : cfg.signal_width] = (2 * bits.astype(np.float32) - 1) * np.float32(cfg.signal_scale)
        clean[m] = x

    corr = {"a": np.zeros(n, dtype=bool)}  # p_corrs[0] = 0: A is the anchor, never corrupted
    if cfg.exclusive:
        corrupted = rng.random(n) < cfg.p
        choose_b = rng.random(n) < cfg.bc_corr_split
        corr["b"], corr["c"] = corrupted & choose_b, corrupted & ~choose_b
    else:
        corr["b"] = rng.random(n) < cfg.p
        corr["c"] = rng.random(n) < cfg.p

    out = {m: clean[m].copy() for m in MODALITIES}
    perms = {m: rng.permutation(n) for m in MODALITIES}
    for m in MODALITIES:
        rows = np.flatnonzero(corr[m])
        if cfg.corr_mode == "swap_signal":
            sw = cfg.signal_width
            out[m][rows, :sw] = clean[m][perms[m][rows], :sw]
        else:
            noise = rng.standard_normal((rows.size, cfg.dim), dtype=np.float32)
            out[m][rows] = noise * np.float32(cfg.distractor_std)

    flags = np.stack([corr[m] for m in MODALITIES], axis=1)
    n_corr = flags.sum(axis=1)
    corr_mod = np.where(
        n_corr > 1, _CORR_MOD_SEVERAL, np.where(n_corr == 1, flags.argmax(axis=1) + 1, 0)
    )
    label = (a.astype(np.int64) << np.arange(k, dtype=np.int64)).sum(axis=1)
    return {
        **out,
        **{f"corr_{m}": corr[m] for m in MODALITIES},
        "corr_mod": corr_mod.astype(np.int64),
        "label": label,
        "split": rng.permutation(n),
    }


def split_sizes(n: int) -> dict[str, int]:
    """80/10/10: n_train = floor(0.8 n), n_val = floor(0.1 n), n_test = the rest."""
    n_train, n_val = (8 * n) // 10, n // 10
    return {"train": n_train, "val": n_val, "test": n - n_train - n_val}


def write_xnor(out: Path, cfg: XnorConfig) -> dict[str, Any]:
    """Generate Synthetic-XNOR and write it to ``out`` in the tensor format; returns a summary."""
    data = generate_xnor(cfg)
    sizes = split_sizes(cfg.n_samples)
    with dataset_folder(out) as work:
        start = 0
        for name in SPLITS:
            rows = data["split"][start : start + sizes[name]]
            start += sizes[name]
            index = {"sample_id": rows.astype(np.int64), "label": data["label"][rows]}
            index.update({col: data[col][rows] for col in ("corr_a", "corr_b", "corr_c", "corr_mod")})
            write_split(work / name, {m: data[m][rows] for m in MODALITIES}, index)
        write_metadata(
            work,
            {
                "dataset": "xnor",
                "modalities": list(MODALITIES),
                "target": "a",
                "protocol": "inbatch",
                "eval_batch": cfg.eval_batch,
                "splits": sizes,
                "inputs": {m: {"kind": "float32", "shape": [cfg.dim]} for m in MODALITIES},
                "seeds": {"xnor": cfg.seed},
                "sources": {},
                "generator": {
                    **asdict(cfg),
                    "p_flips": list(cfg.p_flips),
                    "signal_width": cfg.signal_width,
                },
            },
        )
    return {
        "out": str(out),
        "dataset": "xnor",
        "splits": sizes,
        "corrupted": {m: int(data[f"corr_{m}"].sum()) for m in MODALITIES},
        "signal_width": cfg.signal_width,
    }


def _flips(rng: np.random.Generator, shape: tuple[int, int], p: float) -> np.ndarray:
    """Binary-symmetric-channel flip bits; drawn only when p > 0 (the reference's draw order)."""
    if p <= 0:
        return np.zeros(shape, dtype=np.int8)
    return (rng.random(shape) < p).astype(np.int8)
