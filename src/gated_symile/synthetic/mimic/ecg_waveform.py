"""Synthetic 12-lead ECGs (P-QRS-T beats from a moving cardiac dipole) written as MIMIC-IV-ECG WFDB.

Why a dipole: projecting one 3-D heart vector onto the lead axes gives realistic relations
between leads for free (Einthoven ``III = II - I``, Goldberger ``aVR = -(I + II) / 2``, R-wave
progression V1 -> V6).  Each wave (P, Q, R, S, T) is a Gaussian bump in time with its own dipole
direction; beats follow an RR series with sinus variability.  All vectorised: one
(samples x beats) matrix per wave, no per-sample loop.

Latents (``latents.py``): ``a_ecg`` sets the rate (about 62 vs 108 bpm); ``h_ecg`` (cardiac size)
sets QRS voltage and width and flattens/inverts T (a strain-like pattern); ``axis_bit`` (``a2_ecg``)
sets the frontal QRS axis: normal (about +55 degrees) or left axis deviation (about -40 degrees).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

LEADS: tuple[str, ...] = (
    "I",
    "II",
    "III",
    "aVR",
    "aVF",
    "aVL",
    "V1",
    "V2",
    "V3",
    "V4",
    "V5",
    "V6",
)
"""MIMIC-IV-ECG lead order (aVF before aVL)."""
FS = 500
N_SAMPLES = 5000
GAIN = 200.0  # ADC units per mV
NAN_VALUE = -32768  # format-16 code for a missing sample

_PRECORDIAL_DEG = np.deg2rad([115.0, 94.0, 75.0, 60.0, 30.0, 0.0])


def _lead_matrix() -> np.ndarray:
    """(3, 12) projection of a dipole (x left, y inferior, z anterior) onto the MIMIC leads."""
    lead_i = np.array([1.0, 0.0, 0.0])
    lead_ii = np.array([0.5, np.sqrt(3) / 2, 0.0])
    lead_iii = lead_ii - lead_i
    limb = [
        lead_i,
        lead_ii,
        lead_iii,
        -(lead_i + lead_ii) / 2,
        (lead_ii + lead_iii) / 2,
        (lead_i - lead_iii) / 2,
    ]
    chest = [np.array([np.cos(a), 0.15, np.sin(a)]) for a in _PRECORDIAL_DEG]
    return np.stack(limb + chest, axis=1)


_LEADS_FROM_DIPOLE = _lead_matrix()


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _bumps(centres: np.ndarray, width: float) -> np.ndarray:
    """Sum of unit Gaussians (s.d. ``width`` s) at ``centres``, evaluated within 5 s.d. of each."""
    half = int(np.ceil(5 * width * FS))
    idx = (
        np.rint(centres * FS).astype(np.int64)[:, None]
        + np.arange(-half, half + 1)[None, :]
    )
    values = np.exp(-0.5 * ((idx / FS - centres[:, None]) / width) ** 2)
    inside = (idx >= 0) & (idx < N_SAMPLES)
    return np.bincount(idx[inside], weights=values[inside], minlength=N_SAMPLES)


NORMAL_AXIS_DEG, LEFT_AXIS_DEG = 55.0, -40.0


def synthesize_ecg(
    rng: np.random.Generator, h_ecg: float, a_ecg: int, axis_bit: int = 0
) -> np.ndarray:
    """One 10 s, 500 Hz, 12-lead ECG in mV, shape (5000, 12), MIMIC lead order."""
    t = np.arange(N_SAMPLES) / FS
    rate = (62.0 if a_ecg == 0 else 108.0) + rng.normal(0.0, 6.0)
    rr_mean = 60.0 / np.clip(rate, 40.0, 160.0)
    n_beats = int(11.0 / rr_mean) + 3
    rr = rr_mean * (1.0 + 0.03 * rng.standard_normal(n_beats))
    beats = rng.uniform(-rr_mean, 0.0) + np.cumsum(rr)

    axis = np.deg2rad(rng.normal(LEFT_AXIS_DEG if axis_bit else NORMAL_AXIS_DEG, 15.0))
    frontal = np.array([np.cos(axis), np.sin(axis), -0.35])
    size = float(np.clip(h_ecg, -2.5, 2.5))
    r_amp = 1.1 * np.exp(0.35 * size) * rng.uniform(0.85, 1.15)
    qrs = np.clip(0.009 * (1.0 + 0.25 * size), 0.006, 0.02)
    t_amp = np.clip(0.32 * (1.0 - 0.45 * size), -0.35, 0.6)
    qt = 0.24 * np.sqrt(rr_mean) + 0.05
    waves = (  # (offset s, width s, amplitude mV, direction)
        (-0.16 * np.sqrt(rr_mean), 0.022, 0.14, _unit(np.array([0.6, 0.8, 0.2]))),
        (-2.6 * qrs, qrs * 0.8, -0.12, _unit(frontal)),
        (0.0, qrs, r_amp, _unit(frontal)),
        (2.8 * qrs, qrs, 0.45 * r_amp, _unit(np.array([-0.45, -0.25, -0.9]))),
        (qt, 0.045, t_amp, _unit(frontal + np.array([0.0, 0.0, 0.5]))),
    )
    dipole = np.zeros((N_SAMPLES, 3))
    for offset, width, amplitude, direction in waves:
        dipole += np.outer(amplitude * _bumps(beats + offset, width), direction)
    leads = dipole @ _LEADS_FROM_DIPOLE * rng.uniform(0.9, 1.1, 12)
    wander = rng.uniform(0.02, 0.12, 12) * np.sin(
        2 * np.pi * rng.uniform(0.1, 0.4, 12) * t[:, None]
        + rng.uniform(0, 2 * np.pi, 12)
    )
    hum = 0.008 * np.sin(2 * np.pi * 60.0 * t + rng.uniform(0, 2 * np.pi))[:, None]
    return leads + wander + hum + rng.normal(0.0, 0.012, (N_SAMPLES, 12))


def digitize(signal_mv: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """ADC units (int64) at gain 200/mV; ``kind`` injects NaN samples or an all-zero record."""
    digital = np.clip(np.rint(signal_mv * GAIN), -32767, 32767).astype(np.int64)
    if kind == "nan_all":
        digital[:] = NAN_VALUE
    elif kind == "nan_partial":
        start = int(rng.integers(0, N_SAMPLES - 2000))
        digital[
            start : start + int(rng.integers(200, 2000)), int(rng.integers(0, 12))
        ] = NAN_VALUE
    elif kind == "zero":
        digital[:] = 0
    return digital


def write_wfdb(
    record_dir: Path,
    study_id: int,
    subject_id: int,
    time: dt.datetime,
    digital: np.ndarray,
) -> None:
    """``<study_id>.hea`` + ``.dat`` exactly as in MIMIC-IV-ECG (format 16, gain 200, subject comment).

    Written directly (``wfdb.wrsamp`` spends ~0.1 s per record in header bookkeeping); the bytes
    equal ``wfdb.wrsamp`` output for the same digital signal, which a test checks.  The checksum
    is the 16-bit sum of each lead, written unsigned as in the real headers.
    """
    record_dir.mkdir(parents=True, exist_ok=True)
    name = str(study_id)
    checksums = digital.sum(axis=0) % 65536
    lines = [f"{name} 12 {FS} {N_SAMPLES} {time:%H:%M:%S} {time:%d/%m/%Y}"]
    lines += [
        f"{name}.dat 16 {GAIN}(0)/mV 16 0 {int(digital[0, k])} {int(checksums[k])} 0 {lead}"
        for k, lead in enumerate(LEADS)
    ]
    lines.append(f"# <subject_id>: {subject_id}")
    (record_dir / f"{name}.hea").write_text("\n".join(lines) + "\n")
    (record_dir / f"{name}.dat").write_bytes(digital.astype("<i2").tobytes())
