"""Symile-MIMIC splits -> model-ready tensors, format ``gated-symile-tensors/1`` (docs/data.md §7).

Per split folder: ``ecg.npy`` float32 (n, 1, 5000, 12), ``labs.npy`` float32 (n, 100),
``cxr.npy`` uint8 (n, size, size) (expanded to normalised RGB at load time, see
:mod:`gated_symile.data.imaging`), ``index.parquet`` and, for val/test, ``candidates.npy``.

Decoding dominates the cost (≈ 11 000 ECGs and radiographs), so rows are decoded by a pool of
worker processes, each writing its rows straight into the preallocated ``.npy`` memory maps:
memory stays flat and the arrays never travel through pipes.  Every row's content depends only on
the row (the training crop uses its own ``default_rng([seed, row])``), so the output is
byte-identical whatever the number of workers or their scheduling.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gated_symile.errors import RecordError
from gated_symile.data.mimic.ecg_qc_scan import record_files_read
from gated_symile.intermediates import check_finite, load_npy, open_parquet, read_frame_batches, read_json
from gated_symile.data.mimic.lab_percentiles import mask_column, percentile_column
from gated_symile.data.mimic.parallel import ordered_imap
from gated_symile.data.mimic.splits import SPLIT_NAMES
from gated_symile.outputs import ROWS_PER_GROUP
from gated_symile.provenance.hashing import file_sha256
from gated_symile.provenance.read_set import OpenedFile, active, opened_file
from gated_symile.records.mimic_tables import CHEXPERT_LABELS
from gated_symile.schemas import check_section
from gated_symile.data.tensor_format import dataset_folder

__all__ = [
    "ECG_SHAPE",
    "TensorConfig",
    "build_tensors",
    "normalize_ecg",
    "read_cxr_gray",
]

ECG_SHAPE = (5000, 12)
MAX_CHUNK_ROWS = 32


@dataclass(frozen=True)
class TensorConfig:
    """``seed`` seeds the training random crop (drawn once per image, per row)."""

    cxr_size: int = 320
    seed: int = 0
    workers: int = 1
    eval_batch: int = 128

    def __post_init__(self) -> None:
        check_section(asdict(self), "mimic.tensors")


def normalize_ecg(signal: np.ndarray) -> np.ndarray:
    """(5000, 12) float64 -> float32 (1, 5000, 12): ``2 (p - min) / (max - min) - 1``.

    One global min and max over all leads (the reference recipe); a constant record maps to zeros
    instead of dividing by zero.
    """
    low, high = float(signal.min()), float(signal.max())
    if high == low:
        return np.zeros((1, *signal.shape), dtype=np.float32)
    scaled = 2.0 * (signal - low) / (high - low) - 1.0
    return scaled.astype(np.float32)[None]


def read_cxr_gray(path: Path) -> np.ndarray:
    """uint8 (H, W) radiograph from the JPG release (``.jpg``) or the DICOM release (``.dcm``,
    converted exactly as MIMIC-CXR-JPG was, so both releases give the same pixels up to JPEG loss).
    """
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        from gated_symile.records.jpg_cxr import read_jpg_gray

        return read_jpg_gray(path)
    if suffix == ".dcm":
        from gated_symile.records.mimic_jpg import mimic_jpg_pixels

        return mimic_jpg_pixels(path)
    raise RecordError(path, f"unknown radiograph file type {suffix!r}: expected .jpg or .dcm")


@dataclass(frozen=True)
class _Chunk:
    """Rows ``start:start+len(ecg_paths)`` of one split, decoded by one worker call; the paths are
    relative to the release roots."""

    split_dir: str
    start: int
    ecg_root: str
    cxr_root: str
    ecg_paths: tuple[str, ...]
    cxr_paths: tuple[str, ...]
    cxr_size: int
    crop_seed: int | None  # None -> centre crop
    hash_files: bool = False  # also return what was read, hashed (for the stage's manifest)


@dataclass(frozen=True)
class _Decoded:
    """A chunk's outcome: the first failure (path, problem) or None, and the files it read."""

    failure: tuple[str, str] | None
    ecg_read: tuple[OpenedFile, ...] = ()
    cxr_read: tuple[OpenedFile, ...] = ()


