"""Constants and writers of the tensor dataset format (docs/tensor-format.md), numpy + pyarrow only.

Every producer (``synth xnor``, ``synth xor``, the ``tensors`` stage) writes through these functions
so that the files are laid out one way and are byte-identical for the same inputs: ``np.save``
without pickles, parquet without a pandas index and with fixed compression, JSON with sorted keys.
The reader is ``gated_symile.data.datasets``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gated_symile.outputs import staged_folder

FORMAT = "gated-symile-tensors/1"
SPLITS: tuple[str, ...] = ("train", "val", "test")
PROTOCOLS: tuple[str, ...] = ("candidates", "bank", "inbatch")
KINDS: tuple[str, ...] = ("float32", "image_uint8")
METADATA_FILE = "metadata.json"
INDEX_FILE = "index.parquet"


def dataset_folder(out: Path) -> AbstractContextManager[Path]:
    """Build a dataset in a staging folder moved to ``out`` when complete (``gated_symile.outputs``).

    An earlier dataset at ``out`` is replaced, any other non-empty folder refused: stale files (say
    a ``<m>_present.npy`` of an earlier run) would silently change the dataset, and a dataset cut
    short by a killed job must never sit under the name its readers look for.
    """
    return staged_folder(out, markers=[METADATA_FILE], what="tensor dataset")


def write_split(
    split_dir: Path,
    arrays: Mapping[str, np.ndarray],
    index: Mapping[str, np.ndarray],
) -> None:
    """Write ``<name>.npy`` per entry of ``arrays`` and ``index.parquet`` from ``index`` columns.

    ``arrays`` holds the modality arrays and any extra per-split files (``<m>_present``,
    ``candidates``, ``bank_<target>``, ``bank_index``) under their file stems.
    """
    split_dir.mkdir(parents=True, exist_ok=True)
    if "sample_id" not in index:
        raise ValueError("index needs a sample_id column")
    for name, array in arrays.items():
        np.save(split_dir / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    table = pa.table({name: pa.array(np.asarray(col)) for name, col in index.items()})
    pq.write_table(table, split_dir / INDEX_FILE, compression="zstd")


def write_metadata(out: Path, metadata: Mapping[str, Any]) -> None:
    """Write ``metadata.json`` (sorted keys, so byte-identical for equal content)."""
    body = {"format": FORMAT, **metadata}
    (Path(out) / METADATA_FILE).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
