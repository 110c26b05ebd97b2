"""Lab values -> ECDF percentiles fitted on the training split (docs/data.md §6).

Why percentiles: the 50 labs have wildly different units and heavy tails; the Symile-MIMIC recipe
feeds the model each value's rank among the *training* values, so nothing about val/test leaks into
the normalisation.  Missing values get the training mean percentile of that lab (≈ 0.5) and a mask
bit 0, so the model can tell "missing" from "typical".

Decision for a lab with **no** training observation (possible only in small synthetic cohorts): its
ECDF is undefined, so every row, observed or not, gets percentile :data:`NO_TRAIN_PERCENTILE` (0.5,
the centre of the percentile range, carrying no information) and the mean is 0.5.  The mask still
says what was observed, because it is a fact about the record, not about the fit.  Such labs are
listed in the splits metadata (``labs_without_train_observations``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "NO_TRAIN_PERCENTILE",
    "LabEcdf",
    "apply_lab_ecdf",
    "ecdf_table",
    "fit_lab_ecdf",
    "mask_column",
    "percentile_column",
]

NO_TRAIN_PERCENTILE = 0.5


def percentile_column(itemid: str) -> str:
    return f"{itemid}_percentile"


def mask_column(itemid: str) -> str:
    return f"{itemid}_mask"


@dataclass(frozen=True)
class LabEcdf:
    """The fitted normalisation: per lab, the sorted observed training values and mean percentile.

    ``itemids`` are strings in ascending itemid order (the tensor order); ``sorted_values[i]`` is a
    float64 array (possibly empty); ``means[i]`` is the mean training percentile of lab i.
    """

    itemids: tuple[str, ...]
    sorted_values: tuple[np.ndarray, ...]
    means: tuple[float, ...]

    def percentiles(self, i: int, values: np.ndarray) -> np.ndarray:
        """Right-continuous ECDF of lab ``i`` at ``values`` (NaN in -> NaN out).

        pct(x) = #{train values <= x} / n_obs: 0 below the training minimum, 1 at or above the
        maximum, ties count fully (``searchsorted(side="right")``).
        """
        train = self.sorted_values[i]
        values = np.asarray(values, dtype=np.float64)
        if train.size == 0:
            out = np.full(values.shape, NO_TRAIN_PERCENTILE)
        else:
            out = np.searchsorted(train, values, side="right") / train.size
        out[np.isnan(values)] = np.nan
        return out

    def labs_without_train_observations(self) -> list[str]:
        return [item for item, v in zip(self.itemids, self.sorted_values) if v.size == 0]

    def means_dict(self) -> dict[str, float]:
        return dict(zip(self.itemids, self.means))


def fit_lab_ecdf(train: pd.DataFrame, itemids: Sequence[str | int]) -> LabEcdf:
    """Fit one ECDF per lab on the non-null values of ``train[itemid]`` (float64, NaN = missing)."""
    names = tuple(str(item) for item in itemids)
    sorted_values: list[np.ndarray] = []
    means: list[float] = []
    for item in names:
        column = train[item].to_numpy(dtype=np.float64)
        observed = np.sort(column[~np.isnan(column)], kind="stable")
        sorted_values.append(observed)
        if observed.size == 0:
            means.append(NO_TRAIN_PERCENTILE)
        else:
            ranks = np.searchsorted(observed, observed, side="right") / observed.size
            means.append(float(np.mean(ranks)))
    return LabEcdf(itemids=names, sorted_values=tuple(sorted_values), means=tuple(means))


def apply_lab_ecdf(frame: pd.DataFrame, ecdf: LabEcdf) -> pd.DataFrame:
    """Return ``frame`` plus ``<itemid>_percentile`` (float32) and ``<itemid>_mask`` (int8) columns.

    Observed -> its percentile and mask 1; missing (decided from the raw value, never from the ECDF)
    -> the lab's training mean percentile and mask 0.  Columns are appended in tensor order: all
    percentiles, then all masks.
    """
    percentiles: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for i, item in enumerate(ecdf.itemids):
        raw = frame[item].to_numpy(dtype=np.float64)
        observed = ~np.isnan(raw)
        pct = ecdf.percentiles(i, raw)
        pct[~observed] = ecdf.means[i]
        percentiles[percentile_column(item)] = pct.astype(np.float32)
        masks[mask_column(item)] = observed.astype(np.int8)
    added = pd.DataFrame({**percentiles, **masks}, index=frame.index)
    return pd.concat([frame, added], axis=1)


def ecdf_table(ecdf: LabEcdf) -> pd.DataFrame:
    """Long table (itemid, value) of the sorted training values, so the fit can be audited."""
    lengths = [v.size for v in ecdf.sorted_values]
    return pd.DataFrame(
        {
            "itemid": np.repeat(np.array(ecdf.itemids, dtype=object), lengths),
            "value": (
                np.concatenate(ecdf.sorted_values) if sum(lengths) else np.empty(0, np.float64)
            ),
        }
    )