def _decode_chunk(chunk: _Chunk) -> _Decoded:
    """Worker: decode the chunk's rows into the split's memory maps.

    Errors travel back as plain strings because exception classes with extra constructor arguments
    do not survive pickling between processes.
    """
    from gated_symile.data.imaging import prepare_cxr
    from gated_symile.records.wfdb_ecg import read_wfdb_ecg

    folder = Path(chunk.split_dir)
    ecg_out = np.load(folder / "ecg.npy", mmap_mode="r+")
    cxr_out = np.load(folder / "cxr.npy", mmap_mode="r+")
    ecg_read: list[OpenedFile] = []
    cxr_read: list[OpenedFile] = []
    for offset, (ecg_rel, cxr_rel) in _rows_read_ahead(chunk):
        row = chunk.start + offset
        ecg_path, cxr_path = os.path.join(chunk.ecg_root, ecg_rel), os.path.join(chunk.cxr_root, cxr_rel)
        current = ecg_path
        try:
            record = read_wfdb_ecg(ecg_path)
            signal = record.signal
            if signal.shape != ECG_SHAPE:
                return _Decoded((ecg_path, f"ECG signal has shape {signal.shape}, expected {ECG_SHAPE}"))
            if not np.isfinite(signal).all():
                return _Decoded(
                    (ecg_path, "ECG has missing (NaN) samples; the cohort QC should have excluded it")
                )
            ecg_out[row] = normalize_ecg(signal)
            current = cxr_path
            rng = None if chunk.crop_seed is None else np.random.default_rng([chunk.crop_seed, row])
            cxr_out[row] = prepare_cxr(read_cxr_gray(Path(cxr_path)), chunk.cxr_size, rng)
        except RecordError as exc:
            return _Decoded((str(exc.path), exc.problem))
        except Exception as exc:  # noqa: BLE001 - any decoder failure must name the file
            return _Decoded((current, f"cannot decode: {type(exc).__name__}: {exc}"))
        if chunk.hash_files:
            ecg_read += record_files_read(chunk.ecg_root, ecg_rel, record.details.get("file_name", ()))
            cxr_read.append(opened_file(cxr_path, cxr_rel, file_sha256(cxr_path)))
    ecg_out.flush()
    cxr_out.flush()
    return _Decoded(None, tuple(ecg_read), tuple(cxr_read))


def _rows_read_ahead(chunk: _Chunk) -> Iterator[tuple[int, tuple[str, str]]]:
    """The chunk's rows (offset, (ECG path, CXR path)), the next :data:`_ROWS_AHEAD` rows' files
    being read meanwhile (the ECG's header and ``<stem>.dat``, the radiograph): on a cold disk the
    reads overlap with decoding instead of waiting one by one (docs/data.md "Reading records from
    disk")."""
    from gated_symile.records.read_ahead import blocks_read_ahead

    rows = list(zip(chunk.ecg_paths, chunk.cxr_paths))
    files = []
    for ecg_rel, cxr_rel in rows:
        ecg = os.path.join(chunk.ecg_root, ecg_rel)
        files.append((ecg + ".hea", ecg + ".dat", os.path.join(chunk.cxr_root, cxr_rel)))
    for block, _ in blocks_read_ahead(files, _ROWS_AHEAD):
        for offset in block:
            yield offset, rows[offset]


_ROWS_AHEAD = 16
"""Rows whose files are read ahead together, while the rows before are decoded."""


def _chunks(
    frame: pd.DataFrame, first_row: int, rows: int, split_dir: Path, ecg_root: Path, cxr_root: Path,
    config: TensorConfig, *, train: bool,
) -> list[_Chunk]:  # fmt: skip
    """Chunks of ``rows`` rows of one block of a split (file rows ``first_row``...); training rows
    carry the crop seed (random crop), others centre."""
    ecg_paths = [str(p) for p in frame["ecg_path"]]
    cxr_paths = [str(p) for p in frame["cxr_path"]]
    return [
        _Chunk(
            split_dir=str(split_dir),
            start=first_row + start,
            ecg_root=str(ecg_root),
            cxr_root=str(cxr_root),
            ecg_paths=tuple(ecg_paths[start : start + rows]),
            cxr_paths=tuple(cxr_paths[start : start + rows]),
            cxr_size=config.cxr_size,
            crop_seed=config.seed if train else None,
            hash_files=active() is not None,
        )
        for start in range(0, len(frame), rows)
    ]


