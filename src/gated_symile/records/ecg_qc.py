"""Signal quality checks for a 12-lead ECG array (vectorised, no I/O).

Two rules, so that the reproduction of the published cohort stays exact while a stricter project
cohort remains one config switch away:

- ``"symile"``: the Symile-MIMIC cohort rule -- reject iff any sample is NaN or every sample is 0.
  Nothing else (a flat lead or an implausible amplitude is kept, as in the reference).
- ``"strict"``: additionally reject any flat lead (zero variance) and any |value| above
  :data:`MAX_PLAUSIBLE_MV` (e.g. a MUSE export stored 5x too large).

:func:`qc_stored` gives the same facts from the stored integer samples without building the
float signal (the cohort checks hundreds of thousands of records; see its docstring for why the
facts are identical).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from gated_symile.records.column_reduce import reduce_columns

__all__ = ["MAX_PLAUSIBLE_MV", "QC_RULES", "EcgQC", "qc_ecg", "qc_stored"]

MAX_PLAUSIBLE_MV = 10.0
"""Largest absolute amplitude (mV) a surface resting ECG sample can plausibly have."""

QC_RULES: tuple[str, ...] = ("symile", "strict")


@dataclass(frozen=True)
class EcgQC:
    """Quality facts about one ECG; :meth:`reject_reason` turns them into a verdict."""

    has_nan: bool
    nan_count: int
    all_zero: bool
    flat_leads: tuple[int, ...]
    max_abs_mv: float

    def reject_reason(self, rule: str = "symile") -> str | None:
        """Why the ECG is excluded under ``rule``, or ``None`` if it is kept."""
        if rule not in QC_RULES:
            raise ValueError(f"unknown ECG QC rule {rule!r}; expected one of {QC_RULES}")
        if self.has_nan:
            return f"ECG has {self.nan_count} NaN samples"
        if self.all_zero:
            return "ECG is all zeros"
        if rule == "strict":
            if self.flat_leads:
                return f"flat leads (zero variance) at columns {list(self.flat_leads)}"
            if self.max_abs_mv > MAX_PLAUSIBLE_MV:
                return (
                    f"implausible amplitude {self.max_abs_mv:.3g} mV "
                    f"(limit {MAX_PLAUSIBLE_MV:g} mV)"
                )
        return None


def qc_ecg(signal: np.ndarray) -> EcgQC:
    """Quality facts of a ``(n_samples, n_leads)`` signal in mV (NaN = missing sample)."""
    signal = np.asarray(signal)
    if signal.ndim != 2:
        raise ValueError(f"expected a (n_samples, n_leads) array, got shape {signal.shape}")
    nan_mask = np.isnan(signal)
    nan_count = int(nan_mask.sum())
    if nan_count:
        finite = np.where(nan_mask, 0.0, signal)
        lead_has_nan = nan_mask.any(axis=0)
    else:
        finite = signal
        lead_has_nan = np.zeros(signal.shape[1], dtype=bool)
    abs_values = np.abs(finite)
    max_abs = float(abs_values.max()) if abs_values.size else 0.0
    all_zero = nan_count == 0 and max_abs == 0.0
    lead_min = finite.min(axis=0) if finite.size else np.zeros(signal.shape[1])
    lead_max = finite.max(axis=0) if finite.size else np.zeros(signal.shape[1])
    flat = (lead_min == lead_max) & ~lead_has_nan
    return EcgQC(
        has_nan=nan_count > 0,
        nan_count=nan_count,
        all_zero=all_zero,
        flat_leads=tuple(int(i) for i in np.flatnonzero(flat)),
        max_abs_mv=max_abs,
    )


@lru_cache(maxsize=16)
def _smallest(dtype: np.dtype) -> int:
    return int(np.iinfo(dtype).min)


def qc_stored(
    stored: np.ndarray, missing_value: int, to_mv: Callable[[np.ndarray], np.ndarray]
) -> EcgQC:
    """``qc_ecg(to_mv(stored))`` computed from each lead's smallest and largest stored value.

    ``stored`` is the ``(n_samples, n_leads)`` integer array as read; ``to_mv`` is the reader's own
    conversion to mV (applied to any rows of ``stored``; ``missing_value`` becomes NaN).  Why this
    is exact: the conversion ``(value - baseline) / gain * scale`` with positive gain and scale is
    monotone non-decreasing in floating point too, so a lead's smallest and largest mV values are
    the conversions of its smallest and largest stored values.  Flat leads, the largest |mV| and
    "all zeros" therefore follow from two converted rows; a record holding ``missing_value``
    (NaN samples) from three (:func:`_qc_with_missing`).  A record without samples goes through
    :func:`qc_ecg` on the full conversion.
    ``missing_value`` must be the smallest value of the dtype, so that a lead's minimum shows it.
    """
    if missing_value != _smallest(stored.dtype):
        raise ValueError(f"missing value {missing_value} is not the minimum of {stored.dtype}")
    if stored.size == 0:
        return qc_ecg(to_mv(stored))
    lowest = reduce_columns(np.minimum, stored)
    if lowest.min() == missing_value:
        return _qc_with_missing(stored, lowest, missing_value, to_mv)
    extremes = to_mv(np.array([lowest, reduce_columns(np.maximum, stored)]))
    max_abs = float(np.abs(extremes).max())
    return EcgQC(
        has_nan=False,
        nan_count=0,
        all_zero=max_abs == 0.0,
        flat_leads=tuple(np.flatnonzero(extremes[0] == extremes[1]).tolist()),
        max_abs_mv=max_abs,
    )


def _qc_with_missing(
    stored: np.ndarray,
    lowest: np.ndarray,
    missing_value: int,
    to_mv: Callable[[np.ndarray], np.ndarray],
) -> EcgQC:
    """:func:`qc_stored` of a record holding ``missing_value``, without converting every sample.

    :func:`qc_ecg` counts the NaN samples, sets them to 0.0 and takes each lead's extremes; a
    lead with a NaN is never flat.  So: a lead's extremes over its present samples are the
    conversions of its smallest present and its largest stored value (the largest is the missing
    value only when every sample is), and the 0.0 of the NaN samples joins the largest |mV|.
    The third converted row marks the leads with a missing sample (``lowest`` is the missing
    value) by a NaN, in the converted, canonical order.
    """
    highest = reduce_columns(np.maximum, stored)
    # stored - 1 wraps the missing value (the dtype's minimum) round to its maximum and keeps the
    # order of every other value: its minimum + 1 is the smallest present value
    present_lowest = reduce_columns(np.minimum, stored - stored.dtype.type(1)) + 1
    rows = np.array([present_lowest, highest, np.zeros_like(highest)])
    rows[:, highest == missing_value] = missing_value  # no present sample: no extremes
    rows[2, lowest == missing_value] = missing_value
    extremes = to_mv(rows)
    magnitudes = np.abs(extremes[:2])
    return EcgQC(
        has_nan=True,
        nan_count=int(np.count_nonzero(stored == missing_value)),
        all_zero=False,
        flat_leads=tuple(
            np.flatnonzero((extremes[0] == extremes[1]) & ~np.isnan(extremes[2])).tolist()
        ),
        max_abs_mv=float(np.max(magnitudes[~np.isnan(magnitudes)], initial=0.0)),
    )
