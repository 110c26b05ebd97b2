"""What a stage read, file by file: the provenance of a stage that reads only part of a folder.

Why: the cohort stage opens a few percent of a raw release (the tables, the listing files, the
ECG records its rule consumes, DICOM headers), but hashing every file of its input folders for the
manifest would read the whole release (about 100 GB of ECGs and 570 GB of JPGs for real MIMIC).
A stage that declares an input folder *selective* (``manifests.declare(..., selective=...)``)
instead notes here each file it read, with the sha256 of the bytes it read, and each file whose
mere existence it checked; the manifest hashes nothing else and lists the rest of the folder by
name, size and modification time (:class:`gated_symile.provenance.manifests.StageRecorder`).

Why on disk: a stage notes one entry per file it read (two per ECG record, one per radiograph:
about 90 000 in a 50,000-admission release, millions for a full MIMIC rebuild).  Held as Python
objects they grew the cohort's and the tensors' peak memory with the cohort; here they go to a
private temporary SQLite database (deleted when the recording ends) whose page cache is bounded,
and the manifest reads them back sorted, a block at a time (:class:`FolderReads`).

The library notes files only while a stage records (:func:`recording`), so tests and benchmarks
that call it directly pay nothing; the hashes are computed by the workers that read the files,
while the bytes are in the page cache.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["FolderReads", "OpenedFile", "ReadSet", "active", "opened_file", "recording"]

_SCHEMA = """
CREATE TABLE roots (id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL);
CREATE TABLE opened (root INTEGER, rel TEXT, size INTEGER, mtime_ns INTEGER, sha256 TEXT,
                     nbytes INTEGER, PRIMARY KEY (root, rel)) WITHOUT ROWID;