def _chunk_rows(n_rows: int, workers: int) -> int:
    """Rows per decoding chunk: small enough that every worker gets several chunks (load balance),
    large enough to amortise the per-chunk memory-map opening; the size never changes the output."""
    return max(1, min(MAX_CHUNK_ROWS, n_rows // (4 * max(1, workers))))


def _run_chunks(chunks: list[_Chunk], workers: int) -> None:
    """Decode all chunks with ``workers`` processes; the first failing record (row order) raises.
    While a stage records its reads, the files each chunk read are noted in the read set as the
    chunk's result arrives (collecting every chunk's result first grew the peak RSS with the
    cohort)."""
    read_set = active()
    for decoded in ordered_imap(_decode_chunk, chunks, workers=workers):
        if decoded.failure is not None:
            raise RecordError(*decoded.failure)
        if read_set is not None and chunks:
            read_set.add_opened(chunks[0].ecg_root, decoded.ecg_read)
            read_set.add_opened(chunks[0].cxr_root, decoded.cxr_read)


def _allocate(path: Path, dtype: type, shape: tuple[int, ...]) -> None:
    """Create a zero-filled ``.npy`` of the final shape that the workers fill in place."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    array.flush()
    del array


def _split_columns(itemids: list[str]) -> list[str]:
    """The split table's columns the tensors use (it holds about 190; the CheXpert labels it has
    are read too)."""
    needed = ["subject_id", "hadm_id", "ecg_path", "cxr_path"]
    return needed + [percentile_column(i) for i in itemids] + [mask_column(i) for i in itemids]


def _check_candidates(path: Path, n_rows: int) -> int:
    """Validate a candidate matrix against its split; returns the candidates per query."""
    candidates = load_npy(path, np.dtype(np.int64), (n_rows, None), what="candidate matrix")
    if candidates.min() < 0 or candidates.max() >= n_rows:
        raise RecordError(path, f"candidate indices outside the {n_rows} rows of the split")
    return int(candidates.shape[1])


def _labs_matrix(frame: pd.DataFrame, itemids: list[str]) -> np.ndarray:
    columns = [percentile_column(i) for i in itemids] + [mask_column(i) for i in itemids]
    return frame[columns].to_numpy(dtype=np.float32)


def _index_table(frame: pd.DataFrame) -> pd.DataFrame:
    labels = [c for c in CHEXPERT_LABELS if c in frame.columns]
    index = pd.DataFrame(
        {
            "sample_id": frame["hadm_id"].to_numpy(dtype=np.int64),
            "subject_id": frame["subject_id"].to_numpy(dtype=np.int64),
        }
    )
    for label in labels:
        index[label] = frame[label].to_numpy(dtype=np.float64)
    return index


def build_tensors(
    splits_dir: str | Path,
    ecg_root: str | Path,
    cxr_root: str | Path,
    out_dir: str | Path,
    config: TensorConfig,
) -> dict:
    """Run the tensors stage; returns the ``metadata.json`` dictionary it writes.

    The dataset is built beside ``out_dir`` and moved there when complete (``dataset_folder``).
    """
    with dataset_folder(Path(out_dir)) as work:
        return _build_tensors(Path(splits_dir), Path(ecg_root), Path(cxr_root), work, config)


def _build_tensors(
    splits_dir: Path, ecg_root: Path, cxr_root: Path, out_dir: Path, config: TensorConfig
) -> dict:
    split_meta_path = splits_dir / "metadata.json"
    split_meta = read_json(split_meta_path, "splits metadata", keys=("lab_itemids", "seed", "cohort"))
    if not isinstance(split_meta["lab_itemids"], list) or "sha256" not in (split_meta["cohort"] or {}):
        raise RecordError(split_meta_path, "lab_itemids must be a list and cohort an object with sha256")
    itemids = [str(i) for i in split_meta["lab_itemids"]]
    sources = {"metadata.json": file_sha256(split_meta_path)}
    sizes: dict[str, int] = {}
    candidate_n: dict[str, int] = {}
    chunks: list[_Chunk] = []
    for name in SPLIT_NAMES:
        split = _lay_out_split(splits_dir, name, out_dir / name, itemids, ecg_root, cxr_root, config)
        sizes[name] = split.rows
        sources.update(split.sources)
        if split.candidate_n is not None:
            candidate_n[name] = split.candidate_n
        chunks += split.chunks
    # one pool for all splits: the decoding is the whole cost
    _run_chunks(chunks, config.workers)

    metadata = _metadata(config, itemids, split_meta, sizes, candidate_n, sources)
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return metadata


@dataclass(frozen=True)
class _LaidOutSplit:
    """One split with everything but its ECGs and radiographs written."""

    rows: int
    candidate_n: int | None  # candidates per query; None for train
    sources: dict[str, str]  # sha256 of the split files read
    chunks: list[_Chunk]  # the rows still to decode into the preallocated arrays


def _lay_out_split(
    splits_dir: Path,
    name: str,
    folder: Path,
    itemids: list[str],
    ecg_root: Path,
    cxr_root: Path,
    config: TensorConfig,
) -> _LaidOutSplit:
    """Write one split's labs, index and candidates and allocate its ECG and CXR arrays.

    The split table is folded in blocks into the preallocated labs array and the index file
    (read whole, it made the stage's peak memory grow with the cohort). The decoding is left as
    chunks so that one worker pool decodes the rows of every split, instead of a pool per split
    idling at each split's end.
    """
    table_path = splits_dir / f"{name}.parquet"
    columns = _split_columns(itemids)
    handle = open_parquet(table_path, "split table", columns=columns)
    n = handle.metadata.num_rows
    if n == 0:
        handle.close()
        raise RecordError(table_path, "split table has no rows")
    rows = _chunk_rows(n, config.workers)
    blocks = read_frame_batches(
        handle, table_path, "split table", columns=columns, also=CHEXPERT_LABELS,
        batch_rows=ROWS_PER_GROUP,
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    _allocate(folder / "ecg.npy", np.float32, (n, 1, *ECG_SHAPE))
    _allocate(folder / "cxr.npy", np.uint8, (n, config.cxr_size, config.cxr_size))
    labs = np.lib.format.open_memmap(folder / "labs.npy", mode="w+", dtype=np.float32, shape=(n, 2 * len(itemids)))
    chunks: list[_Chunk] = []
    index = _IndexWriter(folder / "index.parquet")
    first = 0
    for frame in blocks:
        block = _labs_matrix(frame, itemids)
        check_finite(table_path, block, first_row=first)
        labs[first : first + len(frame)] = block
        index.write(_index_table(frame))
        chunks += _chunks(frame, first, rows, folder, ecg_root, cxr_root, config, train=name == "train")
        first += len(frame)
    labs.flush()
    del labs
    index.close()
    if first != n:
        raise RecordError(table_path, f"split table yielded {first} rows, its footer says {n}")
    sources = {table_path.name: file_sha256(table_path)}
    candidate_n = None
    if name != "train":
        candidates_path = splits_dir / f"candidates_{name}.npy"
        candidate_n = _check_candidates(candidates_path, n)
        sources[candidates_path.name] = file_sha256(candidates_path)
        shutil.copyfile(candidates_path, folder / "candidates.npy")
    return _LaidOutSplit(n, candidate_n, sources, chunks)


class _IndexWriter:
    """``index.parquet`` written block by block (one row group per block)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = None

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _metadata(
    config: TensorConfig,
    itemids: list[str],
    split_meta: dict,
    sizes: dict[str, int],
    candidate_n: dict[str, int],
    sources: dict[str, str],
) -> dict:
    """``metadata.json``: what the loaders and the evaluation read (modalities, shapes, protocol)
    and what ties the tensors to their inputs (seeds, source hashes, the cohort's sha256)."""
    return {
        "format": "gated-symile-tensors/1",
        "dataset": "mimic",
        "modalities": ["ecg", "labs", "cxr"],
        "target": "cxr",
        "protocol": "candidates",
        "eval_batch": config.eval_batch,
        "splits": sizes,
        "candidate_n": candidate_n,
        "inputs": {
            "cxr": {
                "kind": "image_uint8",
                "shape": [config.cxr_size, config.cxr_size],
                "normalize": "imagenet",
            },
            "ecg": {"kind": "float32", "shape": [1, *ECG_SHAPE]},
            "labs": {"kind": "float32", "shape": [2 * len(itemids)]},
        },
        "cxr_size": config.cxr_size,
        "lab_itemids": itemids,
        "seeds": {"split": split_meta["seed"], "cxr_crop": config.seed},
        "sources": sources,
        "cohort_sha256": split_meta["cohort"]["sha256"],
    }
