"""ECG quality control of the records the cohort rule consumes (docs/data.md §4 "ECG QC").

Why QC decides the selection: the reference drops bad records first, so a NaN or all-zero earliest
ECG lets the next valid one in the window be chosen.  An unreadable or missing record is not a
crash: it is quarantined with its reason like a failed QC, and the cohort goes on without it.
Which records are checked, and in which order, is :mod:`gated_symile.data.mimic.ecg_candidates`'s job.

Each check can also return what the stage read of the record (path, size, mtime and sha256 of the
header and the signal file), hashed right after the read while the bytes are in the page cache,
so that the stage's provenance manifest costs no second pass over the release.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from gated_symile.data.mimic.parallel import RecordPool
from gated_symile.provenance.read_set import OpenedFile

if TYPE_CHECKING:
    from gated_symile.records.wfdb_batch import BatchQC, FileHash

__all__ = [
    "ECG_FAILED_QC",
    "ECG_MISSING",
    "ECG_UNREADABLE",
    "EcgCheck",
    "EcgQcTask",
    "check_chunk",
    "check_records",
    "qc_record",
    "record_files_read",
]

ECG_MISSING = "ECG record missing"
ECG_UNREADABLE = "ECG record unreadable"
ECG_FAILED_QC = "ECG failed QC"
"""The kinds of problem a rejected record has (:attr:`EcgCheck.problem`): an admission whose every
candidate was rejected is excluded naming them (``cohort_rules.decide_admissions``)."""


@dataclass(frozen=True)
class EcgQcTask:
    """One record to check: ``root / path`` is the WFDB record path without extension."""

    root: str
    path: str
    rule: str = "symile"


@dataclass(frozen=True)
class EcgCheck:
    """QC verdict of one record (``reason`` None = passes), the kind of its problem
    (:data:`ECG_MISSING`, :data:`ECG_UNREADABLE` or :data:`ECG_FAILED_QC`) and the files read."""

    reason: str | None
    problem: str | None = None
    opened: tuple[OpenedFile, ...] = ()


def qc_record(task: EcgQcTask) -> str | None:
    """Reason the record is excluded, or ``None`` when it passes QC under ``task.rule``."""
    return _check(task.root, task.rule, False, task.path).reason


def _check(
    root: str, rule: str, hash_files: bool, path: str, batch: BatchQC | None = None
) -> EcgCheck:
    """One record's check; ``batch`` is its verdict from the batch path, if that decided it."""
    if batch is None:
        reason, problem, data_files = _read_and_check(root, rule, path)
    else:
        reason = batch.qc.reject_reason(rule=rule)
        problem = None if reason is None else ECG_FAILED_QC
        data_files = batch.file_name
    hashed = None if batch is None else batch.hashed  # from the bytes the QC read
    opened = record_files_read(root, path, data_files, hashed) if hash_files else ()
    return EcgCheck(reason, problem, opened)


def _read_and_check(
    root: str, rule: str, path: str
) -> tuple[str | None, str | None, Sequence[str]]:
    """Reason, problem and signal file names of one record read by the per-record reader."""
    from gated_symile.errors import RecordError
    from gated_symile.records.errors import MissingRecord
    from gated_symile.records.wfdb_ecg import read_wfdb_samples

    data_files: Sequence[str] = (os.path.basename(path) + ".dat",)  # if the header is unreadable
    try:
        samples = read_wfdb_samples(os.path.join(root, path))
        data_files = tuple(str(name) for name in samples.header.file_name) or data_files
        reason = samples.qc().reject_reason(rule=rule)
        problem = None if reason is None else ECG_FAILED_QC
    except MissingRecord:
        reason, problem = f"{ECG_MISSING}: {path}", ECG_MISSING
    except RecordError as exc:
        reason, problem = f"{ECG_UNREADABLE}: {exc.problem}", ECG_UNREADABLE
    except Exception as exc:  # noqa: BLE001 -- a broken file must quarantine, never stop the cohort
        reason, problem = f"{ECG_UNREADABLE}: {type(exc).__name__}: {exc}", ECG_UNREADABLE
    return reason, problem, data_files


def record_files_read(
    root: str, path: str, data_files: Sequence[str], hashed: Sequence[FileHash] | None = None
) -> tuple[OpenedFile, ...]:
    """Hash the record's header and signal files (names in the header's folder) that exist; a
    missing one is simply absent from the result.  ``hashed``: the header's and the signal
    files' ``(size, mtime_ns, sha256)``, taken from the bytes already read, in that order."""
    from gated_symile.provenance.hashing import file_sha256

    folder = os.path.dirname(path)
    names = [path + ".hea", *(os.path.join(folder, name) for name in data_files)]
    unique = dict.fromkeys(os.path.normpath(name) for name in names)
    if hashed is not None:
        return tuple(OpenedFile(rel, *facts) for rel, facts in zip(unique, hashed, strict=True))
    opened = []
    for rel in unique:
        full = os.path.join(root, rel)
        try:
            st = os.stat(full)
            digest = file_sha256(full)
        except OSError:
            continue
        opened.append(OpenedFile(rel, st.st_size, st.st_mtime_ns, digest))
    return tuple(opened)


def check_chunk(root: str, rule: str, hash_files: bool, paths: list[str]) -> list[EcgCheck]:
    """:class:`EcgCheck` of each record of one work item: the common case decided for the whole
    item at once (:func:`~gated_symile.records.wfdb_batch.qc_wfdb_batch`), every other record by
    the per-record reader, so each still gets its own reason."""
    from gated_symile.records.wfdb_batch import qc_wfdb_batch

    batch = qc_wfdb_batch([os.path.join(root, path) for path in paths], hash_files=hash_files)
    return [_check(root, rule, hash_files, path, fast) for path, fast in zip(paths, batch)]


def check_records(
    pool: RecordPool,
    root: str | Path,
    paths: Sequence[str],
    *,
    rule: str = "symile",
    hash_files: bool = False,
) -> Iterator[EcgCheck]:
    """QC the records ``paths`` (relative to ``root``) on ``pool``; one :class:`EcgCheck` per path,
    in order, each handed over as its work item is done (a round of the cohort checks tens of
    thousands of records: the caller folds them instead of holding them all).  ``hash_files``
    also hashes the files each check read."""
    return pool.imap_chunks(partial(check_chunk, str(root), rule, hash_files), list(paths))
