"""The generative model: shared latents and the measurements they drive (see docs/synthetic-ukb.md).

Per participant: continuous health latents ``z`` (``n_latents``, N(0, 1)) and two independent bit
vectors ``u``, ``v`` (``n_bits``, fair coins).  In +-1 space (``U = 2u - 1``, ``V = 2v - 1``):

- NMR log-concentrations ``= 0.7 s Az z + 0.5 s Au U + e`` (every biomarker loads on ``z``; each
  bit ``u_k`` on its own group of biomarkers);
- hospital codes: code ``c`` of the lifetime history with probability
  ``sigmoid(b_c + s Bz_c z + 1.5 s Bv_c V)`` (six indicator codes per bit ``v_k``);
- Olink NPX ``= a + 0.4 s Cz z + 0.8 s D (U * V) + e``: half the proteins carry ``u_k XNOR v_k``.

``s`` is ``signal_strength``.  ``U * V`` is independent of ``U`` alone and of ``V`` alone, so a
pairwise (CLIP) score cannot use that half of the proteome while a three-way (Symile) score can.
Loadings come from a generator seeded by ``(seed, PARAMS_STREAM)``; per-chunk draws from
``(seed, CHUNK_STREAM, chunk)``, so the output does not depend on how chunks are scheduled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gated_symile.synthetic.ukb.catalogue import (
    BIOCHEMISTRY,
    N_ICD10_CODES,
    NMR_FIELDS,
    OLINK_PROTEIN_CODES,
)
from gated_symile.synthetic.ukb.config import UkbSynthConfig

PARAMS_STREAM, EID_STREAM, CHUNK_STREAM, ECG_STREAM, ORPHAN_STREAM = 0, 1, 2, 3, 4
_INDICATORS_PER_BIT = 6


@dataclass(frozen=True)
class Params:
    """Loadings shared by every participant (drawn once per seed)."""

    protein_ids: np.ndarray  # (P,) sorted coding-143 ids
    nmr_base: np.ndarray  # (249,) typical concentration
    nmr_sigma: np.ndarray  # (249,) log-scale spread
    nmr_z: np.ndarray  # (249, Kz)
    nmr_u: np.ndarray  # (249, Kb)
    bio_z: np.ndarray  # (30, Kz)
    code_base: np.ndarray  # (V,) base logits, decreasing
    code_z: np.ndarray  # (V, Kz)
    code_v: np.ndarray  # (V, Kb)
    olink_base: np.ndarray  # (P,)
    olink_z: np.ndarray  # (P, Kz)
    olink_xnor: np.ndarray  # (P, Kb)


def draw_params(cfg: UkbSynthConfig) -> Params:
    rng = np.random.default_rng([cfg.seed, PARAMS_STREAM])
    kz, kb, n_nmr, n_p = cfg.n_latents, cfg.n_bits, len(NMR_FIELDS), cfg.n_proteins
    protein_ids = np.sort(rng.choice(OLINK_PROTEIN_CODES, n_p, replace=False) + 1).astype(np.int64)
    nmr_u = np.zeros((n_nmr, kb))
    nmr_u[np.arange(n_nmr), rng.integers(0, kb, n_nmr)] = rng.choice([-1.0, 1.0], n_nmr)
    code_base = np.linspace(-2.2, -8.0, N_ICD10_CODES) + rng.normal(0.0, 0.3, N_ICD10_CODES)
    code_v = np.zeros((N_ICD10_CODES, kb))
    indicators = rng.permutation(max(120, kb * _INDICATORS_PER_BIT))[: kb * _INDICATORS_PER_BIT]
    code_v[indicators, np.repeat(np.arange(kb), _INDICATORS_PER_BIT)[: indicators.size]] = (
        rng.choice([-1.0, 1.0], indicators.size)
    )
    code_base[indicators] = np.maximum(code_base[indicators], -2.5)
    olink_xnor = np.zeros((n_p, kb))
    xnor_rows = rng.permutation(n_p)[: n_p // 2]
    olink_xnor[xnor_rows, np.arange(xnor_rows.size) % kb] = rng.choice([-1.0, 1.0], xnor_rows.size)
    return Params(
        protein_ids=protein_ids,
        nmr_base=np.exp(rng.uniform(np.log(0.01), np.log(5.0), n_nmr)),
        nmr_sigma=rng.uniform(0.15, 0.35, n_nmr),
        nmr_z=rng.normal(0.0, 1.0, (n_nmr, kz)) / np.sqrt(kz),
        nmr_u=nmr_u,
        bio_z=rng.normal(0.0, 1.0, (len(BIOCHEMISTRY), kz)) / np.sqrt(kz),
        code_base=code_base,
        code_z=rng.normal(0.0, 0.5, (N_ICD10_CODES, kz)),
        code_v=code_v,
        olink_base=rng.normal(0.0, 1.0, n_p),
        olink_z=rng.normal(0.0, 1.0, (n_p, kz)) / np.sqrt(kz),
        olink_xnor=olink_xnor,
    )


@dataclass(frozen=True)
class Latents:
    z: np.ndarray  # (m, Kz) float
    u: np.ndarray  # (m, Kb) {0, 1}
    v: np.ndarray  # (m, Kb) {0, 1}

    @property
    def xnor(self) -> np.ndarray:
        """``u XNOR v`` in +-1 space: ``(2u - 1)(2v - 1)``."""
        return (2.0 * self.u - 1.0) * (2.0 * self.v - 1.0)


def draw_latents(rng: np.random.Generator, m: int, cfg: UkbSynthConfig) -> Latents:
    return Latents(
        z=rng.standard_normal((m, cfg.n_latents)),
        u=rng.integers(0, 2, (m, cfg.n_bits)).astype(np.int8),
        v=rng.integers(0, 2, (m, cfg.n_bits)).astype(np.int8),
    )


def nmr_values(rng: np.random.Generator, p: Params, lat: Latents, s: float) -> np.ndarray:
    """(m, 249) positive concentrations (mmol/l, ratios, %), 5 significant-ish decimals."""
    x = s * (0.7 * lat.z @ p.nmr_z.T + 0.5 * (2.0 * lat.u - 1.0) @ p.nmr_u.T)
    x = x + rng.standard_normal(x.shape)
    return np.round(p.nmr_base * np.exp(p.nmr_sigma * x), 5)


def biochemistry_values(rng: np.random.Generator, p: Params, lat: Latents, s: float) -> np.ndarray:
    """(m, 30) blood biochemistry in the showcase units; extra missingness per analyte (NaN)."""
    median = np.array([row[2] for row in BIOCHEMISTRY])
    log_sd = np.array([row[3] for row in BIOCHEMISTRY])
    missing = np.array([row[4] for row in BIOCHEMISTRY])
    x = s * 0.6 * lat.z @ p.bio_z.T + rng.standard_normal((lat.z.shape[0], median.size))
    values = np.round(median * np.exp(log_sd * x), 4)
    values[rng.random(values.shape) < missing] = np.nan
    return values


def code_sets(rng: np.random.Generator, p: Params, lat: Latents, s: float) -> np.ndarray:
    """(m, V) bool: the ICD-10 three-character codes of each participant's hospital history."""
    logits = p.code_base + s * (lat.z @ p.code_z.T + 1.5 * (2.0 * lat.v - 1.0) @ p.code_v.T)
    return rng.random(logits.shape) < 1.0 / (1.0 + np.exp(-logits))


def olink_values(rng: np.random.Generator, p: Params, lat: Latents, s: float) -> np.ndarray:
    """(m, P) NPX (log2 scale), 4 decimals."""
    x = p.olink_base + s * (0.4 * lat.z @ p.olink_z.T + 0.8 * lat.xnor @ p.olink_xnor.T)
    return np.round(x + 0.6 * rng.standard_normal(x.shape), 4)
