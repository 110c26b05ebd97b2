"""ECG QC of many WFDB records at once: the per-record reader's verdicts at near the cost of a read.

Why: the cohort checks up to hundreds of thousands of records, and per record the Python and numpy
call overhead of :func:`~gated_symile.records.wfdb_ecg.read_wfdb_samples` + ``.qc()`` is several
times the cost of reading the record's two files.  Here a work item's records are handled
together: each block's files are opened while the block before is checked, reading ahead
(:mod:`gated_symile.records.read_ahead`: on a cold disk the reads overlap instead of queueing one
by one); headers of the common MIMIC-IV-ECG shape are recognised by the regex of a recently seen,
already checked layout (:mod:`gated_symile.records.wfdb_batch_header`), the format-16 signal files
are read straight into one preallocated ``(block, n_samples, n_leads)`` int16 buffer, and the
checksums and QC extremes of a block of records come from one stacked reduction each; checksum
texts are converted for the whole work item at once, and the per-record results are named tuples.

Only the *common case* is decided here: a record whose header has another shape or layout, whose
signal file is missing, has another size or cannot be read, or whose checksum does not match gets
``None``, and the caller reads it with the per-record reader, which gives its exact error.  The QC
facts of the others are computed exactly as :func:`~gated_symile.records.ecg_qc.qc_stored`
computes them: each lead's smallest and largest stored value converted to mV by the same
element-wise operations, or, for a record holding the missing-sample value, ``qc_stored`` itself
while the record is in the buffer.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from contextlib import closing
from typing import NamedTuple

import numpy as np

from gated_symile.records.column_reduce import reduce_columns_stacked
from gated_symile.records.ecg_qc import EcgQC, qc_stored
from gated_symile.records.read_ahead import blocks_read_ahead, close_all, open_advised
from gated_symile.records.wfdb_batch_header import CommonHeader, parse_common_header
from gated_symile.records.wfdb_ecg import WFDB_MISSING_VALUE

__all__ = ["BLOCK_RECORDS", "BatchQC", "qc_wfdb_batch"]

BLOCK_RECORDS = 16
"""Records read before their reductions run: their samples (about 2 MB) are still in the cache,
and the reductions' per-call cost is spread over enough records (8, 16, 32 within noise)."""
_MAX_HEADER_BYTES = 1 << 16
_CHECKSUM_MODULUS = 1 << 16


FileHash = tuple[int, int, str]
"""What was read of one file, hashed from the very bytes read: ``(size, mtime_ns, sha256)``."""


class BatchQC(NamedTuple):
    """QC facts of one record decided on the batch path, the signal file name(s) its header
    lists (one per signal, as :attr:`WfdbHeader.file_name`) and, when asked for, the header's and
    the signal file's :data:`FileHash`.  A named tuple: made per record, at a fraction of a
    frozen dataclass's cost."""

    qc: EcgQC
    file_name: tuple[str, ...]
    hashed: tuple[FileHash, FileHash] | None = None


def qc_wfdb_batch(
    stems: Sequence[str],
    *,
    expected_fs: float = 500,
    expected_samples: int = 5000,
    hash_files: bool = False,
) -> list[BatchQC | None]:
    """QC facts of each record ``stems[i]`` (WFDB record path without extension), or ``None``
    where the record must go through the per-record reader (module docstring).

    ``hash_files`` also hashes the two files of each record from the bytes just read (for the
    stage's provenance): hashing them again later cost a second open and read of every file."""
    headers: list[CommonHeader | None] = []
    hashed: dict[int, tuple[FileHash, FileHash]] = {}
    extremes = np.empty((len(stems), 3, 12), dtype=np.int16)  # lowest, highest, 16-bit sum
    buffer = np.empty((BLOCK_RECORDS, expected_samples, 12), dtype="<i2")
    targets = [memoryview(samples).cast("B") for samples in buffer]
    with_missing: dict[int, EcgQC] = {}
    # each record's header and its signal file by MIMIC-IV-ECG's naming, opened a block ahead
    files = [(stem + ".hea", stem + ".dat") for stem in stems]
    with closing(blocks_read_ahead(files, BLOCK_RECORDS)) as blocks:
        for rows, opened in blocks:
            start = rows.start
            read = []
            for row, fds, target in zip(rows, opened, targets):
                header, hashes = _read_record(stems[row], fds, target, buffer.shape[1:], expected_fs, expected_samples, hash_files)  # fmt: skip
                read.append(header)
                if hashes is not None:
                    hashed[row] = hashes
            if any(read):
                _reduce_block(buffer[: len(rows)], extremes[start : start + len(rows)])
                with_missing.update(_qc_with_missing(read, buffer, extremes, start))
            headers += read
    return _verdicts(headers, extremes, with_missing, hashed)


