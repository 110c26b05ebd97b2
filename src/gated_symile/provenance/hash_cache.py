"""The on-disk hash cache: sha256 by (real path, size, mtime_ns), shared by every stage and job.

Why SQLite in WAL mode: many Snakemake/SLURM jobs hash concurrently; SQLite serialises writers
with a busy timeout and readers never block. The cache is an optimisation only: any database
error disables it for the process with one warning and hashing goes on reading files. On network
file systems without working locks, point ``GATED_SYMILE_HASH_CACHE`` at a local disk (or ``off``).
"""

from __future__ import annotations

import os
import sqlite3
import warnings
from pathlib import Path

__all__ = ["CACHE_ENV", "HashCache", "cache_location", "folder_prefix"]

CACHE_ENV = "GATED_SYMILE_HASH_CACHE"
_COMMIT_EVERY = 2000


def folder_prefix(folder: str) -> str:
    """``folder`` with one trailing separator: the prefix every path below it starts with."""
    return folder.rstrip(os.sep) + os.sep


def cache_location(value: str | None = None) -> Path | None:
    """The hash cache file: ``value``, else ``$GATED_SYMILE_HASH_CACHE``, else
    ``$XDG_CACHE_HOME`` (or ``~/.cache``)``/gated-symile/sha256.sqlite``; ``off`` means no cache."""
    value = os.environ.get(CACHE_ENV) if value is None else value
    if value is not None:
        return None if value.strip().lower() in ("", "off", "none") else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gated-symile" / "sha256.sqlite"


class HashCache:
    """sha256 by (real path, size, mtime_ns) in a SQLite file; ``path=None`` caches nothing."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else Path(path)
        self._db: sqlite3.Connection | None = None
        self._pending = 0

    @classmethod
    def default(cls) -> HashCache:
        return cls(cache_location())

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None and self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=120)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS sha256 (path TEXT PRIMARY KEY, size INTEGER NOT NULL,"
                    " mtime_ns INTEGER NOT NULL, digest TEXT NOT NULL) WITHOUT ROWID"
                )
                db.commit()
                self._db = db
            except (sqlite3.Error, OSError) as exc:
                self._disable(exc)
        return self._db

    def _disable(self, exc: Exception) -> None:
        warnings.warn(f"{self.path}: hash cache disabled ({exc}); files are read in full", stacklevel=3)
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
        self._db, self.path = None, None

    def entries_under(self, root: str) -> dict[str, tuple[int, int, str]]:
        """Every cached entry whose path lies under the folder ``root`` (one range query)."""
        db = self._connect()
        if db is None:
            return {}
        prefix = folder_prefix(root)
        upper = prefix[:-1] + chr(ord(os.sep) + 1)
        try:
            rows = db.execute(
                "SELECT path, size, mtime_ns, digest FROM sha256 WHERE path >= ? AND path < ?",
                (prefix, upper),
            ).fetchall()
        except sqlite3.Error as exc:
            self._disable(exc)
            return {}
        return {path: (size, mtime, digest) for path, size, mtime, digest in rows}

    def get(self, real: str, size: int, mtime_ns: int) -> str | None:
        db = self._connect()
        if db is None:
            return None
        try:
            row = db.execute("SELECT size, mtime_ns, digest FROM sha256 WHERE path = ?", (real,)).fetchone()
        except sqlite3.Error as exc:
            self._disable(exc)
            return None
        return row[2] if row is not None and (row[0], row[1]) == (size, mtime_ns) else None

    def put(self, real: str, size: int, mtime_ns: int, digest: str) -> None:
        db = self._connect()
        if db is None:
            return
        try:
            db.execute(
                "INSERT OR REPLACE INTO sha256 (path, size, mtime_ns, digest) VALUES (?, ?, ?, ?)",
                (real, size, mtime_ns, digest),
            )
            self._pending += 1
            if self._pending >= _COMMIT_EVERY:
                self.flush()
        except sqlite3.Error as exc:
            self._disable(exc)

    def flush(self) -> None:
        """Commit pending entries (short transactions keep other jobs' waits short)."""
        if self._db is not None and self._pending:
            try:
                self._db.commit()
            except sqlite3.Error as exc:
                self._disable(exc)
        self._pending = 0

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None
