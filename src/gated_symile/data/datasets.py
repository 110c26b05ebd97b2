"""Read tensor-format datasets (docs/tensor-format.md) and turn rows into model-ready tensors.

The loader checks the whole contract up front (format tag, keys, one array per modality with the
declared dtype and shape, row counts equal to ``metadata.splits``, finite float rows), so a bad
or half-written dataset fails at load time with a message naming the file, not deep inside a
training epoch.
Arrays are memory-mapped; only the rows of a batch are read and converted.

With ``misalignment=`` (a folder written by the ``misalign`` stage) the split applies its
corruption manifest by indirection (``gated_symile.data.misalign``): ``batch`` reads swapped
modalities from their donor rows and fills noised ones with noise, ``present`` is the presence
after corruption (dropped rows False) and ``flags`` are the manifest's ``corr_*`` columns. The
clean files are only ever read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gated_symile.errors import RecordError
from gated_symile.intermediates import check_finite, load_npy, read_frame, read_json
from gated_symile.data.misalign.apply import SplitCorruption
from gated_symile.data.misalign.store import Misalignment
from gated_symile.data.tensor_format import FORMAT, INDEX_FILE, KINDS, METADATA_FILE, PROTOCOLS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_DTYPES = {"float32": np.dtype(np.float32), "image_uint8": np.dtype(np.uint8)}


def to_model_input(
    rows: np.ndarray, spec: Mapping[str, Any], device: torch.device | str
) -> torch.Tensor:
    """Convert stored rows of one modality to the float32 tensor its encoder expects.

    ``image_uint8`` (b, H, W) becomes (b, 3, H, W): scaled to [0, 1], repeated over 3 channels and
    normalised with the ImageNet mean/std (the MIMIC-CXR recipe); ``float32`` passes through.
    The uint8 rows are moved before conversion so a GPU copy carries 4x fewer bytes.
    """
    x = torch.from_numpy(np.ascontiguousarray(rows)).to(device)
    if spec["kind"] == "float32":
        return x
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    x = x.to(torch.float32).div_(255.0).unsqueeze(1)
    return (x - mean) / std


@dataclass
class TensorSplit:
    """One split folder: memory-mapped arrays, presence masks, index table and retrieval extras."""

    name: str
    path: Path
    n: int
    modalities: tuple[str, ...]
    target: str
    inputs: dict[str, dict[str, Any]]
    arrays: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    index: pd.DataFrame
    candidates: np.ndarray | None = None
    bank: np.ndarray | None = None
    bank_index: np.ndarray | None = None
    corruption: SplitCorruption | None = None

    @property
    def flags(self) -> dict[str, np.ndarray]:
        """Misalignment flags: the manifest's ``corr_*`` columns when a misalignment is applied,
        else every ``corr_*`` column of ``index.parquet`` (empty when none)."""
        if self.corruption is not None:
            return self.corruption.flags
        return {c: self.index[c].to_numpy() for c in self.index.columns if c.startswith("corr_")}

    @property
    def n_bank(self) -> int:
        """Rows addressable by ``bank_batch``: the explicit bank, else the split's own samples."""
        return len(self.bank) if self.bank is not None else self.n

    def batch(
        self, indices: np.ndarray, device: torch.device | str = "cpu"
    ) -> dict[str, torch.Tensor]:
        """Model inputs of rows ``indices``: ``{m: float32 tensor, f"{m}_present": bool}``."""
        idx = self._check_indices(indices, self.n)
        out: dict[str, torch.Tensor] = {}
        for m in self.modalities:
            out[m] = to_model_input(self._rows(m, idx), self.inputs[m], device)
            out[f"{m}_present"] = torch.from_numpy(np.asarray(self.present[m][idx])).to(device)
        return out

    def bank_batch(self, indices: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """Model inputs of the target modality for bank rows ``indices``.

        With an explicit bank (binary XOR) the rows are bank rows; otherwise they are rows of this
        split's target array (global bank, and the row numbers stored in ``candidates``).
        """
        idx = self._check_indices(indices, self.n_bank)
        rows = self.bank[idx] if self.bank is not None else self._rows(self.target, idx)
        return to_model_input(rows, self.inputs[self.target], device)

    def _rows(self, modality: str, idx: np.ndarray) -> np.ndarray:
        """Stored rows of one modality, after the misalignment manifest when one is applied."""
        if self.corruption is None:
            return self.arrays[modality][idx]
        return self.corruption.rows(modality, self.arrays[modality], idx, self.inputs[modality])

    def _check_indices(self, indices: np.ndarray, limit: int) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be a 1-D integer array, got {idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= limit):
            raise IndexError(f"{self.path}: row index out of range 0..{limit - 1}")
        return idx


class TensorDataset:
    """A validated tensor-format dataset folder; ``split(name)`` opens one split."""

    def __init__(
        self, path: Path, metadata: dict[str, Any], misalignment: Misalignment | None = None
    ) -> None:
        self.path = path
        self.metadata = metadata
        self.misalignment = misalignment
        self.modalities: tuple[str, ...] = tuple(metadata["modalities"])
        self.target: str = metadata["target"]
        self.target_index: int = self.modalities.index(self.target)
        self.protocol: str = metadata["protocol"]
        self.inputs: dict[str, dict[str, Any]] = metadata["inputs"]
        self.split_sizes: dict[str, int] = metadata["splits"]
        self._splits: dict[str, TensorSplit] = {}

    def split(self, name: str) -> TensorSplit:
        if name not in self.split_sizes:
            raise RecordError(
                self.path / METADATA_FILE, f"no split {name!r} (has {sorted(self.split_sizes)})"
            )
        if name not in self._splits:
            self._splits[name] = self._open_split(name)
        return self._splits[name]

    def _open_split(self, name: str) -> TensorSplit:
        folder = self.path / name
        n = self.split_sizes[name]
        if not folder.is_dir():
            raise RecordError(folder, "split folder is missing")
        arrays, present = {}, {}
        for m in self.modalities:
            spec = self.inputs[m]
            arrays[m] = load_npy(folder / f"{m}.npy", _DTYPES[spec["kind"]], (n, *spec["shape"]))
            check_finite(folder / f"{m}.npy", arrays[m])
            present_file = folder / f"{m}_present.npy"
            present[m] = (
                load_npy(present_file, np.dtype(bool), (n,))
                if present_file.exists()
                else np.ones(n, dtype=bool)
            )
        index = _read_index(folder / INDEX_FILE, n)
        corruption = None
        if self.misalignment is not None:
            corruption = self.misalignment.split(name, index["sample_id"].to_numpy(), self.inputs)
            present = {m: corruption.present(m, present[m]) for m in self.modalities}
        split = TensorSplit(
            name, folder, n, self.modalities, self.target, self.inputs, arrays, present, index,
            corruption=corruption,
        )
        # Candidate sets are drawn for the evaluated splits only; training uses in-batch negatives.
        if self.protocol == "candidates" and (name != "train" or (folder / "candidates.npy").exists()):
            split.candidates = load_npy(folder / "candidates.npy", np.dtype(np.int64), None)
            _check_rows(folder / "candidates.npy", split.candidates, n, ndim=2)
        bank_file = folder / f"bank_{self.target}.npy"
        if bank_file.exists():
            if self.protocol != "bank":
                raise RecordError(
                    bank_file, f"explicit bank given but protocol is {self.protocol!r}"
                )
            spec = self.inputs[self.target]
            split.bank = load_npy(bank_file, _DTYPES[spec["kind"]], (None, *spec["shape"]))
            check_finite(bank_file, split.bank)
            split.bank_index = load_npy(folder / "bank_index.npy", np.dtype(np.int64), (n,))
            _check_rows(folder / "bank_index.npy", split.bank_index, len(split.bank), ndim=1)
        return split


def load_tensor_dataset(
    path: str | Path, misalignment: str | Path | None = None
) -> TensorDataset:
    """Open and validate the dataset at ``path``; raises ``RecordError`` naming the faulty file.

    ``misalignment``: a folder written by the ``misalign`` stage for this dataset (checked by the
    sha256 of ``metadata.json``); its manifests are applied to every split that is opened.
    """
    path = Path(path)
    meta_file = path / METADATA_FILE
    if not meta_file.exists():
        raise RecordError(meta_file, "metadata.json is missing: not a tensor dataset folder")
    metadata = read_json(meta_file, "tensor metadata")
    _validate_metadata(meta_file, metadata)
    applied = None
    if misalignment is not None:
        applied = Misalignment.open(misalignment, path, metadata["modalities"])
    return TensorDataset(path, metadata, applied)


def _validate_metadata(meta_file: Path, meta: Any) -> None:
    def fail(problem: str) -> None:
        raise RecordError(meta_file, problem)

    if not isinstance(meta, dict):
        fail("top level is not a JSON object")
    if meta.get("format") != FORMAT:
        fail(f"format is {meta.get('format')!r}, expected {FORMAT!r}")
    for key in ("modalities", "target", "protocol", "splits", "inputs"):
        if key not in meta:
            fail(f"required key {key!r} is missing")
    mods = meta["modalities"]
    if (
        not isinstance(mods, list)
        or not mods
        or not all(isinstance(m, str) for m in mods)
        or len(set(mods)) != len(mods)
    ):
        fail(f"modalities must be a non-empty list of distinct names, got {mods!r}")
    if meta["target"] not in mods:
        fail(f"target {meta['target']!r} is not one of the modalities {mods}")
    if meta["protocol"] not in PROTOCOLS:
        fail(f"protocol {meta['protocol']!r} is not one of {list(PROTOCOLS)}")
    if meta["protocol"] == "inbatch" and not (
        isinstance(meta.get("eval_batch"), int) and meta["eval_batch"] >= 2
    ):
        fail("protocol inbatch needs an integer eval_batch >= 2")
    splits = meta["splits"]
    if not isinstance(splits, dict) or not all(
        isinstance(v, int) and v >= 0 for v in splits.values()
    ):
        fail(f"splits must map split names to row counts, got {splits!r}")
    inputs = meta["inputs"]
    for m in mods:
        spec = inputs.get(m) if isinstance(inputs, dict) else None
        if not isinstance(spec, dict) or spec.get("kind") not in KINDS:
            fail(f"inputs[{m!r}] needs a kind in {list(KINDS)}")
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(isinstance(s, int) and s > 0 for s in shape):
            fail(f"inputs[{m!r}].shape must be a list of positive ints, got {shape!r}")
        if spec["kind"] == "image_uint8":
            if len(shape) != 2:
                fail(f"inputs[{m!r}]: image_uint8 shape must be [H, W], got {shape}")
            if spec.get("normalize", "imagenet") != "imagenet":
                fail(f"inputs[{m!r}]: normalize {spec['normalize']!r} is not supported (imagenet)")


def _check_rows(file: Path, rows: np.ndarray, limit: int, ndim: int) -> None:
    if rows.ndim != ndim:
        raise RecordError(file, f"expected {ndim} dimensions, got shape {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= limit):
        raise RecordError(file, f"row numbers must lie in 0..{limit - 1}")


def _read_index(file: Path, n: int) -> pd.DataFrame:
    index = read_frame(file, "index table", columns=["sample_id"])
    if len(index) != n:
        raise RecordError(file, f"{len(index)} rows, expected {n} (metadata splits)")
    return index
