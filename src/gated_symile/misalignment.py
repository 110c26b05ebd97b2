"""Misalignment injection by indirection (docs/method.md §10): draw, store and apply corruption manifests.

With probability ``p`` per sample one modality is corrupted; the choice is either ``exclusive``
(one of the non-target modalities, uniformly, at most one per sample, as in the paper) or a fixed
list of modalities (each corrupted independently with probability ``p``). How:

- ``swap`` (misleading): modality m is read from another row of the same split, the donor, taken
  from a seeded permutation per modality. A row drawn as its own donor keeps its data (as in the
  synthetic generator; its flag stays set). The donor's presence travels with its data. With
  ``exclude_same_subject`` donors of the same ``subject_id`` (self included) are redrawn.
- ``noise`` (uninformative): float inputs are replaced by N(0, 1) in standardised feature space,
  i.e. ``mean + std * z`` with the per-feature mean/std of the clean train split; ``image_uint8``
  inputs by uniform random pixels. The noise is a function of (seed, split, modality, row) only,
  so a sample gets the same noise in every batch and epoch.
- ``drop``: the modality is marked missing (present = False), which exercises docs/method.md §9.

For MIMIC, the ECG and lab tensors are computed per record (one ECG, one lab panel per
admission), so swapping the ECG or labs row of admission i with another admission's row is
exactly a record-level swap: what a wrong timestamp or identifier join would produce.

Why indirection: the manifests (``manifest_<split>.parquet``) are drawn once per (dataset, split,
p, seed) and are small; the clean tensors are never modified or copied, so every p of a sweep reads
the same files, and the loader (``gated_symile.data.datasets``) applies a manifest per batch.

Masks come from one uniform per sample (per sample and modality when not exclusive) compared with
``p``, and the donor permutations do not depend on ``p``: for one seed the corrupted sets are nested
across p (common random numbers), so a p sweep differs only in how many samples are corrupted.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gated_symile.errors import GatedSymileError, RecordError
from gated_symile.intermediates import check_finite, load_npy, read_frame, read_json
from gated_symile.provenance.hashing import file_sha256

if TYPE_CHECKING:  # pandas/pyarrow load lazily: the CLI imports this module for its constants
    import pandas as pd

FORMAT = "gated-symile-misalign/1"
MODES: tuple[str, ...] = ("swap", "noise", "drop")
ROW_MODES: tuple[str, ...] = ("none", *MODES)
EXCLUSIVE = "exclusive"
SPEC_FILE = "misalign.json"
DEFAULT_SPLITS: tuple[str, ...] = ("train", "val", "test")
STATS_SPLIT = "train"  # noise standardisation is fitted on the clean train split
_MASK_STREAM, _DONOR_STREAM, _NOISE_STREAM = 0, 1, 2
_MAX_REDRAWS = 64
_STATS_CHUNK_BYTES = 64 << 20


def manifest_file(split: str) -> str:
    return f"manifest_{split}.parquet"


def noise_stat_files(modality: str) -> tuple[str, str]:
    return f"noise_mean_{modality}.npy", f"noise_std_{modality}.npy"


def split_key(split: str) -> int:
    """Stable integer for a split name, used in seeds (``hash()`` is salted per process)."""
    return zlib.crc32(split.encode("utf-8"))


@dataclass(frozen=True)
class MisalignConfig:
    """What to corrupt and how. ``modalities`` is ``("exclusive",)`` or explicit modality names."""

    p: float
    mode: str
    modalities: tuple[str, ...] = (EXCLUSIVE,)
    splits: tuple[str, ...] = DEFAULT_SPLITS
    seed: int = 0
    exclude_same_subject: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise GatedSymileError(f"misalignment p must lie in [0, 1], got {self.p}")
        if self.mode not in MODES:
            raise GatedSymileError(f"misalignment mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not self.modalities or (EXCLUSIVE in self.modalities and len(self.modalities) > 1):
            raise GatedSymileError(f"modalities must be {EXCLUSIVE!r} or a list of names, got {self.modalities}")
        if len(set(self.modalities)) != len(self.modalities) or len(set(self.splits)) != len(self.splits):
            raise GatedSymileError("misalignment modalities and splits must not repeat")

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
        rng = np.random.default_rng([cfg.seed, _MASK_STREAM, split_key(split)])
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
                    seed = [cfg.seed, _DONOR_STREAM, split_key(split), col]
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


def write_manifest(manifest: pd.DataFrame, path: Path) -> None:
    """Parquet without a pandas index and with fixed compression: byte-identical for equal tables."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: pa.array(manifest[c].tolist() if c == "mode" else manifest[c].to_numpy()) for c in manifest})
    pq.write_table(table, path, compression="zstd")


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
        rng = np.random.default_rng([seed, _NOISE_STREAM, split_key(split), modality_index, int(row)])
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


