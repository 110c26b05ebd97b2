"""Oracle of the binary XOR dataset (``synthetic.xor``, docs/oracle.md).

``a, b`` uniform on {0,1}^d, ``c = a XOR b`` with probability ``p_hat`` (else ``c = a``); retrieve ``b``
among all 2^d bit vectors from ``(a, c)``. Each of ``a`` and ``c`` alone is independent of ``b``, so
the pairwise oracle is chance; the oracle picks ``a XOR c``, right unless ``c = a`` came from the
copy branch: ``oracle_top1 = p_hat + (1 - p_hat) 2^-d`` exactly (for p = 0; a misaligned cell is
estimated by Monte Carlo with the ratio below).

``R_ac(a, c; y) = [p_hat 1(c = a ^ y) + (1 - p_hat) 1(c = a)] / [p_hat 2^-d + (1 - p_hat) 1(c = a)]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gated_symile.synthetic.oracle import core
from gated_symile.synthetic.oracle.core import Rows
from gated_symile.synthetic.xor import XorConfig, bit_bank

if TYPE_CHECKING:
    from gated_symile.synthetic.oracle.cells import Cell


class XorDisplayModel:
    """Retrieve ``b`` from ``(a, c)`` against the bank of all 2^d vectors."""

    target = "b"
    queries: tuple[str, ...] = ("a", "c")

    def __init__(self, cfg: XorConfig) -> None:
        self.cfg = cfg
        self.bank = bit_bank(cfg.d).astype(np.int8)

    def sample(self, rng: np.random.Generator, n: int) -> Rows:
        d = self.cfg.d
        a = rng.integers(0, 2, size=(n, d), dtype=np.int8)
        b = rng.integers(0, 2, size=(n, d), dtype=np.int8)
        is_xor = rng.random(n) < self.cfg.p_hat
        c = np.where(is_xor[:, None], a ^ b, a)
        return {"a": a, "b": b, "c": c}

    def bank_index(self, rows: Rows) -> np.ndarray:
        """Row of ``bank`` holding each row's ``b`` (bit k of the index = b_k)."""
        return (rows["b"].astype(np.int64) << np.arange(self.cfg.d, dtype=np.int64)).sum(axis=1)

    def log_ratio(
        self, authentic: frozenset[str], queries: Rows, targets: np.ndarray, cands: np.ndarray
    ) -> np.ndarray:
        if not {"a", "c"} <= authentic:
            return np.zeros(cands.shape)  # a alone and c alone are independent of b
        targets = targets[cands]
        a, c, p_hat = queries["a"][:, None, :], queries["c"][:, None, :], self.cfg.p_hat
        copy = (a == c).all(axis=2)  # (Q, 1)
        xor_match = ((a ^ targets) == c).all(axis=2)  # (Q, K)
        num = p_hat * xor_match + (1.0 - p_hat) * copy
        den = p_hat * 2.0 ** -self.cfg.d + (1.0 - p_hat) * copy
        with np.errstate(divide="ignore"):
            return np.log(num) - np.log(den)


def exact_clean(cfg: XorConfig) -> tuple[float, float, float]:
    """``(oracle_top1, pairwise_oracle_top1, chance)`` of the clean task, in closed form."""
    chance = 2.0 ** -cfg.d
    return cfg.p_hat + (1.0 - cfg.p_hat) * chance, chance, chance


def estimate(cell: Cell) -> dict[str, Any]:
    """Exact for the clean task, Monte Carlo when the test split is misaligned."""
    from gated_symile.synthetic.oracle.cells import generator_block

    cfg = XorConfig(**generator_block(cell.meta, XorConfig))
    corruption = cell.misalign.corruption(cell.p, XorDisplayModel.queries)
    if not corruption.active:
        oracle, pairwise, chance = exact_clean(cfg)
        est = core.Estimate(oracle, 0.0, pairwise, 0.0, chance, 0, 0)
        return core.result_document(est, "bank", 2**cfg.d, cell.test_rows, "exact", "bits")
    model = XorDisplayModel(cfg)
    lay = core.explicit_bank_layout(cell.test_rows, model.bank, model.bank_index)
    est = core.simulate(model, cell.test_rows, lay, corruption, n_mc=cell.n_mc, seed=cell.seed)
    return core.result_document(est, "bank", 2**cfg.d, cell.test_rows, "monte_carlo", "bits")
