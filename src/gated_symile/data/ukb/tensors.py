"""UK-Biobank-style tensors for one fold and variant (docs/data.md §9.3 steps 4-6, docs/method.md §9, §11).

``intersect``: participants with all three modalities; features z-scored with statistics of the
training participants' observed values, remaining NaN -> 0 (the training mean).
``union``: participants with >= 1 modality; the same z-score, then each modality is stored as the
encoder input ``[value with NaN -> 0, mask]`` (mask 1 = observed, width 2F) with
``<m>_present.npy`` (False = modality missing: its input is all zeros, mask included).
Modalities ``nmr, ehr, olink``; target ``olink`` retrieved from a global bank (protocol ``bank``).
The EHR featuriser is fitted on the variant's training participants of this fold only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from gated_symile.errors import ConfigError, RecordError
from gated_symile.intermediates import read_frame, read_json
from gated_symile.provenance.hashing import file_sha256
from gated_symile.records.errors import MissingRecord
from gated_symile.schemas import check_section
from gated_symile.data.tensor_format import SPLITS, dataset_folder, write_metadata, write_split
from gated_symile.data.ukb.cohort import MODALITIES
from gated_symile.data.ukb.ehr import EhrConfig, make_featurizer
from gated_symile.data.ukb.folds import split_roles

__all__ = ["UkbTensorConfig", "build_ukb_tensors", "zscore_fit"]

TARGET = "olink"
COHORT_FILES = (
    "summary.json", "participants.parquet", "splits.parquet", "nmr.parquet", "olink.parquet",
    "ehr_codes.parquet",
)  # fmt: skip


@dataclass(frozen=True)
class UkbTensorConfig:
    variant: Literal["intersect", "union"]
    fold: int
    seed: int = 0
    ehr: EhrConfig = field(default_factory=EhrConfig)

    def __post_init__(self) -> None:
        check_section(asdict(self), "ukb")  # variant, fold, seed (ehr: EhrConfig checked itself)


def zscore_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column mean, std (ddof 0) and count of the non-NaN values of ``x``.

    A column with no observed value gets mean 0; a constant or empty column gets std 1, so the
    transform is always defined.
    """
    observed = ~np.isnan(x)
    count = observed.sum(axis=0)
    mean = np.where(observed, x, 0.0).sum(axis=0) / np.maximum(count, 1)
    var = np.where(observed, (x - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count, 1)
    std = np.sqrt(var)
    std = np.where((count > 0) & (std > 0) & np.isfinite(std), std, 1.0)
    return mean, std, count


def build_ukb_tensors(cohort: Path, out: Path, cfg: UkbTensorConfig) -> dict[str, Any]:
    """Write the tensor dataset for ``cfg.variant`` / ``cfg.fold`` to ``out``; returns metadata."""
    cohort = Path(cohort)
    summary, people = _participants(cohort, cfg)
    eids = people["eid"].to_numpy()
    role = people["role"].to_numpy()
    train = role == "train"

    raw = {
        "nmr": _aligned(cohort / "nmr.parquet", eids),
        "olink": _aligned(cohort / "olink.parquet", eids),
    }
    codes = read_frame(cohort / "ehr_codes.parquet", "EHR code table", columns=["eid", "code"], polars=True)
    ehr_present = people["ehr"].to_numpy()
    featurizer = make_featurizer(cfg.ehr).fit(codes, eids[train & ehr_present])
    ehr = featurizer.transform(codes, eids)
    ehr[~ehr_present] = np.nan
    raw["ehr"] = (ehr, featurizer.feature_names)

    arrays, scalers, features = _standardise(raw, train, cfg.variant)
    present = {m: people[m].to_numpy().astype(bool) for m in MODALITIES}
    rows_of = {split: np.flatnonzero(role == split) for split in SPLITS}
    sizes = {split: int(rows.size) for split, rows in rows_of.items()}
    counts = {
        split: {m: int(present[m][rows].sum()) for m in MODALITIES} for split, rows in rows_of.items()
    }
    metadata = {
        "dataset": "ukb",
        "variant": cfg.variant,
        "fold": cfg.fold,
        "modalities": list(MODALITIES),
        "target": TARGET,
        "protocol": "bank",
        "splits": sizes,
        "inputs": {m: {"kind": "float32", "shape": [int(arrays[m].shape[1])]} for m in MODALITIES},
        "missing_encoding": "value_mask" if cfg.variant == "union" else "zero_fill",
        "features": features,
        "scalers": scalers,
        "counts": {"present": counts, "cohort": summary["counts"]},
        "ehr": featurizer.state(),
        "seeds": {"tensors": cfg.seed, "folds": summary["folds"]["seed"]},
        "folds": {k: summary["folds"][k] for k in ("n_folds", "val_frac")},
        "sources": {name: file_sha256(cohort / name) for name in COHORT_FILES},
        "config": {"variant": cfg.variant, "fold": cfg.fold, "ehr": asdict(cfg.ehr)},
    }
    _write_dataset(Path(out), arrays, present, eids, rows_of, metadata)
    return metadata


def _participants(cohort: Path, cfg: UkbTensorConfig) -> tuple[dict[str, Any], pl.DataFrame]:
    """The cohort's ``summary.json`` and the variant's participants by eid with their fold role."""
    for name in COHORT_FILES:
        if not (cohort / name).is_file():
            raise MissingRecord(cohort / name, "cohort file is missing (run `cohort ukb` first)")
    summary = _read_summary(cohort / "summary.json")
    if cfg.fold >= summary["folds"]["n_folds"]:
        raise ConfigError(
            f"--fold {cfg.fold} does not exist (the cohort has {summary['folds']['n_folds']} folds)"
        )
    people = read_frame(
        cohort / "participants.parquet", "participants table",
        columns=["eid", "included", *MODALITIES], polars=True,
    ).filter("included")
    if cfg.variant == "intersect":
        people = people.filter(pl.all_horizontal(MODALITIES))
    splits = read_frame(cohort / "splits.parquet", "splits table", columns=["eid", "fold"], polars=True)
    roles = split_roles(splits, cfg.fold)
    people = people.join(roles, on="eid", how="left").sort("eid")
    if people["role"].null_count():
        raise ConfigError(f"{cohort / 'splits.parquet'}: participants without a split")
    return summary, people


def _standardise(
    raw: dict[str, tuple[np.ndarray, list[str]]], train: np.ndarray, variant: str
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, list[float]]], dict[str, list[str]]]:
    """Per modality: z-score with the training rows' statistics, then the variant's encoding of
    missing values (zero fill, or ``[value, mask]``); also the scalers and feature names."""
    arrays: dict[str, np.ndarray] = {}
    scalers: dict[str, dict[str, list[float]]] = {}
    features: dict[str, list[str]] = {}
    for m in MODALITIES:
        x, names = raw[m]
        mean, std, count = zscore_fit(x[train])
        z = (x - mean) / std
        if variant == "intersect":
            arrays[m] = np.nan_to_num(z, nan=0.0).astype(np.float32)
        else:
            mask = ~np.isnan(z)
            arrays[m] = np.concatenate([np.where(mask, z, 0.0), mask], axis=1).astype(np.float32)
        scalers[m] = {
            "mean": mean.tolist(),
            "std": std.tolist(),
            "n_train_observed": count.tolist(),
        }
        features[m] = list(names)
    return arrays, scalers, features


