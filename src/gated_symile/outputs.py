"""Writing stage outputs so that a killed or disk-full job never leaves a file that looks complete.

Why: users rebuild large releases on shared clusters, where jobs are killed, nodes fail and disks
fill up. A file that is half written but sits under its final name is taken as complete by the
next stage (or by Snakemake on a rerun) and turns into a wrong result far away. So:

- every file is written to a temporary name in the same folder and renamed into place only when
  it is complete (:func:`atomic_path` and the ``write_*`` helpers built on it); a rename within one
  file system is atomic, so the final name holds the old file or the new one, never a mixture;
- a stage that writes a folder builds it beside the final name (``.<name>.partial``) and moves it
  into place at the end (:func:`staged_folder`): a folder under its final name is always a whole
  run's output, never a mixture of two runs or a run cut short;
- an output path that cannot be used (a file where a folder is expected, a foreign folder) or a
  write that fails (disk full, file-size limit, permissions) is one ``GatedSymileError`` naming the
  path, raised before any expensive work where that can be checked up front.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gated_symile.errors import GatedSymileError

PARTIAL_SUFFIX = ".partial"
"""Suffix of the folder a stage builds before it is moved to its final name."""

OWNED_MARKERS: tuple[str, ...] = ("provenance.json",)
"""Files that mark a folder as one a stage wrote (so a rerun may replace it): the stage manifest."""


def _failure(path: Path, exc: OSError) -> GatedSymileError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return GatedSymileError(f"{path}: cannot write ({reason})")


def output_file(path: str | Path) -> Path:
    """Check an output file path before the work starts; create its folder.

    Raises when the path is a folder or its folder cannot be created (a file in the way).
    """
    path = Path(path)
    if path.is_dir():
        raise GatedSymileError(f"{path}: output path is a folder, expected a file")
    _make_folder(path.parent)
    return path


def output_folder(path: str | Path) -> Path:
    """Check an output folder path before the work starts and create it (with its parents)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GatedSymileError(f"{path}: output path exists and is not a folder")
    _make_folder(path)
    return path


def _make_folder(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise GatedSymileError(f"{blocker}: exists and is not a folder (needed for {path})") from None
    except OSError as exc:
        raise _failure(path, exc) from None


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path in ``target``'s folder, renamed to ``target`` when the block succeeds.

    The data is flushed to disk (fsync) before the rename, so even a node crash leaves either the
    old or the new file. On any error the temporary file is removed and the error re-raised, an
    ``OSError`` (disk full, file too large) as a ``GatedSymileError`` naming ``target``.
    """
    target = Path(target)
    if target.is_dir():
        raise GatedSymileError(f"{target}: output path is a folder, expected a file")
    _make_folder(target.parent)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _failure(target, exc) from None
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, _new_file_mode())  # mkstemp's 0600 would hide outputs from the project's group
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _failure(target, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less this process's umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | Path, document: Any, indent: int | None = 2) -> None:
    """Sorted keys and a final newline: byte-identical for equal content."""
    write_text(target, json.dumps(document, indent=indent, sort_keys=True) + "\n")


def save_npy(target: str | Path, array: Any) -> None:
    """``np.save`` without pickles (through a handle: ``np.save`` would append ``.npy`` to a name)."""
    import numpy as np

    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


ROWS_PER_GROUP = 4096
"""Rows per parquet row group of the cohort and split tables (about 230 columns). A reader holds
a whole row group's columns at once, so a table written as one row group made the next stage's
peak memory grow with the table; groups of this size are read one after another."""

CHUNKED_COLUMN_BYTES = 2**19
"""Bytes of a column of a row group from which :func:`write_parquet_groups` combines the group's
chunks: half of pyarrow's default data and dictionary page limits (1 MiB), since a page closes
once the values written to it reach the limit, checked after each write batch, and a batch
ends where a chunk ends."""


def write_parquet_groups(path: str | Path, batches: Any, **options: Any) -> int:
    """Parquet from a ``pyarrow.RecordBatchReader`` in row groups of exactly
    :data:`ROWS_PER_GROUP` rows, whatever the reader's batch sizes (same rows -> same bytes), and
    without the reader's schema metadata; zstd unless ``options`` say otherwise. Returns the
    number of rows written.

    A group is written from the reader's batches as they are (a chunked slice), not combined into
    one copy first: the copy held a second ~7.5 MB group at the cohort stage's peak.  A column
    big enough to fill a page (:data:`CHUNKED_COLUMN_BYTES`) may get its page breaks where the
    batches break, so such a group is combined: same rows, same bytes, whatever the batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = batches.schema.remove_metadata()
    rows = 0
    with pq.ParquetWriter(path, schema, **{"compression": "zstd", **options}) as writer:
        pending = pa.Table.from_batches([], schema=schema)
        for batch in batches:
            rows += batch.num_rows
            pending = pa.concat_tables([pending, pa.Table.from_batches([batch]).cast(schema)])
            while pending.num_rows >= ROWS_PER_GROUP:
                writer.write_table(_batch_independent(pending.slice(0, ROWS_PER_GROUP)))
                pending = pending.slice(ROWS_PER_GROUP)
        if pending.num_rows:
            writer.write_table(_batch_independent(pending))
    return rows


def _batch_independent(group: Any) -> Any:
    """``group`` (a pyarrow table), combined into one chunk per column if a column spread over
    several chunks is big enough for the writer to break its pages where the chunks break."""
    if any(column.num_chunks > 1 and column.nbytes >= CHUNKED_COLUMN_BYTES for column in group.columns):
        return group.combine_chunks()
    return group


def write_parquet(target: str | Path, table: Any, **options: Any) -> None:
    """``pyarrow.parquet.write_table`` of a pyarrow table, atomically."""
    import pyarrow.parquet as pq

    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, **options)


