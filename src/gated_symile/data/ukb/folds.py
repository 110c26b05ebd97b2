"""Participant-level folds of the UK-Biobank-style cohorts (docs/data.md §9.1, ``split_mode: kfold``).

One seeded permutation of the union participants (sorted by ``eid`` first, so the input order does
not matter) deals them round-robin into ``n_folds`` folds; fold k is the test set of split k and a
seeded ``val_frac`` of the remaining participants is its validation set.  Both are materialised
in ``splits.parquet`` (``eid, fold, val_0 .. val_{K-1}``) and shared by every method and by both
variants: the intersect cohort takes the roles of its participants from the same table, so per
fold the intersect train/val/test sets are subsets of the union ones.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from gated_symile.errors import ConfigError

__all__ = ["assign_folds", "make_splits", "split_roles"]

_VAL_STREAM = 1


def assign_folds(eids: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold (0..n_folds-1) of each entry of ``eids`` (aligned with the input order)."""
    if n_folds < 2:
        raise ConfigError(f"ukb n_folds must be >= 2, got {n_folds}")
    eids = np.asarray(eids, dtype=np.int64)
    order = np.argsort(eids, kind="stable")
    perm = np.random.default_rng([seed]).permutation(eids.size)
    fold_sorted = np.empty(eids.size, dtype=np.int64)
    fold_sorted[perm] = np.arange(eids.size) % n_folds
    folds = np.empty(eids.size, dtype=np.int64)
    folds[order] = fold_sorted
    return folds


def make_splits(eids: np.ndarray, n_folds: int, val_frac: float, seed: int) -> pl.DataFrame:
    """``eid, fold, val_0..val_{K-1}`` sorted by eid: the whole split design of the cohort."""
    if not 0.0 <= val_frac < 1.0:
        raise ConfigError(f"ukb val_frac must be in [0, 1), got {val_frac}")
    eids = np.sort(np.asarray(eids, dtype=np.int64))
    folds = assign_folds(eids, n_folds, seed)
    columns: dict[str, np.ndarray] = {"eid": eids, "fold": folds}
    for k in range(n_folds):
        rest = np.flatnonzero(folds != k)
        n_val = int(round(val_frac * rest.size))
        chosen = np.random.default_rng([seed, _VAL_STREAM, k]).permutation(rest)[:n_val]
        val = np.zeros(eids.size, dtype=bool)
        val[chosen] = True
        columns[f"val_{k}"] = val
    return pl.DataFrame(columns)


def split_roles(splits: pl.DataFrame, fold: int) -> pl.DataFrame:
    """``eid, role`` (train/val/test) of every participant of ``splits`` for split ``fold``."""
    if f"val_{fold}" not in splits.columns:
        n_folds = sum(c.startswith("val_") for c in splits.columns)
        raise ConfigError(f"fold {fold} does not exist (the cohort has {n_folds} folds)")
    role = (
        pl.when(pl.col("fold") == fold).then(pl.lit("test"))
        .when(pl.col(f"val_{fold}")).then(pl.lit("val"))
        .otherwise(pl.lit("train"))
    )  # fmt: skip
    return splits.select("eid", role.alias("role"))