def _write_dataset(
    out: Path,
    arrays: dict[str, np.ndarray],
    present: dict[str, np.ndarray],
    eids: np.ndarray,
    rows_of: dict[str, np.ndarray],
    metadata: dict[str, Any],
) -> None:
    """One tensor-format split folder per role (``union`` adds ``<m>_present``) and the metadata,
    built in a staged folder that replaces ``out`` only when complete."""
    union = metadata["variant"] == "union"
    with dataset_folder(out) as work:
        for split, rows in rows_of.items():
            extra = {f"{m}_present": present[m][rows] for m in MODALITIES} if union else {}
            write_split(
                work / split,
                {**{m: arrays[m][rows] for m in MODALITIES}, **extra},
                {"sample_id": eids[rows].astype(np.int64)},
            )
        write_metadata(work, metadata)


def _aligned(path: Path, eids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Rows of a cohort feature table in ``eids`` order; participants without a row are NaN."""
    table = read_frame(path, "feature table", columns=["eid"], polars=True)
    names = [c for c in table.columns if c != "eid"]
    have = table["eid"].to_numpy()
    if have.size > 1 and not (np.diff(have) > 0).all():
        raise RecordError(path, "eid column is not sorted and unique (rows would be misaligned)")
    try:
        values = table.select(names).to_numpy().astype(np.float64)
    except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
        raise RecordError(path, f"feature columns are not numeric ({exc})") from None
    infinite = np.flatnonzero(np.isinf(values).any(axis=1))
    if infinite.size:
        raise RecordError(path, f"row {infinite[0]} has infinite values (missing values must be null)")
    x = np.full((eids.size, len(names)), np.nan)
    pos = np.searchsorted(have, eids)
    found = (
        (pos < have.size) & (have[np.minimum(pos, max(have.size - 1, 0))] == eids)
        if have.size
        else np.zeros(eids.size, bool)
    )
    x[found] = values[pos[found]]
    return x, names


def _read_summary(path: Path) -> dict[str, Any]:
    """``summary.json`` of ``cohort ukb`` with the keys this stage reads."""
    summary = read_json(path, "cohort summary", keys=("folds", "counts"))
    folds = summary["folds"]
    keys = ("n_folds", "val_frac", "seed")
    if not isinstance(folds, dict) or any(k not in folds for k in keys) or not isinstance(folds["n_folds"], int):
        raise RecordError(path, f"folds must be an object with {list(keys)} (n_folds an integer)")
    return summary