def replaceable(folder: Path, markers: Sequence[str] = ()) -> bool:
    """Whether a stage may replace ``folder``: empty, or holding a stage manifest or one of
    ``markers`` (the stage's own completion file). Anything else may be a user's data."""
    if not any(folder.iterdir()):
        return True
    return any((folder / name).exists() for name in (*OWNED_MARKERS, *markers))


def check_replaceable(out: Path, markers: Sequence[str] = (), what: str = "stage output") -> None:
    """Raise unless ``out`` is absent, or a folder :func:`replaceable` says a rerun may replace."""
    if not out.exists():
        return
    if not out.is_dir():
        raise GatedSymileError(f"{out}: output path exists and is not a folder")
    if not replaceable(out, markers):
        raise GatedSymileError(f"{out}: folder is not empty and is not a {what}; refusing to overwrite")


@contextmanager
def staged_folder(
    out: str | Path, markers: Sequence[str] = (), what: str = "stage output"
) -> Iterator[Path]:
    """Build a folder output beside ``out`` and move it to ``out`` when the block succeeds.

    Yields an empty ``.<name>.partial`` folder next to ``out`` (left over from a killed run, it is
    cleared first). An earlier output at ``out`` is replaced only when the new one is complete,
    and only when :func:`replaceable`; on failure it stays as it was and the partial folder is
    removed. Errors that name a file being built name it under ``out``, where it was meant to go.
    """
    out = Path(out)
    final = Path(os.path.abspath(out))
    if final == final.parent:
        raise GatedSymileError(f"{out}: cannot write a stage output to the file-system root")
    check_replaceable(out, markers, what)
    _make_folder(final.parent)
    staging = final.parent / f".{final.name}{PARTIAL_SUFFIX}"
    try:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
    except OSError as exc:
        raise _failure(staging, exc) from None
    try:
        yield staging
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        where = _unstaged(Path(os.path.abspath(exc.filename)), staging, out) if exc.filename else out
        raise _failure(where, exc) from None
    except GatedSymileError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if str(staging) not in str(exc):
            raise
        raise GatedSymileError(str(exc).replace(str(staging), str(out))) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _unstaged(path: Path, staging: Path, out: Path) -> Path:
    """``path`` inside the staging folder, named where it was meant to go below ``out``."""
    if path == staging or staging in path.parents:
        return out / path.relative_to(staging)
    return path