def _read_record(
    stem: str,
    fds: tuple[int | None, ...],
    target: memoryview,
    shape: tuple[int, ...],
    expected_fs: float,
    expected_samples: int,
    hash_files: bool,
) -> tuple[CommonHeader | None, tuple[FileHash, FileHash] | None]:
    """Header of ``stem`` and its ``shape`` samples in ``target`` (``None``: per-record path),
    and with ``hash_files`` both files' :data:`FileHash` (``None`` if the header was not read
    whole: it is then hashed by the per-record route).  ``fds``: the record's header and
    ``<stem>.dat`` opened ahead (closed by their opener)."""
    header_fd, data_fd = fds
    read = _read_bytes(header_fd)
    if read is None:
        return None, None
    content, header_stat = read
    header = parse_common_header(
        content, expected_fs=expected_fs, expected_samples=expected_samples
    )
    if header is None or (header.layout.n_samples, header.layout.n_leads) != shape:
        return None, None
    # the header's folder + the file name (which holds no "/"): os.path.join(dirname(stem), name)
    data_file = stem[: stem.rfind("/") + 1] + header.file_name[0]
    if data_file == stem + ".dat":
        data_stat = _read_exactly(data_fd, target, header.layout.file_bytes)
    else:  # named otherwise than the file opened ahead
        other = open_advised(data_file)
        try:
            data_stat = _read_exactly(other, target, header.layout.file_bytes)
        finally:
            close_all([other])
    if data_stat is None:
        return None, None
    if not hash_files or header_stat.st_size != len(content):
        return header, None
    return header, (
        (len(content), header_stat.st_mtime_ns, hashlib.sha256(content).hexdigest()),
        (data_stat.st_size, data_stat.st_mtime_ns, hashlib.sha256(target).hexdigest()),
    )


def _read_bytes(fd: int | None) -> tuple[bytes, os.stat_result] | None:
    """A small open file's bytes and its stat, or ``None`` if it cannot be read (or was not
    opened) or is not small."""
    if fd is None:
        return None
    try:
        content = os.read(fd, _MAX_HEADER_BYTES)
        info = os.fstat(fd)
    except OSError:
        return None
    return (content, info) if len(content) < _MAX_HEADER_BYTES else None


def _read_exactly(fd: int | None, target: memoryview, size: int) -> os.stat_result | None:
    """Fill ``target`` from the open regular file ``fd``, which must hold exactly ``size``
    bytes; its stat, or ``None`` when it cannot (or was not opened)."""
    if fd is None:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != size or len(target) != size:
            return None
        got = os.readv(fd, [target])
        while got < size and (count := os.readv(fd, [target[got:]])):
            got += count
        return info if got == size else None
    except OSError:
        return None


def _reduce_block(samples: np.ndarray, out: np.ndarray) -> None:
    """Per record of ``samples`` ``(n, n_samples, n_leads)``: each lead's smallest and largest
    stored value and its 16-bit sum, into ``out`` ``(n, 3, n_leads)``."""
    out[:, 0] = reduce_columns_stacked(np.minimum, samples)
    out[:, 1] = reduce_columns_stacked(np.maximum, samples)
    out[:, 2] = reduce_columns_stacked(np.add, samples.view(np.uint16), np.uint16).view(np.int16)


