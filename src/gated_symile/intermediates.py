"""Checked reads of the files one stage writes for the next (parquet, npy, JSON, plain-text ids).

Why: every stage after the first reads what an earlier stage wrote, and an interrupted, disk-full
or hand-edited earlier run leaves those files missing, empty, truncated, of the wrong kind or
with the wrong columns. Read through these functions, each of those cases is one ``RecordError``
``PATH: problem`` (exit code 2 on the command line) instead of a library traceback
(``ArrowInvalid``, ``JSONDecodeError``, ``KeyError`` deep inside a stage).

Each function checks what is cheap and general (the file is there and readable, the JSON is an
object with the required keys, the table has the required columns, the array has the dtype and
shape); a stage still checks what only it knows (row counts that must agree between files).
:func:`check_finite` finds NaN or infinite rows in float tensors before they are trained on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gated_symile.errors import RecordError

if TYPE_CHECKING:  # pandas, pyarrow and polars load lazily: the CLI imports stages quickly
    import pandas as pd
    import polars as pl

FINITE_CHUNK_BYTES = 64 << 20
"""Bytes of a memory-mapped array checked at a time by :func:`first_nonfinite_row`."""
_MESSAGE_MAX = 160
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def error_reason(exc: BaseException) -> str:
    """First line of a library error, shortened: enough to see why, short enough for one line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= _MESSAGE_MAX else text[: _MESSAGE_MAX - 3] + "..."


def require_file(path: str | Path, what: str = "file") -> Path:
    """``path`` when it is a non-empty regular file; else a ``RecordError`` saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise RecordError(path, f"{what} is missing")
    if not path.is_file():
        raise RecordError(path, f"{what} is not a file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RecordError(path, f"cannot read {what} ({exc.strerror or exc})") from None
    if size == 0:
        raise RecordError(path, f"{what} is empty (an interrupted or failed write?)")
    return path


def read_json(
    path: str | Path,
    what: str = "JSON file",
    *,
    keys: Sequence[str] = (),
    format: str | None = None,
) -> dict[str, Any]:
    """A JSON object with ``keys`` (and ``format`` equal to ``format`` when given)."""
    path = require_file(path, what)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordError(path, f"{what} is not valid JSON ({error_reason(exc)})") from None
    if not isinstance(document, dict):
        raise RecordError(path, f"{what} must hold a JSON object, found {type(document).__name__}")
    if format is not None and document.get("format") != format:
        raise RecordError(path, f"format is {document.get('format')!r}, expected {format!r}")
    missing = [k for k in keys if k not in document]
    if missing:
        raise RecordError(path, f"{what} lacks the keys {missing}")
    return document


def read_yaml(path: str | Path, what: str = "YAML file", *, whole: bool = False) -> dict[str, Any]:
    """A YAML file holding a mapping (a run config). ``whole``: the file was written by a stage,
    which always ends it with a newline, so one without is refused as cut short (YAML itself
    cannot tell: half a mapping is still a mapping)."""
    import yaml

    path = require_file(path, what)
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RecordError(path, f"{what} is not valid YAML ({error_reason(exc)})") from None
    if whole and not text.endswith("\n"):
        raise RecordError(path, f"{what} does not end with a newline (cut short?)")
    if not isinstance(document, dict):
        raise RecordError(path, f"{what} must hold a mapping, found {type(document).__name__}")
    return document


def _check_columns(path: Path, what: str, have: Sequence[str], columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in have]
    if missing:
        shown = f"{missing[:5]}{'...' if len(missing) > 5 else ''}"
        raise RecordError(path, f"{what} lacks the columns {shown}")


def read_frame(
    path: str | Path,
    what: str = "table",
    *,
    columns: Sequence[str] = (),
    polars: bool = False,
    also: Sequence[str] | None = None,
) -> pd.DataFrame | pl.DataFrame:
    """A parquet table that has ``columns``: a pandas DataFrame, or polars with ``polars=True``.

    With ``also`` only ``columns`` and those of ``also`` the table has are read (a wide table of
    which the caller needs a few columns: the others would only cost memory)."""
    path = require_file(path, what)
    try:
        read = None if also is None else _columns_to_read(_parquet_names(path), columns, also)
        if polars:
            import polars as pl

            frame = pl.read_parquet(path, columns=read)
        else:
            import pandas as pd

            frame = pd.read_parquet(path, columns=read)
    except Exception as exc:  # noqa: BLE001 - pyarrow/polars raise several unrelated types here
        raise _unreadable_parquet(path, what, exc) from None
    _check_columns(path, what, list(frame.columns), columns)
    return frame


def open_parquet(path: str | Path, what: str, *, columns: Sequence[str] = ()) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` of a table that has ``columns`` (footer read only)."""
    import pyarrow.parquet as pq

    path = require_file(path, what)
    try:
        # column chunks streamed through a 64 KiB buffer, not read whole before decoding
        handle = pq.ParquetFile(path, buffer_size=1 << 16, pre_buffer=False)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several unrelated types here
        raise _unreadable_parquet(path, what, exc) from None
    _check_columns(path, what, handle.schema_arrow.names, columns)
    return handle