class Misalignment:
    """A misalignment folder (``misalign.json`` + manifests) bound to the dataset it was drawn for."""

    def __init__(self, path: Path, spec: dict[str, Any]) -> None:
        self.path = path
        self.spec = spec
        self.seed = int(spec["parameters"]["seed"])

    @classmethod
    def open(cls, path: str | Path, dataset_path: Path, modalities: Sequence[str]) -> Misalignment:
        """Read ``misalign.json`` and check it was drawn from this dataset's ``metadata.json``."""
        path = Path(path)
        spec_file = path / SPEC_FILE
        if not spec_file.exists():
            raise RecordError(spec_file, "misalign.json is missing: not a misalignment folder")
        spec = read_json(spec_file, "misalignment spec", format=FORMAT, keys=("parameters", "source", "modalities"))
        seed = spec["parameters"].get("seed") if isinstance(spec["parameters"], dict) else None
        if not isinstance(seed, int) or not isinstance(spec["source"], dict):
            raise RecordError(spec_file, "parameters.seed (an integer) or the source object is missing")
        want = file_sha256(Path(dataset_path) / "metadata.json")
        if spec["source"].get("metadata_sha256") != want:
            raise RecordError(spec_file, f"drawn for another dataset: metadata sha256 differs from {dataset_path}")
        if spec["modalities"] != list(modalities):
            raise RecordError(spec_file, f"modalities {spec.get('modalities')} differ from the dataset's {list(modalities)}")
        return cls(path, spec)

    def split(self, name: str, sample_ids: np.ndarray, inputs: Mapping[str, Mapping[str, Any]]) -> SplitCorruption:
        """Read and validate ``manifest_<name>.parquet`` against the split's ``sample_id`` column."""
        file = self.path / manifest_file(name)
        modalities = tuple(self.spec["modalities"])
        needed = ["sample_id", *(f"{k}_{m}" for k in ("corr", "donor") for m in modalities), "mode", "corr_mod"]
        manifest = read_frame(file, "misalignment manifest", columns=needed)
        n = len(sample_ids)
        if len(manifest) != n or not np.array_equal(manifest["sample_id"].to_numpy(), np.asarray(sample_ids)):
            raise RecordError(file, f"sample_id column does not match the split's index ({n} rows)")
        modes = manifest["mode"].to_numpy().astype(str)
        if not np.isin(modes, ROW_MODES).all():
            raise RecordError(file, f"mode values must be in {ROW_MODES}")
        rows = np.arange(n, dtype=np.int64)
        source, noised, dropped, stats = {}, {}, {}, {}
        for m in modalities:
            try:
                corr = manifest[f"corr_{m}"].to_numpy(dtype=bool)
                donor = manifest[f"donor_{m}"].to_numpy(dtype=np.int64)
            except (TypeError, ValueError) as exc:
                raise RecordError(file, f"corr_{m}/donor_{m} are not boolean/integer columns ({exc})") from None
            swapped = corr & (modes == "swap")
            if (donor[swapped] < 0).any() or (donor[~swapped] != -1).any() or (donor >= n).any():
                raise RecordError(file, f"donor_{m} must be a row 0..{n - 1} exactly for swapped rows, else -1")
            source[m] = np.where(swapped, donor, rows)
            noised[m] = corr & (modes == "noise")
            dropped[m] = corr & (modes == "drop")
            if noised[m].any() and inputs[m]["kind"] == "float32":
                stats[m] = self._stats(m, tuple(inputs[m]["shape"]))
        return SplitCorruption(name, self.seed, modalities, manifest, source, noised, dropped, stats)

    def _stats(self, modality: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        arrays = []
        for name in noise_stat_files(modality):
            file = self.path / name
            array = load_npy(file, np.dtype(np.float32), shape, mmap=False, what="noise statistics")
            check_finite(file, array)
            arrays.append(array)
        return arrays[0], arrays[1]


def spec_document(
    cfg: MisalignConfig,
    metadata: Mapping[str, Any],
    metadata_sha256: str,
    counts: Mapping[str, Mapping[str, int]],
    noise_stats: Sequence[str],
) -> dict[str, Any]:
    """The body of ``misalign.json`` (no paths, no times: byte-identical for equal inputs)."""
    params = asdict(cfg)
    params["modalities"] = list(cfg.modalities)
    params["splits"] = list(cfg.splits)
    return {
        "format": FORMAT,
        "parameters": params,
        "modalities": list(metadata["modalities"]),
        "target": metadata["target"],
        "corruptible": list(cfg.corruptible(metadata["modalities"], metadata["target"])),
        "source": {
            "dataset": metadata.get("dataset"),
            "metadata_sha256": metadata_sha256,
            "splits": dict(metadata["splits"]),
        },
        "counts": {s: dict(c) for s, c in counts.items()},
        "noise_stats": {
            m: {"mean": noise_stat_files(m)[0], "std": noise_stat_files(m)[1], "fitted_on": STATS_SPLIT}
            for m in noise_stats
        },
    }
