"""Drawing corruption manifests: which rows of a split are corrupted, in which modality, by which donor.

See the package docstring (``gated_symile.data.misalign``) for the model; :mod:`.store` writes and
reads what is drawn here and :mod:`.apply` turns a stored manifest into corrupted batches.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from gated_symile.errors import ConfigError, GatedSymileError
from gated_symile.schemas import check_section

if TYPE_CHECKING:  # pandas loads lazily: the CLI imports this module for its constants
    import pandas as pd

Mode = Literal["swap", "noise", "drop"]
MODES: tuple[str, ...] = get_args(Mode)
ROW_MODES: tuple[str, ...] = ("none", *MODES)
EXCLUSIVE = "exclusive"
DEFAULT_SPLITS: tuple[str, ...] = ("train", "val", "test")
STATS_SPLIT = "train"  # noise standardisation is fitted on the clean train split
MASK_STREAM, DONOR_STREAM, NOISE_STREAM = 0, 1, 2
_MAX_REDRAWS = 64
_STATS_CHUNK_BYTES = 64 << 20


def split_key(split: str) -> int:
    """Stable integer for a split name, used in seeds (``hash()`` is salted per process)."""
    return zlib.crc32(split.encode("utf-8"))


@dataclass(frozen=True)
class MisalignConfig:
    """What to corrupt and how. ``modalities`` is ``("exclusive",)`` or explicit modality names."""

    p: float
    mode: Mode
    modalities: tuple[str, ...] = (EXCLUSIVE,)
    splits: tuple[str, ...] = DEFAULT_SPLITS
    seed: int = 0
    exclude_same_subject: bool = False

    def __post_init__(self) -> None:
        check_section({**asdict(self), "modalities": ",".join(self.modalities)}, "misalign")
        # Not a schema rule: a pattern cannot say "no name twice" in the comma-separated list.
        if len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"misalign.modalities: a name is repeated in {','.join(self.modalities)}")

    @property
    def exclusive(self) -> bool:
        return self.modalities == (EXCLUSIVE,)

    def corruptible(self, modalities: Sequence[str], target: str) -> tuple[str, ...]:
        """The modalities that may be corrupted, in dataset order (exclusive: the non-target ones)."""
        if self.exclusive:
            chosen = tuple(m for m in modalities if m != target)
            if not chosen:
                raise GatedSymileError("exclusive misalignment needs at least one non-target modality")
            return chosen
        unknown = sorted(set(self.modalities) - set(modalities))
        if unknown:
            raise GatedSymileError(f"modalities {unknown} are not in the dataset {list(modalities)}")
        return tuple(m for m in modalities if m in self.modalities)


def draw_manifest(
    cfg: MisalignConfig,
    split: str,
    sample_ids: np.ndarray,
    modalities: Sequence[str],
    target: str,
    subject_ids: np.ndarray | None = None,
) -> pd.DataFrame:
    """The manifest of one split: ``sample_id, corr_<m>…, donor_<m>…, mode, corr_mod``.

    A split not in ``cfg.splits`` gets an all-clean manifest. ``subject_ids`` is required when
    ``cfg.exclude_same_subject``.
    """
    n, n_mod = len(sample_ids), len(modalities)
    corrupt = np.zeros((n, n_mod), dtype=bool)
    donors = np.full((n, n_mod), -1, dtype=np.int64)
    if split in cfg.splits:
        columns = [list(modalities).index(m) for m in cfg.corruptible(modalities, target)]
        rng = np.random.default_rng([cfg.seed, MASK_STREAM, split_key(split)])
        if cfg.exclusive:
            hit = rng.random(n) < cfg.p
            choice = rng.integers(0, len(columns), size=n)
            corrupt[np.flatnonzero(hit), np.asarray(columns)[choice[hit]]] = True
        else:
            corrupt[:, columns] = rng.random((n, len(columns))) < cfg.p
        if cfg.mode == "swap":
            for col in columns:
                perm = rng.permutation(n).astype(np.int64)
                rows = np.flatnonzero(corrupt[:, col])
                donors[rows, col] = perm[rows]
                if cfg.exclude_same_subject:
                    if subject_ids is None:
                        raise GatedSymileError("exclude_same_subject needs the subject_id column")
                    seed = [cfg.seed, DONOR_STREAM, split_key(split), col]
                    donors[rows, col] = _other_subject_donors(rows, perm[rows], np.asarray(subject_ids), seed, split)
    count = corrupt.sum(axis=1)
    corr_mod = np.where(count == 0, 0, np.where(count == 1, corrupt.argmax(axis=1) + 1, n_mod + 1))
    table: dict[str, Any] = {"sample_id": np.asarray(sample_ids, dtype=np.int64)}
    table.update({f"corr_{m}": corrupt[:, j] for j, m in enumerate(modalities)})
    table.update({f"donor_{m}": donors[:, j] for j, m in enumerate(modalities)})
    table["mode"] = np.where(count > 0, cfg.mode, "none").astype(object)
    table["corr_mod"] = corr_mod.astype(np.int64)
    import pandas as pd

    return pd.DataFrame(table)


def _other_subject_donors(
    rows: np.ndarray, donors: np.ndarray, subjects: np.ndarray, seed: list[int], split: str
) -> np.ndarray:
    """Redraw donors sharing the row's subject: uniform redraws, then an explicit choice."""
    rng = np.random.default_rng(seed)
    donors = donors.copy()
    n = subjects.size
    for _ in range(_MAX_REDRAWS):
        bad = np.flatnonzero(subjects[donors] == subjects[rows])
        if bad.size == 0:
            return donors
        donors[bad] = rng.integers(0, n, size=bad.size)
    for k in np.flatnonzero(subjects[donors] == subjects[rows]):
        allowed = np.flatnonzero(subjects != subjects[rows[k]])
        if allowed.size == 0:
            raise GatedSymileError(f"split {split}: every sample belongs to one subject, no donor of another")
        donors[k] = rng.choice(allowed)
    return donors