def _qc_with_missing(
    read: list[CommonHeader | None], buffer: np.ndarray, extremes: np.ndarray, start: int
) -> dict[int, EcgQC]:
    """QC facts of the records of a block that hold the missing-sample value (NaN samples), by
    the per-record computation, while their samples are still in ``buffer``; keyed by row."""
    lowest = extremes[start : start + len(read), 0].min(axis=1)
    if lowest.min() > WFDB_MISSING_VALUE:  # the common case: nothing to do
        return {}
    return {
        start + slot: qc_stored(buffer[slot], WFDB_MISSING_VALUE, header.layout.to_mv)
        for slot in np.flatnonzero(lowest == WFDB_MISSING_VALUE).tolist()
        if (header := read[slot]) is not None
    }


def _verdicts(
    headers: list[CommonHeader | None],
    extremes: np.ndarray,
    with_missing: dict[int, EcgQC],
    hashed: dict[int, tuple[FileHash, FileHash]],
) -> list[BatchQC | None]:
    """Checksums and QC facts of the records that were read (``headers[i]`` not None)."""
    rows = [row for row, header in enumerate(headers) if header is not None]
    results: list[BatchQC | None] = [None] * len(headers)
    if not rows:
        return results
    valid = _checksums_match(extremes[rows, 2].view(np.uint16), [headers[row] for row in rows])
    rows = [row for row, ok in zip(rows, valid.tolist()) if ok]
    read = [headers[row] for row in rows]
    facts = _qc_facts(extremes[rows, 0], extremes[rows, 1], read)  # rows with missing: unused
    for row, header, qc in zip(rows, read, facts, strict=True):
        results[row] = BatchQC(with_missing.get(row, qc), header.file_name, hashed.get(row))
    return results


def _checksums_match(sums: np.ndarray, headers: list[CommonHeader]) -> np.ndarray:
    """Per record: every signal's 16-bit sum equals its header checksum modulo 2**16."""
    written = list(map(int, [text for header in headers for text in header.checksum]))
    try:
        expected = np.array(written, dtype=np.int64)
    except OverflowError:  # a checksum beyond 64 bits: reduce it in Python
        expected = np.array([value % _CHECKSUM_MODULUS for value in written], dtype=np.int64)
    expected = (expected % _CHECKSUM_MODULUS).reshape(sums.shape)
    return (sums == expected).all(axis=1)


def _qc_facts(
    lowest: np.ndarray, highest: np.ndarray, headers: Sequence[CommonHeader]
) -> list[EcgQC]:
    """:func:`~gated_symile.records.ecg_qc.qc_stored` of records without missing samples, from
    their per-lead extremes ``(n_records, n_leads)`` (source order)."""
    if not headers:
        return []
    layouts = list({id(header.layout): header.layout for header in headers}.values())
    which = np.array([layouts.index(header.layout) for header in headers])  # a handful of layouts
    order = np.array([layout.order for layout in layouts])[which]
    extremes = np.take_along_axis(np.stack([lowest, highest], axis=1), order[:, None, :], axis=2)
    mv = extremes.astype(np.float64)  # the per-record conversion, element by element
    mv -= np.array([layout.baseline for layout in layouts])[which, None, :]
    mv /= np.array([layout.gain for layout in layouts])[which, None, :]
    mv *= np.array([layout.unit_scale for layout in layouts])[which, None, :]  # x * 1.0 == x
    max_abs = np.abs(mv).max(axis=(1, 2)).tolist()
    flat = mv[:, 0, :] == mv[:, 1, :]
    return [
        EcgQC(
            has_nan=False,
            nan_count=0,
            all_zero=largest == 0.0,
            flat_leads=tuple(np.flatnonzero(flat[row]).tolist()) if any_flat else (),
            max_abs_mv=largest,
        )
        for row, (largest, any_flat) in enumerate(zip(max_abs, flat.any(axis=1).tolist()))
    ]