def read_frame_batches(
    handle: Any, path: Path, what: str, *, columns: Sequence[str], also: Sequence[str] = (), batch_rows: int
) -> Iterator[pd.DataFrame]:
    """The rows of an :func:`open_parquet` table as pandas frames of at most ``batch_rows`` rows
    (``columns`` and those of ``also`` the table has); closes the handle when done.

    For a stage that folds a table into preallocated outputs: reading it whole made the stage's
    peak memory grow with the table."""
    read = _columns_to_read(handle.schema_arrow.names, columns, also)
    try:
        for batch in handle.iter_batches(batch_size=batch_rows, columns=read):
            yield batch.to_pandas()
    except Exception as exc:  # noqa: BLE001 - a corrupt page surfaces only while reading
        raise _unreadable_parquet(path, what, exc) from None
    finally:
        handle.close()


def _columns_to_read(names: Sequence[str], columns: Sequence[str], also: Sequence[str]) -> list[str]:
    """Of a table's column ``names``: ``columns`` it has (a missing one is reported by the
    caller's check) and those of ``also`` it has, in file order."""
    wanted = set(columns) | set(also)
    return [name for name in names if name in wanted]


def _parquet_names(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_schema(path).names


def _unreadable_parquet(path: Path, what: str, exc: Exception) -> RecordError:
    return RecordError(path, f"{what} is not a readable parquet file ({error_reason(exc)})")


def read_csv_rows(path: str | Path, what: str = "CSV table", *, columns: Sequence[str] = ()) -> list[dict[str, str]]:
    """Rows of a small CSV table with ``columns``; a file cut short (no final newline) is refused."""
    import csv
    import io

    path = require_file(path, what)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(path, f"cannot read {what} ({error_reason(exc)})") from None
    if not text.endswith("\n"):
        raise RecordError(path, f"{what} does not end with a newline (cut short?)")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    _check_columns(path, what, reader.fieldnames or [], columns)
    rows = list(reader)
    if not rows:
        raise RecordError(path, f"{what} has a header but no rows")
    return rows


def load_npy(
    path: str | Path,
    dtype: np.dtype | None = None,
    shape: tuple[int | None, ...] | None = None,
    *,
    mmap: bool = True,
    what: str = "array",
) -> np.ndarray:
    """A ``.npy`` array (memory-mapped by default) of ``dtype`` and ``shape`` (None entries free)."""
    path = require_file(path, what)
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise RecordError(path, f"{what} is not a readable .npy file ({error_reason(exc)})") from None
    if not isinstance(array, np.ndarray):
        raise RecordError(path, f"{what} is not a single .npy array")
    if dtype is not None and array.dtype != dtype:
        raise RecordError(path, f"dtype {array.dtype}, expected {np.dtype(dtype)}")
    if shape is not None and (
        array.ndim != len(shape) or any(s is not None and a != s for a, s in zip(array.shape, shape))
    ):
        want = tuple("*" if s is None else s for s in shape)
        raise RecordError(path, f"shape {array.shape}, expected {want}")
    return array


def first_nonfinite_row(array: np.ndarray) -> int | None:
    """Index of the first row (along axis 0) holding NaN or ±inf, else None; reads in chunks."""
    if array.dtype.kind not in "fc" or array.size == 0:
        return None
    row_bytes = max(1, array.itemsize * int(np.prod(array.shape[1:], dtype=np.int64)))
    step = max(1, FINITE_CHUNK_BYTES // row_bytes)
    for start in range(0, array.shape[0], step):
        chunk = np.asarray(array[start : start + step])
        finite = np.isfinite(chunk).reshape(chunk.shape[0], -1).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


def check_finite(path: str | Path, array: np.ndarray, first_row: int = 0) -> None:
    """Raise naming ``path`` and the first row when a float array holds NaN or infinite values
    (``first_row``: the file row of the array's first row, for a file checked block by block).

    Checked before training: a non-finite input otherwise surfaces epochs later as a diverged loss
    (or, in evaluation, as silently meaningless ranks).
    """
    row = first_nonfinite_row(array)
    if row is not None:
        raise RecordError(
            path, f"row {first_row + row} holds NaN or infinite values (first such row; rebuild the file)"
        )


def read_run_id(path: str | Path, what: str = "MLflow run id file") -> str:
    """The 32-hex-digit MLflow run id a file holds (``track parent``, ``mlflow_run_id.txt``)."""
    path = require_file(path, what)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(path, f"cannot read {what} ({error_reason(exc)})") from None
    return checked_run_id(path, text, what)


def checked_run_id(path: str | Path, value: Any, what: str) -> str:
    """``value`` when it is an MLflow run id (32 hex digits); else an error naming ``path``."""
    if not isinstance(value, str) or not _RUN_ID.match(value):
        raise RecordError(Path(path), f"{what} does not hold an MLflow run id (32 hex digits)")
    return value
