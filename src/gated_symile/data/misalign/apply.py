"""Applying a stored manifest: per-modality indirection arrays and deterministic noise rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gated_symile.data.misalign.draw import NOISE_STREAM, split_key

if TYPE_CHECKING:
    import pandas as pd


def noise_rows(
    spec: Mapping[str, Any],
    rows: np.ndarray,
    *,
    seed: int,
    split: str,
    modality_index: int,
    stats: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """Noise replacing the given split rows of one modality, in the stored dtype and shape.

    One generator per (seed, split, modality, row): the noise of a sample does not depend on the
    batch it appears in, which is what makes ``noise`` a fixed (if uninformative) corruption.
    """
    shape = tuple(spec["shape"])
    image = spec["kind"] == "image_uint8"
    out = np.empty((len(rows), *shape), dtype=np.uint8 if image else np.float32)
    for k, row in enumerate(np.asarray(rows, dtype=np.int64)):
        rng = np.random.default_rng([seed, NOISE_STREAM, split_key(split), modality_index, int(row)])
        if image:
            out[k] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        else:
            out[k] = rng.standard_normal(shape, dtype=np.float32)
    if not image and stats is not None:
        mean, std = stats
        out *= std
        out += mean
    return out


@dataclass
class SplitCorruption:
    """A split's manifest resolved into per-modality indirection arrays (all of length n)."""

    split: str
    seed: int
    modalities: tuple[str, ...]
    manifest: pd.DataFrame
    source: dict[str, np.ndarray]  # row to read modality m from (the donor, else the row itself)
    noised: dict[str, np.ndarray]
    dropped: dict[str, np.ndarray]
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def flags(self) -> dict[str, np.ndarray]:
        return {c: self.manifest[c].to_numpy() for c in self.manifest.columns if c.startswith("corr_")}

    def present(self, modality: str, clean_present: np.ndarray) -> np.ndarray:
        """Presence after corruption: the donor's for swapped rows, False for dropped rows."""
        return np.asarray(clean_present, dtype=bool)[self.source[modality]] & ~self.dropped[modality]

    def rows(self, modality: str, array: np.ndarray, idx: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
        """Stored rows ``idx`` of ``array`` after corruption: one gather, noise filled in place."""
        out = array[self.source[modality][idx]]
        noisy = np.flatnonzero(self.noised[modality][idx])
        if noisy.size:
            out[noisy] = noise_rows(
                spec, idx[noisy], seed=self.seed, split=self.split,
                modality_index=self.modalities.index(modality), stats=self.stats.get(modality),
            )
        return out

