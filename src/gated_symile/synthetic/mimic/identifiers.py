"""Identifier and timestamp conventions of the MIMIC releases, vectorised.

Ids are unique by construction: a running counter is mapped through an affine bijection
``base + (a * k + b) mod span`` (``a`` coprime to ``span``), which looks random, needs no
rejection loop and is the same for any number of workers.  ``dicom_id`` values come from a
keyed hash so that they are 160-bit, seed-dependent and collision-free in practice.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import polars as pl

SUBJECT = (10_000_000, 10_000_000)
"""subject_id: 8 digits starting with 1."""
HADM = (20_000_000, 10_000_000)
"""hadm_id: 20 000 000-29 999 999."""
ECG_STUDY = (40_000_000, 10_000_000)
"""MIMIC-IV-ECG study_id: 8 digits starting with 4."""
CXR_STUDY = (50_000_000, 10_000_000)
"""MIMIC-CXR study_id: 8 digits starting with 5."""
SPECIMEN = (1_000_000, 98_000_000)
"""labevents specimen_id: up to 8 digits."""

_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def scrambled_ids(
    counter: np.ndarray, kind: tuple[int, int], seed: int, salt: int
) -> np.ndarray:
    """Unique ids in ``[base, base + span)`` for distinct counters ``0 <= k < span``."""
    base, span = kind
    counter = np.asarray(counter, dtype=np.int64)
    if counter.size and int(counter.max()) >= span:
        raise ValueError(f"{counter.max() + 1} ids requested, only {span} available")
    mix = int.from_bytes(
        hashlib.sha256(f"{seed}:{salt}".encode()).digest()[:8], "little"
    )
    a = mix % span | 1
    while math.gcd(a, span) != 1:
        a += 2
    b = (mix >> 32) % span
    return base + (a * counter + b) % span


def dicom_ids(counter: np.ndarray, seed: int) -> list[str]:
    """MIMIC-CXR ``dicom_id``: 5 dash-separated groups of 8 hex characters."""
    out = []
    for k in np.asarray(counter, dtype=np.int64).tolist():
        digest = hashlib.sha1(f"mimic-cxr:{seed}:{k}".encode()).hexdigest()
        out.append("-".join(digest[i : i + 8] for i in range(0, 40, 8)))
    return out


def provider_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``admit_provider_id`` / ``order_provider_id`` like ``P49AFC``."""
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    chars = alphabet[rng.integers(0, alphabet.size, size=(n, 5))]
    return np.char.add("P", np.array(["".join(row) for row in chars]))


def epoch_seconds(
    year: np.ndarray | int, day_of_year: np.ndarray | int = 0
) -> np.ndarray:
    """Seconds since 1970 of midnight on ``day_of_year`` (0-based) of ``year``."""
    year = np.asarray(year, dtype=np.int64)
    start = (
        (year - 1970).astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)
    )
    return start + np.asarray(day_of_year, dtype=np.int64) * 86_400


def format_times(seconds: np.ndarray | pl.Series, name: str = "t") -> pl.Series:
    """``YYYY-MM-DD HH:MM:SS`` strings (nulls stay null): the one timestamp format of the tables."""
    series = seconds if isinstance(seconds, pl.Series) else pl.Series(name, seconds)
    return (
        pl.select(
            pl.from_epoch(series.cast(pl.Int64), time_unit="s").dt.strftime(
                _TIME_FORMAT
            )
        )
        .to_series()
        .alias(name)
    )


def format_dates(seconds: np.ndarray | pl.Series, name: str = "d") -> pl.Series:
    """``YYYY-MM-DD`` strings (``dod``)."""
    series = seconds if isinstance(seconds, pl.Series) else pl.Series(name, seconds)
    return (
        pl.select(
            pl.from_epoch(series.cast(pl.Int64), time_unit="s").dt.strftime("%Y-%m-%d")
        )
        .to_series()
        .alias(name)
    )