def manifest_counts(manifest: pd.DataFrame, modalities: Sequence[str]) -> dict[str, int]:
    """Per split: rows, corrupted rows, rows per modality, rows with several, self-donors."""
    out = {"n": int(len(manifest)), "corrupted": int((manifest["corr_mod"] > 0).sum())}
    out.update({m: int(manifest[f"corr_{m}"].sum()) for m in modalities})
    out["several"] = int((manifest["corr_mod"] == len(modalities) + 1).sum())
    out["self_donors"] = int(
        sum((manifest[f"donor_{m}"].to_numpy() == np.arange(len(manifest))).sum() for m in modalities)
    )
    return out


def feature_stats(array: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (float32, feature shape) over the present rows, read in chunks.

    Shifted sums in float64 (shift = first chunk's mean) keep the variance accurate without
    loading a large memory-mapped array (MIMIC ECG) at once.
    """
    rows = np.flatnonzero(np.asarray(present, dtype=bool))
    shape = array.shape[1:]
    if rows.size == 0:
        return np.zeros(shape, np.float32), np.ones(shape, np.float32)
    chunk = max(1, _STATS_CHUNK_BYTES // max(1, int(np.prod(shape)) * 8))
    shift = total = squares = None
    for start in range(0, rows.size, chunk):
        x = np.asarray(array[rows[start : start + chunk]], dtype=np.float64)
        if shift is None:
            shift = x.mean(axis=0)
            total, squares = np.zeros(shape), np.zeros(shape)
        d = x - shift
        total += d.sum(axis=0)
        squares += (d * d).sum(axis=0)
    mean_d = total / rows.size
    var = np.maximum(squares / rows.size - mean_d * mean_d, 0.0)
    return (shift + mean_d).astype(np.float32), np.sqrt(var).astype(np.float32)

