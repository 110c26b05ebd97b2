"""Oracle of the UK-Biobank-style generator (docs/synthetic-ukb.md, docs/oracle.md): Olink from (NMR, EHR).

Rows are drawn from the generator's model with its own loadings (``synthetic.ukb.model``, the
same seed as the release): latents ``z`` (continuous), bits ``U``, ``V`` (±1) and ``W = U V``;

- NMR (standardised log scale): ``y = A z + B U + e``, ``e ~ N(0, I)``, each row of ``B`` on one bit;
- EHR: visible baseline codes ``x_c ~ Bernoulli(pi sigmoid(l_c + Cz_c z + Cv_c V))`` for participants
  with hospital records (``hes_frac``), none otherwise; ``pi`` is the chance that a code's episode
  lies before baseline and after the ICD-10 start (from the generator's date ranges);
- Olink: ``o = D z + E W + 0.6 e``, each row of ``E`` on one bit.

Scoring. ``p(z | x_A)`` is Gaussian ``N(m, C)``: from NMR it is exactly Gaussian given ``U`` (taken
at its mode, which 31 biomarkers per bit fix), refined by Fisher scoring on the codes when the EHR
is there too; from the codes alone it is their Laplace approximation. Given ``z`` every bit's
posterior factorises; it is evaluated at ``m``, so ``P(W_k = +1) = P(U_k) P(V_k) + (1 - P(U_k)) (1 - P(V_k))``
(``1/2`` for a bit whose partner modality is not among the queries). Then, exactly,

    p(o | x_A) = sum_W prod_k P(W_k) N(o; D m + E W, S),   S = 0.36 I + D C D^T

summed over the 2^kb sign vectors with the Woodbury identity (S is low rank plus diagonal), and
``p(o)`` is the same with ``m = 0``, ``C = I``, ``P(W_k) = 1/2``. ``R_A = p(o | x_A) / p(o)``. With one
query modality every ``W_k`` is a fair coin: the pairwise ratios see only ``z``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from gated_symile.errors import ConfigError
from gated_symile.synthetic.oracle import core
from gated_symile.synthetic.ukb import model as gen
from gated_symile.synthetic.ukb.config import UkbSynthConfig

if TYPE_CHECKING:
    from gated_symile.synthetic.oracle.cells import Cell

OLINK_NOISE = 0.6  # s.d. of the Olink measurement noise (synthetic.ukb.model.olink_values)
_CHUNK = 32  # queries scored at once (memory: chunk x candidates x 2^bits)
MAX_BITS = 12  # the exact sum runs over 2^bits sign vectors
_FISHER_STEPS = 4


def visible_share() -> float:
    """Mean chance that a lifetime code is visible at baseline: its episode (uniform over 14 years
    before to 12 after the baseline visit) falls before baseline and after the ICD-10 start."""
    from gated_symile.synthetic.ukb.hes import _ICD10_START
    from gated_symile.synthetic.ukb.release import _BASELINE_FIRST, _BASELINE_LAST

    years = 365.25
    baseline = np.linspace(_BASELINE_FIRST, _BASELINE_LAST, 512)
    start = np.maximum(baseline - 14 * years, _ICD10_START)
    return float(np.mean((baseline - start) / (26 * years)))


class UkbDisplayModel:
    """Retrieve Olink from (NMR, EHR) in the UK-Biobank-style model; see the module docstring."""

    target = "olink"
    queries: tuple[str, ...] = ("nmr", "ehr")

    def __init__(self, cfg: UkbSynthConfig, presence: Mapping[str, float]) -> None:
        self.cfg = cfg
        self.presence = dict(presence)
        p, s = gen.draw_params(cfg), cfg.signal_strength
        self.A, self.B = 0.7 * s * p.nmr_z, 0.5 * s * p.nmr_u
        self.code_base, self.Cz, self.Cv = p.code_base, s * p.code_z, 1.5 * s * p.code_v
        self.D, self.E = 0.4 * s * p.olink_z, 0.8 * s * p.olink_xnor
        self.pi = visible_share()
        self.hes = cfg.hes_frac
        self.kz, self.kb = cfg.n_latents, cfg.n_bits
        if self.kb > MAX_BITS:
            raise ConfigError(f"oracle ukb: n_bits {self.kb} > {MAX_BITS} (the exact sum has 2^bits terms)")
        self.indicator = np.abs(self.Cv).sum(axis=1) > 0
        self.signs = np.array(list(itertools.product((1.0, -1.0), repeat=self.kb)))  # (2^kb, kb)

    # ------------------------------------------------------------------ simulation
    def sample(self, rng: np.random.Generator, n: int) -> core.Rows:
        lat = gen.draw_latents(rng, n, self.cfg)
        u, v = 2.0 * lat.u - 1.0, 2.0 * lat.v - 1.0
        nmr = lat.z @ self.A.T + u @ self.B.T + rng.standard_normal((n, self.A.shape[0]))
        logits = self.code_base + lat.z @ self.Cz.T + v @ self.Cv.T
        lifetime = rng.random(logits.shape) < 1.0 / (1.0 + np.exp(-logits))
        has_hes = rng.random(n) < self.hes
        codes = lifetime & (rng.random(logits.shape) < self.pi) & has_hes[:, None]
        noise = OLINK_NOISE * rng.standard_normal((n, self.D.shape[0]))
        olink = lat.z @ self.D.T + (u * v) @ self.E.T + noise
        rows: core.Rows = {"nmr": nmr, "ehr": codes.astype(np.int8), "olink": olink}
        for m in ("nmr", "ehr", "olink"):  # exactly the test split's count of each modality
            present = np.zeros(n, dtype=bool)
            present[rng.permutation(n)[: round(self.presence.get(m, 1.0) * n)]] = True
            rows[f"present_{m}"] = present
        return rows

    # ------------------------------------------------------------------ scoring
    def log_ratio(
        self, authentic: frozenset[str], queries: core.Rows, targets: np.ndarray, cands: np.ndarray
    ) -> np.ndarray:
        if not authentic:
            return np.zeros(cands.shape)
        pool, inverse = np.unique(cands, return_inverse=True)
        olink = targets[pool]
        prior = self._log_marginal(olink)
        mean, cov, p_w = self._posterior(authentic, queries)
        log_pred = self._log_predictive(olink, mean, cov, p_w)
        return np.take_along_axis(log_pred - prior[None, :], inverse.reshape(cands.shape), axis=1)

    def _log_marginal(self, olink: np.ndarray) -> np.ndarray:
        """``log p(o_j)`` (prior ``z``, fair bits), kept while the same pool is scored again."""
        key = hash(olink.tobytes())
        if getattr(self, "_marginal_key", None) != key:
            prior = (np.zeros((1, self.kz)), np.eye(self.kz)[None], np.full((1, self.kb), 0.5))
            self._marginal_key, self._marginal = key, self._log_predictive(olink, *prior)[0]
        return self._marginal

    def _log_predictive(
        self, olink: np.ndarray, mean: np.ndarray, cov: np.ndarray, p_w: np.ndarray
    ) -> np.ndarray:
        """``log sum_W prod_k P(W_k) N(o_j; D m_i + E W, 0.36 I + D C_i D^T)``: (Q, J)."""
        var, d, e = OLINK_NOISE**2, self.D, self.E
        dtd, dte, ete = d.T @ d, d.T @ e, e.T @ e
        o_d, o_e, o_sq = olink @ d, olink @ e, (olink**2).sum(axis=1)
        # Woodbury: S^-1 = I / v - D K D^T / v^2 with K = (C^-1 + D^T D / v)^-1
        k = np.linalg.inv(np.linalg.inv(cov) + dtd / var)  # (Q, kz, kz)
        log_det = d.shape[0] * math.log(var) + np.linalg.slogdet(np.eye(self.kz) + cov @ dtd / var)[1]
        m_dtd = mean @ dtd
        log_pw = np.log(np.clip(p_w, 1e-300, 1.0)) @ (self.signs > 0).T.astype(float)
        log_pw += np.log(np.clip(1.0 - p_w, 1e-300, 1.0)) @ (self.signs < 0).T.astype(float)
        out = np.empty((mean.shape[0], olink.shape[0]))
        for start in range(0, mean.shape[0], _CHUNK):
            q = slice(start, min(start + _CHUNK, mean.shape[0]))
            r_sq = o_sq[None, :] - 2.0 * mean[q] @ o_d.T + (m_dtd[q] * mean[q]).sum(axis=1)[:, None]
            r_d = o_d[None, :, :] - m_dtd[q][:, None, :]  # D^T r: (q, J, kz)
            r_e = o_e[None, :, :] - (mean[q] @ dte)[:, None, :]  # E^T r: (q, J, kb)
            k_rd = np.einsum("qab,qjb->qja", k[q], r_d)
            quad = r_sq / var - (r_d * k_rd).sum(axis=2) / var**2
            g = r_e / var - np.einsum("ab,qja->qjb", dte, k_rd) / var**2  # E^T S^-1 r
            m_mat = ete / var - np.einsum("ab,qac,cd->qbd", dte, k[q], dte) / var**2
            w_quad = np.einsum("wb,qbd,wd->qw", self.signs, m_mat, self.signs)  # (q, 2^kb)
            terms = g @ self.signs.T - 0.5 * w_quad[:, None, :] + log_pw[q][:, None, :]
            top = terms.max(axis=2, keepdims=True)
            lse = top[..., 0] + np.log(np.exp(terms - top).sum(axis=2))
            out[q] = -0.5 * quad + lse - 0.5 * log_det[q][:, None] - 0.5 * d.shape[0] * math.log(2 * math.pi)
        return out

    def _posterior(
        self, authentic: frozenset[str], x: core.Rows
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gaussian ``p(z | x_A)`` (mean, covariance per query) and ``P(W_k = +1)`` at its mean."""
        n = next(iter(x[m] for m in authentic)).shape[0]
        precision = np.broadcast_to(np.eye(self.kz), (n, self.kz, self.kz)).copy()
        shift = np.zeros((n, self.kz))
        p_u = p_v = np.full((n, self.kb), 0.5)
        if "nmr" in authentic:
            y = x["nmr"]
            u = np.sign(y @ self.B)  # first guess of U; two sweeps settle the bits
            for _ in range(2):
                nmr_shift = (y - u @ self.B.T) @ self.A
                mean = np.linalg.solve(np.eye(self.kz) + self.A.T @ self.A, nmr_shift.T).T
                t = (y - mean @ self.A.T) @ self.B
                u = np.where(t >= 0, 1.0, -1.0)
            precision += self.A.T @ self.A
            shift += nmr_shift
            p_u = 1.0 / (1.0 + np.exp(-2.0 * t))
        mean = np.linalg.solve(precision, shift[..., None])[..., 0]
        if "ehr" in authentic:
            codes = x["ehr"].astype(float)
            for _ in range(_FISHER_STEPS):
                grad, info = self._code_score(codes, mean)
                full = precision + info
                step = grad - np.einsum("qab,qb->qa", precision, mean) + shift
                mean = mean + np.linalg.solve(full, step[..., None])[..., 0]
            precision = precision + self._code_score(codes, mean)[1]
            p_v = self._bit_posterior(codes, mean)
        p_w = p_u * p_v + (1.0 - p_u) * (1.0 - p_v)
        return mean, np.linalg.inv(precision), p_w

    def _code_score(self, codes: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient and Fisher information in ``z`` of the log-likelihood of the non-indicator codes."""
        plain = ~self.indicator
        cz = self.Cz[plain]
        sig = 1.0 / (1.0 + np.exp(-(self.code_base[plain] + z @ cz.T)))
        prob = np.clip(self.pi * sig, 1e-12, 1 - 1e-12)
        dprob = self.pi * sig * (1 - sig)
        grad = ((codes[:, plain] - prob) / (prob * (1 - prob)) * dprob) @ cz
        info = np.einsum("qc,ci,cj->qij", dprob**2 / (prob * (1 - prob)), cz, cz)
        return grad, info

    def _bit_posterior(self, codes: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``P(V_k = +1 | indicator codes, z)``, mixed with the prior for a record without codes."""
        base = self.code_base + z @ self.Cz.T
        log_odds = np.zeros((codes.shape[0], self.kb))
        for k in range(self.kb):
            cols = np.flatnonzero(self.Cv[:, k] != 0)
            x = codes[:, cols] > 0
            up = _log_bernoulli(x, self.pi, base[:, cols] + self.Cv[cols, k]).sum(axis=1)
            down = _log_bernoulli(x, self.pi, base[:, cols] - self.Cv[cols, k]).sum(axis=1)
            log_odds[:, k] = up - down
        p_v = 1.0 / (1.0 + np.exp(-log_odds))
        # a participant without any visible code may have no hospital record at all (prior bits)
        empty = ~(codes > 0).any(axis=1)
        none_seen = np.exp(np.log1p(-np.clip(self.pi / (1 + np.exp(-base)), 0, 1 - 1e-12)).sum(axis=1))
        share = np.where(empty, self.hes * none_seen / (self.hes * none_seen + 1 - self.hes), 1.0)
        return share[:, None] * p_v + (1 - share[:, None]) * 0.5


def estimate(cell: Cell) -> dict[str, Any]:
    """One fold: the global Olink bank of the test split, with the fold's test size and presence."""
    known = set(UkbSynthConfig.__dataclass_fields__)
    unknown = sorted(set(cell.generator) - known)
    if unknown:
        raise ConfigError(f"oracle {cell.dataset}: unknown synth.ukb settings {unknown}")
    n = cell.test_rows
    counts = cell.meta.get("counts", {}).get("present", {}).get("test", {})
    presence = {m: counts.get(m, n) / max(n, 1) for m in ("nmr", "ehr", "olink")}
    model = UkbDisplayModel(UkbSynthConfig(**cell.generator), presence)
    corruption = cell.misalign.corruption(cell.p, model.queries)
    est = core.simulate(model, n, core.bank_layout(n, model.target), corruption, n_mc=cell.n_mc, seed=cell.seed)
    pool = round(presence["olink"] * n)
    return core.result_document(est, "bank", pool, n, "monte_carlo", "measurements, Gaussian posterior of z")


def _log_bernoulli(x: np.ndarray, pi: float, logit: np.ndarray) -> np.ndarray:
    """``log P(x)`` for ``x ~ Bernoulli(pi sigmoid(logit))``."""
    prob = np.clip(pi / (1.0 + np.exp(-logit)), 1e-300, 1.0 - 1e-12)
    return np.where(x, np.log(prob), np.log1p(-prob))


