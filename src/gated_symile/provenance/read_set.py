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
from typing import TypeVar

__all__ = ["OpenedFile", "ReadSet", "active", "opened_file", "recording"]

V = TypeVar("V")


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
    result of the check), each keyed by the absolute folder they were noted under and then by
    their POSIX path relative to it.

    Why by folder: a stage notes tens of thousands of files under one or two folders (the ECG and
    CXR releases); keying each by its absolute path held the folder's name once per file and
    :meth:`under` then built a second copy of every entry, which grew the tensors stage's peak
    memory with the cohort."""

    def __init__(self) -> None:
        self.opened: dict[str, dict[str, OpenedFile]] = {}
        self.checked: dict[str, dict[str, bool]] = {}

    def add_opened(self, root: str | os.PathLike, files: Iterable[OpenedFile]) -> None:
        into = self.opened.setdefault(os.path.abspath(root), {})
        for item in files:
            into[_posix(item.path)] = item

    def add_checked(self, root: str | os.PathLike, rels: Iterable[str], present: Iterable[bool]) -> None:
        into = self.checked.setdefault(os.path.abspath(root), {})
        for rel, ok in zip(rels, present):
            into[_posix(rel)] = bool(ok)

    def under(self, folder: str | os.PathLike) -> tuple[dict[str, OpenedFile], dict[str, bool]]:
        """(opened, checked) of the files below ``folder``, keyed by POSIX path relative to it.
        Read-only: when everything was noted under ``folder`` itself, these are the stored maps."""
        base = os.path.abspath(folder)
        return _below(self.opened, base), _below(self.checked, base)


def _posix(rel: str) -> str:
    return rel.replace(os.sep, "/") if os.sep != "/" else rel


def _below(by_root: dict[str, dict[str, V]], base: str) -> dict[str, V]:
    """The entries of ``by_root`` whose file lies below the absolute folder ``base``, keyed
    relative to it (noted under ``base``, under a folder inside it, or under a folder above it)."""
    inside = base.rstrip(os.sep) + os.sep
    parts: list[dict[str, V]] = []
    for root, files in by_root.items():
        if root == base:
            parts.append(files)
        elif root.startswith(inside):
            lead = _posix(root[len(inside) :]) + "/"
            parts.append({lead + rel: value for rel, value in files.items()})
        elif inside.startswith(root.rstrip(os.sep) + os.sep):
            lead = _posix(inside[len(root.rstrip(os.sep)) + 1 :])
            parts.append({rel[len(lead) :]: v for rel, v in files.items() if rel.startswith(lead)})
    if len(parts) == 1:
        return parts[0]
    merged: dict[str, V] = {}
    for part in parts:
        merged.update(part)
    return merged


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
