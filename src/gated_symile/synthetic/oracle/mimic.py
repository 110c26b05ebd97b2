"""Oracle display model of the synthetic MIMIC generator (docs/synthetic-mimic.md, docs/oracle.md).

Rows are drawn with the generator's own latent model (``synthetic.mimic.latents.draw_latents``):
the ECG shows ``(h_ecg, a_ecg, a2_ecg)``, the labs ``(f_lab, b_lab, b2_lab)``, the CXR
``(h_cxr, f_cxr, c_cxr, c2_cxr)``, each a noisy copy with coupling ``w = tanh(1.5 s)``. The oracle scores these *displayed* latents,
not the rendered records: it is the Bayes rate of a scorer that reads every record perfectly, an
upper bound for any model trained on the records (docs/oracle.md, "What the MIMIC oracle sees").

Exact density ratios (``rho = w^2``: correlation of two displayed copies of one latent;
``q = (1 - w) / 2``: flip probability of a displayed bit):

- ECG alone vs CXR: the bivariate normal ratio of ``(h_ecg, h_cxr)``; ``a`` is independent of the CXR;
- labs alone vs CXR: the same for ``(f_lab, f_cxr)``;
- ECG and labs vs CXR: both, times ``2 P(c_cxr | a_ecg, b_lab)`` per XNOR finding, where
  ``c_cxr = XNOR(a_ecg, b_lab)`` holds with probability ``(1-q)^3 + 3 q^2 (1-q)`` (an even number
  of the three display flips).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gated_symile.synthetic.mimic.latents import coupling, draw_latents
from gated_symile.synthetic.oracle import core
from gated_symile.synthetic.oracle.core import Rows

if TYPE_CHECKING:
    from gated_symile.synthetic.oracle.cells import Cell

MODALITIES: tuple[str, ...] = ("ecg", "labs", "cxr")
_MAX_RHO = 1.0 - 1e-9  # tanh saturates to 1 in float64 for huge strengths


def gaussian_log_ratio(x: np.ndarray, y: np.ndarray, rho: float) -> np.ndarray:
    """``log N2(x, y; rho) / (N(x) N(y))`` for standard normals with correlation ``rho``."""
    rho = min(rho, _MAX_RHO)
    one_minus = 1.0 - rho * rho
    return -(rho * rho * (x * x + y * y) - 2.0 * rho * x * y) / (2.0 * one_minus) - 0.5 * np.log(one_minus)


class MimicDisplayModel:
    """Retrieve the CXR from (ECG, labs); see the module docstring."""

    target = "cxr"
    queries: tuple[str, ...] = ("ecg", "labs")

    def __init__(self, signal_strength: float) -> None:
        self.w = coupling(signal_strength)
        self.rho = self.w * self.w
        q = (1.0 - self.w) / 2.0
        self.p_match = (1.0 - q) ** 3 + 3.0 * q * q * (1.0 - q)
        self.signal_strength = signal_strength

    def sample(self, rng: np.random.Generator, n: int) -> Rows:
        lat = draw_latents(rng, n, self.signal_strength)
        return {
            "ecg": np.concatenate([lat.h_ecg[:, None], lat.bits("ecg")], axis=1),
            "labs": np.concatenate([lat.f_lab[:, None], lat.bits("labs")], axis=1),
            "cxr": np.concatenate([lat.h_cxr[:, None], lat.f_cxr[:, None], lat.bits("cxr")], axis=1),
        }

    def log_ratio(
        self, authentic: frozenset[str], queries: Rows, targets: np.ndarray, cands: np.ndarray
    ) -> np.ndarray:
        targets = targets[cands]
        out = np.zeros(cands.shape)
        if "ecg" in authentic:
            out += gaussian_log_ratio(queries["ecg"][:, :1], targets[:, :, 0], self.rho)
        if "labs" in authentic:
            out += gaussian_log_ratio(queries["labs"][:, :1], targets[:, :, 1], self.rho)
        if {"ecg", "labs"} <= authentic:
            xnor = queries["ecg"][:, None, 1:] == queries["labs"][:, None, 1:]  # (Q, 1, bits)
            match = targets[:, :, 2:] == xnor
            with np.errstate(divide="ignore"):
                logs = np.log(2.0 * np.where(match, self.p_match, 1.0 - self.p_match))
            out += logs.sum(axis=2)
        return out


def estimate(cell: Cell) -> dict[str, Any]:
    """The Symile-MIMIC protocol: each test row against itself and ``candidate_n - 1`` others."""
    from gated_symile.synthetic.oracle.cells import need

    model = MimicDisplayModel(float(need(cell.generator, "signal_strength", cell.dataset)))
    k = int(cell.meta["candidate_n"]["test"])
    est = core.simulate(
        model, cell.test_rows, core.candidate_layout(cell.test_rows, k),
        cell.misalign.corruption(cell.p, model.queries), n_mc=cell.n_mc, seed=cell.seed,
    )  # fmt: skip
    return core.result_document(est, "candidates", k, cell.test_rows, "monte_carlo", "displayed latents")
