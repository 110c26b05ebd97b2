"""Per-admission latent model that ties the three modalities together (docs/synthetic-mimic.md).

Six independent latents per admission:

* ``h`` ~ N(0, 1), *cardiac size*: ECG QRS voltage/width and the CXR heart shadow
  (pairwise ECG <-> CXR);
* ``f`` ~ N(0, 1), *fluid / inflammation*: WBC, creatinine, lactate, ... and CXR lung haze
  (pairwise labs <-> CXR);
* ``a`` ~ Bernoulli(1/2), ECG-borne: heart rate (tachycardic vs bradycardic);
* ``b`` ~ Bernoulli(1/2), labs-borne: electrolyte axis (potassium, magnesium, phosphate up);
* ``a2`` ~ Bernoulli(1/2), ECG-borne: QRS axis (normal vs left axis deviation);
* ``b2`` ~ Bernoulli(1/2), labs-borne: sodium, chloride and calcium up.

Two CXR findings, ``c = XNOR(a, b)`` (pleural effusion) and ``c2 = XNOR(a2, b2)`` (a pacemaker
with its lead: a support device), depend on both bits of their pair but are independent of each
one alone, so only a model of the *triple* (Symile) can use them; pairwise CLIP cannot. Two
findings rather than one make the higher-order share of the Bayes-optimal retrieval large enough
to measure at the default cohort size (docs/oracle.md).

Each modality shows a noisy copy of its latents with coupling ``w = tanh(1.5 * signal_strength)``:
a continuous latent is shown as ``w * z + sqrt(1 - w^2) * e`` (e ~ N(0, 1) fresh per modality)
and a bit is flipped with probability ``(1 - w) / 2``.  Marginals of every modality therefore do
not depend on the strength; only the dependence between modalities does.  At strength 0 the
modalities are independent; at strength 1, ``w = 0.905`` (bits flipped 4.7 % of the time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gated_symile.records.mimic_tables import CHEXPERT_LABELS


def coupling(signal_strength: float) -> float:
    """Weight ``w`` in [0, 1) of the shared latent in each modality's displayed copy."""
    return float(np.tanh(1.5 * signal_strength))


@dataclass(frozen=True)
class Latents:
    """Latents and their per-modality displayed copies, one entry per admission."""

    h: np.ndarray
    f: np.ndarray
    a: np.ndarray
    b: np.ndarray
    h_ecg: np.ndarray
    a_ecg: np.ndarray
    h_cxr: np.ndarray
    f_cxr: np.ndarray
    c_cxr: np.ndarray
    f_lab: np.ndarray
    b_lab: np.ndarray
    a2: np.ndarray
    b2: np.ndarray
    a2_ecg: np.ndarray
    b2_lab: np.ndarray
    c2_cxr: np.ndarray

    @property
    def c(self) -> np.ndarray:
        """The first higher-order finding XNOR(a, b) before display noise."""
        return (self.a == self.b).astype(np.int8)

    @property
    def c2(self) -> np.ndarray:
        """The second higher-order finding XNOR(a2, b2) before display noise."""
        return (self.a2 == self.b2).astype(np.int8)

    def bits(self, modality: str) -> np.ndarray:
        """(n, 2) int8: the displayed bits of ``ecg`` (a, a2), ``labs`` (b, b2) or ``cxr`` (c, c2)."""
        pairs = {
            "ecg": (self.a_ecg, self.a2_ecg),
            "labs": (self.b_lab, self.b2_lab),
            "cxr": (self.c_cxr, self.c2_cxr),
        }
        return np.stack(pairs[modality], axis=1).astype(np.int8)


def draw_latents(rng: np.random.Generator, n: int, signal_strength: float) -> Latents:
    """Draw latents for ``n`` admissions and their displayed copies (see module docstring)."""
    w = coupling(signal_strength)
    rest = float(np.sqrt(1.0 - w * w))
    h = rng.standard_normal(n)
    f = rng.standard_normal(n)
    a = rng.integers(0, 2, n).astype(np.int8)
    b = rng.integers(0, 2, n).astype(np.int8)

    def show(z: np.ndarray) -> np.ndarray:
        return w * z + rest * rng.standard_normal(n)

    def show_bit(bit: np.ndarray) -> np.ndarray:
        flip = rng.random(n) < (1.0 - w) / 2.0
        return np.where(flip, 1 - bit, bit).astype(np.int8)

    c = (a == b).astype(np.int8)
    first = {
        "h_ecg": show(h),
        "a_ecg": show_bit(a),
        "h_cxr": show(h),
        "f_cxr": show(f),
        "c_cxr": show_bit(c),
        "f_lab": show(f),
        "b_lab": show_bit(b),
    }
    a2 = rng.integers(0, 2, n).astype(np.int8)
    b2 = rng.integers(0, 2, n).astype(np.int8)
    c2 = (a2 == b2).astype(np.int8)
    return Latents(
        h=h,
        f=f,
        a=a,
        b=b,
        **first,
        a2=a2,
        b2=b2,
        a2_ecg=show_bit(a2),
        b2_lab=show_bit(b2),
        c2_cxr=show_bit(c2),
    )


def chexpert_labels(
    rng: np.random.Generator,
    h_cxr: np.ndarray,
    f_cxr: np.ndarray,
    c_cxr: np.ndarray,
    c2_cxr: np.ndarray,
) -> dict[str, np.ndarray]:
    """CheXpert label strings per study (``1.0``, ``0.0``, ``-1.0`` or empty) from the CXR display.

    Cardiomegaly follows the heart shadow (``h_cxr``), Edema and Lung Opacity the haze
    (``f_cxr``), Pleural Effusion and Support Devices the two XNOR findings (``c_cxr``,
    ``c2_cxr``); the other findings are sparse noise.
    """
    n = h_cxr.size

    def graded(score: np.ndarray, pos: float, unc: float, neg: float) -> np.ndarray:
        out = np.full(n, "", dtype=object)
        out[score < neg] = "0.0"
        out[(score > unc) & (score <= pos)] = "-1.0"
        out[score > pos] = "1.0"
        return out

    labels = {name: np.full(n, "", dtype=object) for name in CHEXPERT_LABELS}
    labels["Cardiomegaly"] = graded(h_cxr, 0.8, 0.5, -0.5)
    labels["Enlarged Cardiomediastinum"] = graded(h_cxr, 1.4, 1.1, -1.5)
    labels["Edema"] = graded(f_cxr, 1.0, 0.7, -0.3)
    labels["Lung Opacity"] = graded(f_cxr, 0.6, 0.4, -0.8)
    for name, finding in (("Pleural Effusion", c_cxr), ("Support Devices", c2_cxr)):
        labels[name] = np.where(finding == 1, "1.0", np.where(rng.random(n) < 0.5, "0.0", "")).astype(object)
    for name, rate in (
        ("Atelectasis", 0.12),
        ("Consolidation", 0.04),
        ("Pneumonia", 0.05),
        ("Pneumothorax", 0.02),
        ("Fracture", 0.01),
        ("Lung Lesion", 0.02),
        ("Pleural Other", 0.01),
    ):
        u = rng.random(n)
        labels[name][u < rate] = "1.0"
        labels[name][(u >= rate) & (u < rate * 1.3)] = "-1.0"
        labels[name][(u >= rate * 1.3) & (u < rate * 1.8)] = "0.0"
    positive = np.zeros(n, dtype=bool)
    for name in CHEXPERT_LABELS:
        if name not in ("No Finding", "Support Devices"):
            positive |= labels[name] == "1.0"
    labels["No Finding"] = np.where(positive, "", "1.0").astype(object)
    return labels
