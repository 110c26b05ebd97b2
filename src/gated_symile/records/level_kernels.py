"""Compiled per-pixel passes of the lookup-table radiograph conversion (numba).

Why compiled: a 3056x2544 radiograph has 7.8 M pixels, and numpy has no way to count or index with
uint16 values without first widening each block to intp (``np.bincount``, ``np.take``), which made
the MIMIC-CXR-JPG conversion cost 1.5x the decode itself.  These loops read the stored values as
they are (any integer dtype, read-only views included) in one pass each: about 0.5 ns per pixel.

Imported lazily by :mod:`gated_symile.records.mimic_jpg` so that numba's import cost is paid only
by processes that convert DICOMs.  ``cache=True`` keeps the machine code beside this file (or in
numba's user cache when that is read-only), so worker processes do not compile again.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["gather_levels", "level_histogram"]


@njit(cache=True, nogil=True)
def level_histogram(flat: np.ndarray, low: int, n_levels: int) -> np.ndarray:
    """Counts of each stored level ``low .. low + n_levels - 1`` in the 1-D integer array ``flat``.

    The caller guarantees every value lies in that range (it passes ``flat.min()`` and the span).
    """
    counts = np.zeros(n_levels, dtype=np.int64)
    for value in flat:
        counts[value - low] += 1
    return counts


@njit(cache=True, nogil=True)
def gather_levels(flat: np.ndarray, low: int, table: np.ndarray) -> np.ndarray:
    """``table[flat - low]`` without an intp copy of ``flat`` (same range guarantee as above)."""
    out = np.empty(flat.size, dtype=table.dtype)
    for i in range(flat.size):
        out[i] = table[flat[i] - low]
    return out