CREATE TABLE checked (root INTEGER, rel TEXT, present INTEGER, PRIMARY KEY (root, rel)) WITHOUT ROWID;
"""
_FETCH_ROWS = 4096
"""Rows noted or read back per block (bounds the Python objects alive at once)."""


@dataclass(frozen=True, slots=True)
class OpenedFile:
    """A file a stage read: ``path`` (relative to the folder it is noted under), the stat at the
    time it was hashed, and the sha256 of its first ``nbytes`` bytes (``None``: the whole file,
    e.g. a DICOM whose header alone was parsed has ``nbytes`` < ``size``)."""

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
    """Files read and files only checked for existence (with the result of the check), each
    keyed by the absolute folder they were noted under and their POSIX path relative to it; a
    file noted twice keeps its last entry."""

    def __init__(self) -> None:
        # "": a private temporary database on disk, removed when the connection closes
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self._db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + _SCHEMA)
        self._roots: dict[str, int] = {}
        self._pending: dict[str, list[tuple]] = {"opened": [], "checked": []}  # rows not yet inserted

    def _root_id(self, root: str | os.PathLike) -> int:
        path = os.path.abspath(root)
        if path not in self._roots:
            self._roots[path] = self._db.execute("INSERT INTO roots (path) VALUES (?)", (path,)).lastrowid
        return self._roots[path]

    def add_opened(self, root: str | os.PathLike, files: Iterable[OpenedFile]) -> None:
        rid = self._root_id(root)
        self._add("opened", ((rid, _posix(f.path), f.size, f.mtime_ns, f.sha256, f.nbytes) for f in files))

    def add_checked(self, root: str | os.PathLike, rels: Iterable[str], present: Iterable[bool]) -> None:
        rid = self._root_id(root)
        self._add("checked", ((rid, _posix(rel), int(bool(ok))) for rel, ok in zip(rels, present)))

    def _add(self, table: str, rows: Iterable[tuple]) -> None:
        """Buffer rows (callers note a record at a time) and insert them a block at a time."""
        pending = self._pending[table]
        pending.extend(rows)
        if len(pending) >= _FETCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        with self._transaction():
            for table, rows in self._pending.items():
                marks = ", ".join("?" * (6 if table == "opened" else 3))
                self._db.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)
                rows.clear()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def under(self, folder: str | os.PathLike) -> FolderReads:
        """The files below ``folder`` (noted under it, under a folder inside it or under a folder
        above it), keyed by POSIX path relative to it; valid until the next call (one temporary
        table pair serves them all)."""
        base = os.path.abspath(folder)
        self._flush()
        with self._transaction():
            for table in ("below_opened", "below_checked"):
                self._db.execute(f"DROP TABLE IF EXISTS temp.{table}")
            self._db.execute("CREATE TEMP TABLE below_opened (rel TEXT PRIMARY KEY, size INTEGER, "
                             "mtime_ns INTEGER, sha256 TEXT, nbytes INTEGER) WITHOUT ROWID")  # fmt: skip
            self._db.execute("CREATE TEMP TABLE below_checked (rel TEXT PRIMARY KEY, present INTEGER) WITHOUT ROWID")
            for rid, root in self._db.execute("SELECT id, path FROM roots ORDER BY id").fetchall():
                relation = _relation(root, base)
                if relation is None:
                    continue
                rel_sql, where = relation
                self._db.execute(
                    f"INSERT OR REPLACE INTO below_opened SELECT {rel_sql}, size, mtime_ns, sha256, nbytes "
                    f"FROM opened WHERE root = ? AND {where}", (rid,),
                )  # fmt: skip
                self._db.execute(
                    f"INSERT OR REPLACE INTO below_checked SELECT {rel_sql}, present FROM checked "
                    f"WHERE root = ? AND {where}", (rid,),
                )  # fmt: skip
        return FolderReads(self._db)

    def close(self) -> None:
        self._db.close()


class FolderReads:
    """What a stage noted below one folder (:meth:`ReadSet.under`), read back in sorted blocks:
    the per-file lists a manifest entry writes without holding them."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.n_opened = self._scalar("SELECT count(*) FROM below_opened")
        self.n_checked = self._scalar("SELECT count(*) FROM below_checked")

    def _scalar(self, sql: str) -> int:
        return self._db.execute(sql).fetchone()[0]

    def _rows(self, sql: str, params: tuple = ()) -> Iterator[tuple]:
        cursor = self._db.execute(sql, params)
        while block := cursor.fetchmany(_FETCH_ROWS):
            yield from block

    def opened(self) -> Iterator[OpenedFile]:
        """Each file read, by path."""
        for rel, size, mtime_ns, sha256, nbytes in self._rows("SELECT * FROM below_opened ORDER BY rel"):
            yield OpenedFile(rel, size, mtime_ns, sha256, nbytes)

    def checked(self) -> Iterator[tuple[str, bool]]:
        """Each file checked for existence and whether it was there, by path."""
        for rel, present in self._rows("SELECT rel, present FROM below_checked ORDER BY rel"):
            yield rel, bool(present)

    def partial(self) -> list[str]:
        """The files of which only the start was read (a DICOM's header), sorted."""
        return [rel for (rel,) in self._rows("SELECT rel FROM below_opened WHERE nbytes IS NOT NULL ORDER BY rel")]

    def digest_entries(self) -> Iterator[tuple[str, tuple[int, str] | None, bool | None]]:
        """The entries of :func:`gated_symile.provenance.hashing.sorted_tree_digest`, sorted by
        path: a file read gives its bytes hashed and sha256, a file only checked its presence
        (SQLite's binary order of UTF-8 text is Python's order of the names)."""
        sql = (
            "SELECT rel, coalesce(nbytes, size), sha256, NULL FROM below_opened UNION ALL "
            "SELECT rel, NULL, NULL, present FROM below_checked WHERE rel NOT IN (SELECT rel FROM below_opened) "
            "ORDER BY 1"
        )
        for rel, size, sha256, present in self._rows(sql):
            yield (rel, (size, sha256), None) if sha256 is not None else (rel, None, bool(present))


def _posix(rel: str) -> str:
    return rel.replace(os.sep, "/") if os.sep != "/" else rel


def _relation(root: str, base: str) -> tuple[str, str] | None:
    """SQL for the path relative to ``base`` of a file noted under ``root`` and the condition
    that it lies below ``base``; ``None`` when no file noted under ``root`` can."""
    inside = base.rstrip(os.sep) + os.sep
    if root == base:
        return "rel", "1"
    if root.startswith(inside):  # noted under a folder inside base
        return f"{_quote(_posix(root[len(inside):]) + '/')} || rel", "1"
    if inside.startswith(root.rstrip(os.sep) + os.sep):  # noted under a folder above base
        lead = _posix(inside[len(root.rstrip(os.sep)) + 1 :])
        return f"substr(rel, {len(lead) + 1})", f"substr(rel, 1, {len(lead)}) = {_quote(lead)}"
    return None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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
        _current.close()
        _current = previous
