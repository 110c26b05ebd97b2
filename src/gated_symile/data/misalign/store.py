"""Storing a misalignment folder: ``misalign.json``, one manifest per split, noise statistics.

The folder is written once per (dataset, p, seed) by the misalign stage and opened by the loader,
which checks that it was drawn for the very dataset it is applied to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gated_symile.data.misalign.apply import SplitCorruption
from gated_symile.data.misalign.draw import ROW_MODES, STATS_SPLIT, MisalignConfig
from gated_symile.errors import RecordError
from gated_symile.intermediates import check_finite, load_npy, read_frame, read_json
from gated_symile.provenance.hashing import file_sha256

if TYPE_CHECKING:
    import pandas as pd

FORMAT = "gated-symile-misalign/1"
SPEC_FILE = "misalign.json"


def manifest_file(split: str) -> str:
    return f"manifest_{split}.parquet"


def noise_stat_files(modality: str) -> tuple[str, str]:
    return f"noise_mean_{modality}.npy", f"noise_std_{modality}.npy"


def write_manifest(manifest: pd.DataFrame, path: Path) -> None:
    """Parquet without a pandas index and with fixed compression: byte-identical for equal tables."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: pa.array(manifest[c].tolist() if c == "mode" else manifest[c].to_numpy()) for c in manifest})
    pq.write_table(table, path, compression="zstd")


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
