"""The in-memory 12-lead ECG every ECG reader (WFDB, CardioSoft XML) returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

__all__ = ["EcgRecord"]


@dataclass(frozen=True)
class EcgRecord:
    """A validated resting ECG in the MIMIC convention.

    ``signal`` is float64 ``(n_samples, 12)`` in mV, columns in
    :data:`~gated_symile.records.lead_names.MIMIC_LEAD_ORDER` (``lead_names``);
    ``source_lead_names`` keeps the names and order found in the file, so a reordering is visible.
    Missing samples (WFDB value -32768) are NaN.  ``details`` holds format-specific header facts
    (WFDB fmt/gain/baseline/units, XML resolution) for ``inspect``; nothing downstream relies on it.
    """

    path: str
    signal: np.ndarray
    fs: float
    lead_names: tuple[str, ...]
    source_lead_names: tuple[str, ...]
    base_datetime: datetime | None = None
    comments: tuple[str, ...] = ()
    subject_id: int | None = None
    source_format: str = "wfdb"
    details: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[0])
