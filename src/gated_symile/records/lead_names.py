"""The canonical MIMIC-IV-ECG lead order and case-insensitive lead-name mapping.

Shared by the WFDB and CardioSoft XML readers so that every ECG tensor has the same channel order
(docs/data.md §2: **aVF before aVL**, unlike PTB-XL and the CardioSoft files).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

__all__ = ["MIMIC_LEAD_ORDER", "canonical_lead_name", "canonical_order_index"]

MIMIC_LEAD_ORDER: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip

_BY_FOLDED_NAME: dict[str, str] = {name.casefold(): name for name in MIMIC_LEAD_ORDER}


def canonical_lead_name(name: str) -> str | None:
    """``'AVR'``, ``'avr'``, ``' aVR '`` -> ``'aVR'``; ``None`` for a non-standard lead name."""
    return _BY_FOLDED_NAME.get(name.strip().casefold())


def canonical_order_index(source_names: Sequence[str]) -> np.ndarray | str:
    """Column indices that reorder ``source_names`` into :data:`MIMIC_LEAD_ORDER`.

    Returns the index array (``signal[:, index]`` is in canonical order), or a short problem
    string when the names are not exactly the 12 standard leads (unknown, duplicated or missing),
    so each reader can raise its own typed error naming the file.  The array is read-only (one
    cached copy per lead naming, since a release repeats a few).
    """
    return _order_index(tuple(source_names))


@lru_cache(maxsize=1024)
def _order_index(source_names: tuple[str, ...]) -> np.ndarray | str:
    position: dict[str, int] = {}
    unknown: list[str] = []
    duplicated: list[str] = []
    for column, name in enumerate(source_names):
        canonical = canonical_lead_name(name)
        if canonical is None:
            unknown.append(name)
        elif canonical in position:
            duplicated.append(name)
        else:
            position[canonical] = column
    missing = [name for name in MIMIC_LEAD_ORDER if name not in position]
    if unknown or duplicated or missing:
        parts = [f"{len(source_names)} leads {list(source_names)}"]
        if unknown:
            parts.append(f"unknown {unknown}")
        if duplicated:
            parts.append(f"duplicated {duplicated}")
        if missing:
            parts.append(f"missing {missing}")
        return "; ".join(parts) + "; expected the 12 standard leads"
    index = np.array([position[name] for name in MIMIC_LEAD_ORDER], dtype=np.intp)
    index.flags.writeable = False
    return index
