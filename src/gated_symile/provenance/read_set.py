"""What a stage read, file by file: the provenance of a stage that reads only part of a folder.

Why: the cohort stage opens a few percent of a raw release (the tables, the listing files, the
ECG records its rule consumes, DICOM headers), but hashing every file of its input folders for the
manifest would read the whole release (about 100 GB of ECGs and 570 GB of JPGs for real MIMIC).
A stage that declares an input folder *selective* (``manifests.declare(..., selective=...)``)
instead notes here each file it read, with the sha256 of the bytes it read, and each file whose
mere existence it checked; the manifest hashes nothing else and lists the rest of the folder by
name, size and modification time (:class:`gated_symile.provenance.manifests.StageRecorder`).

The library notes files only while a stage records (:func:`recording`), so tests and benchmarks
that call it directly pay nothing; the hashes are computed by the workers that read the files,
while the bytes are in the page cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["OpenedFile", "ReadSet", "active", "opened_file", "recording"]


@dataclass(frozen=True, slots=True)
class OpenedFile:
    """A file a stage read: ``path`` (relative to the folder it is noted under), the stat at the
    time it was hashed, and the sha256 of its first ``nbytes`` bytes (``None``: the whole file,
    e.g. a DICOM whose header alone was parsed has ``nbytes`` < ``size``).  Slotted: a stage holds
    one per file it read (two per ECG record), so a per-instance ``__dict__`` grew the cohort's
    memory with the release."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    nbytes: int | None = None


def opened_file(path: str | os.PathLike, rel: str, sha256: str) -> OpenedFile:
    """An :class:`OpenedFile` for the whole file at ``path`` whose sha256 the caller computed."""
    st = os.stat(path)
    return OpenedFile(rel, st.st_size, st.st_mtime_ns, sha256)


class ReadSet:
    """Files read (:attr:`opened`) and files only checked for existence (:attr:`checked`, the
    result of the check), keyed by absolute path."""

    def __init__(self) -> None:
        self.opened: dict[str, OpenedFile] = {}
        self.checked: dict[str, bool] = {}

    def add_opened(self, root: str | os.PathLike, files: Iterable[OpenedFile]) -> None:
        base = os.path.abspath(root)
        for item in files:
            self.opened[os.path.join(base, item.path)] = item

    def add_checked(self, root: str | os.PathLike, rels: Iterable[str], present: Iterable[bool]) -> None:
        base = os.path.abspath(root)
        for rel, ok in zip(rels, present):
            self.checked[os.path.join(base, rel)] = bool(ok)

    def under(self, folder: str | os.PathLike) -> tuple[dict[str, OpenedFile], dict[str, bool]]:
        """(opened, checked) of the files below ``folder``, keyed by POSIX path relative to it."""
        prefix = os.path.abspath(folder).rstrip(os.sep) + os.sep

        def rel(path: str) -> str:
            return path[len(prefix) :].replace(os.sep, "/")

        opened = {rel(p): f for p, f in self.opened.items() if p.startswith(prefix)}
        checked = {rel(p): ok for p, ok in self.checked.items() if p.startswith(prefix)}
        return opened, checked


_current: ReadSet | None = None


def active() -> ReadSet | None:
    """The read set being recorded, or ``None`` (then nothing needs noting or hashing)."""
    return _current


@contextmanager
def recording() -> Iterator[ReadSet]:
    """Record what the code inside the block notes (one stage run)."""
    global _current
    previous, _current = _current, ReadSet()
    try:
        yield _current
    finally:
        _current = previous
