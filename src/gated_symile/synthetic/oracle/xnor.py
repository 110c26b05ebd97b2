"""Oracle display model of Synthetic-XNOR (``synthetic.xnor``, docs/oracle.md).

The signal coordinates of every modality are exact ±1 codes of the latent bits and the distractor
coordinates are independent noise, so the displays are the bits themselves: B shows ``u`` (through a
binary symmetric channel of flip probability ``p_flips[0]``), C shows ``v`` (``p_flips[1]``), A shows
``(u, v)`` (``embed_mode: u_v_uv``; its third block ``rule(u, v)`` is a function of them) or only
``x = rule(u, v)`` (``xnor_only``). Retrieval of A within consecutive test blocks of ``eval_batch``.

Density ratios: with ``u_v_uv`` B and C are conditionally independent given A, so
``R_BC = R_B R_C`` with ``R_B = prod_k 2 P(b_k | u_k)``: the pairwise oracle equals the oracle (both
near 1: 16 exact bits identify a row). With ``xnor_only`` B and C are each independent of A, so the
pairwise oracle is chance, and ``R_BC = prod_k 2 P(x_k | b_k, c_k)``. ``swap_signal`` corruption takes
the signal from another row of the whole dataset (unobservable); ``gaussian`` replaces the vector
by noise (recognisable, so the oracle knows the state).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gated_symile.synthetic.oracle import core
from gated_symile.synthetic.oracle.core import Corruption, Rows
from gated_symile.synthetic.xnor import XnorConfig

if TYPE_CHECKING:
    from gated_symile.synthetic.oracle.cells import Cell


class XnorDisplayModel:
    """Retrieve A from (B, C); see the module docstring."""

    target = "a"
    queries: tuple[str, ...] = ("b", "c")

    def __init__(self, cfg: XnorConfig) -> None:
        self.cfg = cfg
        self.flip_b, self.flip_c = cfg.p_flips
        agree = (1 - self.flip_b) * (1 - self.flip_c) + self.flip_b * self.flip_c
        self.p_rule = agree  # P(rule(b_k, c_k) = rule(u_k, v_k))

    def rule(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        x = u ^ v
        return x if self.cfg.a_rule == "xor" else 1 - x

    def sample(self, rng: np.random.Generator, n: int) -> Rows:
        k = self.cfg.n_bits
        u = rng.integers(0, 2, size=(n, k), dtype=np.int8)
        v = rng.integers(0, 2, size=(n, k), dtype=np.int8)
        b = u ^ (rng.random((n, k)) < self.flip_b).astype(np.int8)
        c = v ^ (rng.random((n, k)) < self.flip_c).astype(np.int8)
        a = np.concatenate([u, v], axis=1) if self.cfg.embed_mode == "u_v_uv" else self.rule(u, v)
        return {"a": a, "b": b, "c": c}

    def log_ratio(
        self, authentic: frozenset[str], queries: Rows, targets: np.ndarray, cands: np.ndarray
    ) -> np.ndarray:
        k = self.cfg.n_bits
        targets = targets[cands]
        out = np.zeros(cands.shape)
        with np.errstate(divide="ignore"):
            if self.cfg.embed_mode == "u_v_uv":
                for name, offset, flip in (("b", 0, self.flip_b), ("c", k, self.flip_c)):
                    if name in authentic:
                        same = queries[name][:, None, :] == targets[:, :, offset : offset + k]
                        out += np.log(2.0 * np.where(same, 1.0 - flip, flip)).sum(axis=2)
            elif {"b", "c"} <= authentic:
                same = self.rule(queries["b"], queries["c"])[:, None, :] == targets
                out += np.log(2.0 * np.where(same, self.p_rule, 1.0 - self.p_rule)).sum(axis=2)
        return out


def xnor_corruption(cfg: XnorConfig) -> Corruption:
    """The generator's own corruption of B and C (A is never corrupted)."""
    return Corruption(
        p=cfg.p,
        mode="swap" if cfg.corr_mode == "swap_signal" else "noise",
        modalities=("b", "c"),
        exclusive=cfg.exclusive,
        weights=(cfg.bc_corr_split, 1.0 - cfg.bc_corr_split) if cfg.exclusive else None,
    )


def estimate(cell: Cell) -> dict[str, Any]:
    """In-batch retrieval over the test split; the generator config comes from the metadata."""
    from gated_symile.synthetic.oracle.cells import generator_block

    cfg = XnorConfig(**generator_block(cell.meta, XnorConfig))
    block = int(cell.meta["eval_batch"])
    est = core.simulate(
        XnorDisplayModel(cfg), cfg.n_samples, core.inbatch_layout(cfg.n_samples, cell.test_rows, block),
        xnor_corruption(cfg), n_mc=cell.n_mc, seed=cell.seed,
    )  # fmt: skip
    return core.result_document(est, "inbatch", block, cell.test_rows, "monte_carlo", "latent bits")
