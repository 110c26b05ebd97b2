"""Content hashing for provenance: one file hasher, one tree hasher, over one on-disk hash cache.

Why a cache: the raw releases (hundreds of thousands of ECG records and radiographs) and the
tensor datasets (many GB) are read by several stages and audited later; each file is read once
and its sha256 remembered under its (real path, size, mtime_ns). A later hash of an unchanged
file is a ``stat``; a file whose size or mtime changed is read again. A modification that keeps
both size and mtime (clock tricks, bit rot) is only seen with ``use_cache=False``. The cache
itself, and why it is SQLite, is :mod:`gated_symile.provenance.hash_cache`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple

from gated_symile.errors import GatedSymileError
from gated_symile.provenance.hash_cache import HashCache, folder_prefix

MANIFEST_NAME = "provenance.json"
MANIFEST_SUFFIX = ".provenance.json"
LISTING_SUFFIX = ".files.jsonl.gz"
READ_THREADS = 8
"""Threads reading uncached files of a folder (I/O-bound; sha256 runs at ~1.5 GB/s per core)."""
READ_BATCH = 256
"""Uncached files collected during the walk before a batch is read (bounds the pending list)."""
THREADED_MIN_BYTES = 64 * 1024
"""Smaller files are read by the walking thread: their hashing is Python overhead that holds the
GIL, and 8 threads contending for it made a tree of 64-byte files 2x slower to hash."""


_NAME = attrgetter("name")
_BOOKKEEPING_ENDINGS = (MANIFEST_NAME, LISTING_SUFFIX)
"""Every manifest (``provenance.json``, ``<file>.provenance.json``) and listing sidecar name ends so."""


def is_manifest(path: str | Path) -> bool:
    """A stage manifest (``provenance.json`` or ``<file>.provenance.json``): never hashed itself."""
    name = os.path.basename(os.fspath(path))  # not Path(): called once per file of a release walk
    return name == MANIFEST_NAME or name.endswith(MANIFEST_SUFFIX)


def is_listing(path: str | Path) -> bool:
    """A manifest's file-list sidecar (``<manifest>.<section>-<i>.files.jsonl.gz``): never hashed."""
    name = os.path.basename(os.fspath(path))
    return name.endswith(LISTING_SUFFIX) and (
        name.startswith(MANIFEST_NAME + ".") or MANIFEST_SUFFIX + "." in name
    )


def file_sha256(path: str | Path) -> str:
    """sha256 hex of a file's bytes, streamed (``hashlib.file_digest``; no cache)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _read_sha256(path: str) -> str:
    """:func:`file_sha256` with the error a stage reports (the file and the reason)."""
    try:
        return file_sha256(path)
    except OSError as exc:
        raise GatedSymileError(f"{path}: cannot hash ({exc.strerror or exc})") from None


def _read_sha256s(paths: list[str]) -> list[str]:
    return [_read_sha256(path) for path in paths]


def _real_path(entry: os.DirEntry, real_prefix: str) -> str:
    """Resolved path of a directory entry whose folder resolves to ``real_prefix``: only a link
    needs ``realpath`` (a walk resolves each folder once, not each file)."""
    return os.path.realpath(entry.path) if entry.is_symlink() else real_prefix + entry.name


Sink = Callable[[str, int, int], None]
"""Receives one file of a listing walk: ``(rel, size, mtime_ns)``."""


class FolderListing(NamedTuple):
    """What a listing walk (:meth:`Hasher.list_files`) found besides the files it passed on:
    the stage manifests inside, and whether any file or folder was a link (if none, a path
    below the folder resolves by joining it to the folder's resolved path)."""

    manifests: list[Path]
    has_links: bool


@dataclass
class Digest:
    """Hash of one file or folder.

    For a folder: ``files`` maps each path (relative, POSIX) to (size, sha256) and ``sha256`` is
    the digest of the sorted ``"<rel>\\t<size>\\t<sha256>\\n"`` lines; ``manifests`` lists the
    stage manifests met inside (not hashed). ``read`` / ``cached`` count files read vs. found in
    the cache.

    A *selective* folder digest (:func:`selective_digest`) covers only what a stage used: ``files``
    holds the files it read (``partial``: those of which only the first ``size`` bytes were read
    and hashed), ``checked`` the files whose existence it checked (True = present), and ``unread``
    the rest of the folder (and the files read in part) by (size, mtime_ns), which the digest does
    not cover (:func:`unread_files`).
    """

    kind: str
    sha256: str
    size: int
    files: dict[str, tuple[int, str]] = field(default_factory=dict)
    manifests: list[Path] = field(default_factory=list)
    read: int = 0
    cached: int = 0
    selective: bool = False
    partial: list[str] = field(default_factory=list)
    checked: dict[str, bool] = field(default_factory=dict)
    unread: dict[str, tuple[int, int]] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """JSON form stored in manifests.

        A selective digest has no such form here: the manifest streams a selective entry from
        the stage's read set on disk (:class:`~gated_symile.provenance.manifests.StageRecorder`);
        in memory it only serves the audit, which compares its fields with that entry."""
        if self.selective:
            raise TypeError("a selective folder entry is written by the StageRecorder, not record()")
        out: dict[str, Any] = {"kind": self.kind, "sha256": self.sha256, "size": self.size}
        if self.kind == "dir":
            out["n_files"] = len(self.files)
            out["files"] = {rel: [size, sha] for rel, (size, sha) in self.files.items()}
        return out


def tree_digest(files: Mapping[str, tuple[int, str]], checked: Mapping[str, bool] | None = None) -> str:
    """One digest over a folder's sorted (path, size, sha256) list (and, for a selective digest,
    the presence of the files whose existence was checked)."""
    checked = checked or {}
    return sorted_tree_digest((rel, files.get(rel), checked.get(rel)) for rel in sorted(files.keys() | checked.keys()))


def sorted_tree_digest(entries: Iterable[tuple[str, tuple[int, str] | None, bool | None]]) -> str:
    """:func:`tree_digest` of entries already sorted by path, streamed (a selective stage's read
    set, read back from disk): ``(rel, (bytes hashed, sha256) or None when only checked, present)``."""
    digest = hashlib.sha256()
    for rel, read, present in entries:
        if read is not None:
            digest.update(f"{rel}\t{read[0]}\t{read[1]}\n".encode())
        else:
            digest.update(f"{rel}\t{'present' if present else 'absent'}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Selection:
    """What a selective digest hashes: ``files`` maps each path read to the bytes read from its
    start (``None``: the whole file); ``checked`` names files whose existence alone was used."""

    files: Mapping[str, int | None]
    checked: Collection[str] = ()


def selective_digest(
    listing: Mapping[str, tuple[int, int]],
    files: Mapping[str, tuple[int, str]],
    partial: Collection[str] = (),
    checked: Mapping[str, bool] | None = None,
) -> Digest:
    """A selective folder :class:`Digest` from the folder's ``listing`` (rel -> (size, mtime_ns)),
    the ``files`` read (rel -> (bytes hashed, sha256)) and the existence checks; the digest covers
    the files read and the checks, the rest of the listing is kept as ``unread``."""
    checked = dict(checked or {})
    partial = sorted(rel for rel in partial if rel in files)
    size = sum(s for s, _ in listing.values())
    return Digest(
        "dir", tree_digest(files, checked), size, dict(files), selective=True,
        partial=partial, checked=checked, unread=unread_files(listing, files, partial, checked),
    )  # fmt: skip


def unread_files(
    listing: Mapping[str, tuple[int, int]], files: Collection[str], partial: Collection[str], checked: Collection[str]
) -> dict[str, tuple[int, int]]:
    """The part of a selective folder's ``listing`` that its digest does not cover: files neither
    read nor checked for existence, and files read in part (a change after a DICOM's header shows
    by size and mtime).  The same rule for a manifest's recorded listing and the folder now."""
    partial = set(partial)
    return {rel: stat for rel, stat in listing.items() if (rel not in files or rel in partial) and rel not in checked}


def prefix_sha256(path: str | Path, nbytes: int) -> str:
    """sha256 of the first ``nbytes`` bytes of a file (all of it when shorter)."""
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read(nbytes)).hexdigest()
    except OSError as exc:
        raise GatedSymileError(f"{path}: cannot hash ({exc.strerror or exc})") from None


class Hasher:
    """Hashes files and folders through one cache; ``use_cache=False`` re-reads every file."""

    def __init__(self, cache: HashCache | None = None, *, use_cache: bool = True) -> None:
        self.cache = cache if cache is not None else HashCache.default()
        self.use_cache = use_cache

    def __enter__(self) -> Hasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cache.close()

    def _cached(self, real: str, st: os.stat_result, known: Mapping[str, tuple[int, int, str]] | None) -> str | None:
        """The cached sha256 of the file at ``real`` (its resolved path, the cache key) if its size
        and mtime still match; ``known`` holds prefetched cache rows."""
        if not self.use_cache:
            return None
        if known is None:
            return self.cache.get(real, st.st_size, st.st_mtime_ns)
        hit = known.get(real)
        return hit[2] if hit is not None and hit[:2] == (st.st_size, st.st_mtime_ns) else None

    def _read(self, path: str, real: str, st: os.stat_result) -> str:
        """Read and hash one file now and remember it in the cache."""
        digest = _read_sha256(path)
        self.cache.put(real, st.st_size, st.st_mtime_ns, digest)
        return digest

    def hash(
        self, path: str | Path, exclude: Iterable[str | Path] = (), *, skip_owned: bool = False,
        selection: Selection | None = None,
    ) -> Digest:  # fmt: skip
        """Digest of a file or a folder (manifests and ``exclude`` paths left out of a folder).

        ``skip_owned`` also leaves out what another stage wrote into the folder and recorded in
        its own manifest: a file ``X`` beside ``X.provenance.json`` and a subfolder holding a
        ``provenance.json`` (a training run folder must not claim the evaluation's metrics).
        ``selection`` makes a folder's digest selective (:func:`selective_digest`): only the
        selected files are read, the others are only listed (``Selection({})``: a listing).
        """
        path = Path(path)
        try:
            if path.is_dir():
                return self._tree(path, {os.path.abspath(p) for p in exclude}, skip_owned, selection)
            st = path.stat()
        except OSError as exc:
            raise GatedSymileError(f"{path}: cannot hash ({exc.strerror or exc})") from None
        real = os.path.realpath(path)
        digest = self._cached(real, st, None)
        read = digest is None
        if read:
            digest = self._read(str(path), real, st)
        self.cache.flush()
        return Digest("file", digest, st.st_size, read=int(read), cached=int(not read))

    def list_files(
        self, path: str | Path, sink: Sink, exclude: Iterable[str | Path] = ()
    ) -> FolderListing:
        """Walk a folder as :meth:`hash` does but read nothing: ``sink(rel, size, mtime_ns)`` for
        each file, in walk order (a release's listing is streamed, never held); returns the stage
        manifests met inside and whether any entry was a link."""
        root = Path(path)
        walk = _TreeWalk(self, root, {os.path.abspath(p) for p in exclude}, False, Selection({}), sink)
        return FolderListing(walk.run(root).manifests, walk.has_links)

    def _tree(
        self, root: Path, exclude: set[str], skip_owned: bool, selection: Selection | None,
        sink: Sink | None = None,
    ) -> Digest:  # fmt: skip
        """Walk ``root`` in sorted order (folder's files, then its sub-folders), following links.

        Why ``os.scandir`` and per-folder real paths: a raw release has millions of files, and
        ``os.walk`` + ``realpath`` + ``relpath`` per file cost ~40 us each even when every hash
        is cached; resolving each folder once (and only symlinked files individually) is ~4x less.
        Why threads: uncached files of at least :data:`THREADED_MIN_BYTES` (ECG signals,
        radiographs) are read in batches by :data:`READ_THREADS` threads (hashlib and file reads
        release the GIL), which parallel file systems need to deliver their bandwidth on the first
        hash of a release, and which uses every core when the files are in the page cache.
        With a ``selection``, files outside it are listed by (size, mtime) and never read.
        """
        return _TreeWalk(self, root, exclude, skip_owned, selection, sink).run(root)


class _TreeWalk:
    """One walk of :meth:`Hasher._tree`: the files met so far, their digests and what is pending."""

    def __init__(
        self, hasher: Hasher, root: Path, exclude: set[str], skip_owned: bool,
        selection: Selection | None, sink: Sink | None,
    ) -> None:  # fmt: skip
        self.hasher, self.exclude, self.skip_owned = hasher, exclude, skip_owned
        self.selection, self.sink = selection, sink
        self.real_root = os.path.realpath(root)
        self.real_root_prefix = folder_prefix(self.real_root)
        # a listing reads no file: prefetching the cache rows of the folder would be wasted
        listing_only = selection is not None and not selection.files
        self.known = (
            hasher.cache.entries_under(self.real_root)
            if hasher.use_cache and not listing_only
            else None
        )
        self.files: dict[str, tuple[int, str]] = {}
        self.listing: dict[str, tuple[int, int]] = {}  # selective: files not read
        self.manifests: list[Path] = []
        self.cached = 0  # files found in the cache; the others were read
        self.linked_dirs: set[str] = set()  # real folders outside the root walked through a link
        self.has_links = False  # any entry met was a link
        self.pending: list[tuple[str, str, str, os.stat_result]] = []  # (rel, path, real, stat) to read
        self.pool: ThreadPoolExecutor | None = None

    def run(self, root: Path) -> Digest:
        with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="sha256") as pool:
            self.pool = pool
            self.visit(os.path.abspath(root), self.real_root, "")
            self.read_pending()
        self.hasher.cache.flush()
        return self.digest()

    def read_pending(self) -> None:
        """Hash the pending files on the thread pool and fill their slots in walk order."""
        pending = self.pending
        paths = [p[1] for p in pending]
        step = -(-len(paths) // READ_THREADS) or 1  # one task per thread: futures cost ~20 us each
        tasks = self.pool.map(_read_sha256s, [paths[i : i + step] for i in range(0, len(paths), step)])
        digests = [digest for task in tasks for digest in task]
        for (rel, _, real, st), digest in zip(pending, digests):
            self.files[rel] = (st.st_size, digest)  # fills the walk-order slot left by visit_file
            self.hasher.cache.put(real, st.st_size, st.st_mtime_ns, digest)  # sqlite: this thread only
        pending.clear()

    def visit(self, folder: str, real_dir: str, rel_dir: str) -> None:
        """One folder: its files in name order, then its sub-folders (each real folder once)."""
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=_NAME)
        except OSError as exc:
            raise GatedSymileError(f"{folder}: cannot list ({exc.strerror or exc})") from None
        subfolders = []
        exclude, skip_owned = self.exclude, self.skip_owned
        names = {entry.name for entry in entries} if skip_owned else ()
        real_prefix = folder_prefix(real_dir)
        for entry in entries:
            full, name = entry.path, entry.name
            if not self.has_links and entry.is_symlink():  # d_type: no system call
                self.has_links = True
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if full not in exclude and not (
                    skip_owned and os.path.isfile(os.path.join(full, MANIFEST_NAME))
                ):
                    subfolders.append(entry)
                continue
            if name.endswith(_BOOKKEEPING_ENDINGS):  # cheap test first: called once per file
                if is_manifest(name):
                    self.manifests.append(Path(full))
                    continue
                if is_listing(name):
                    continue
            if full in exclude or (skip_owned and name + MANIFEST_SUFFIX in names):
                continue
            self.visit_file(entry, rel_dir + name, real_prefix)
        for entry in subfolders:
            real = _real_path(entry, real_prefix)
            if self.first_visit(real, entry.is_symlink()):
                self.visit(entry.path, real, f"{rel_dir}{entry.name}/")

    def first_visit(self, real: str, linked: bool) -> bool:
        """Whether the folder that resolves to ``real`` has not been and will not be walked
        otherwise: each real folder is walked once, and a link loop ends.

        Why not a set of every folder walked: a release has a folder per record (800,000 for
        MIMIC-IV-ECG), and such a set grew the listing's memory with the release.  Only a link
        can reach a folder twice, so a link into the root's own tree is not followed (the
        folder is walked, or was, where it lies), and only folders reached through links to
        outside the root are remembered."""
        if not linked:
            return real not in self.linked_dirs  # an outside tree met again below a wider link
        if real == self.real_root or real.startswith(self.real_root_prefix):
            return False
        if any(real == done or real.startswith(folder_prefix(done)) for done in self.linked_dirs):
            return False
        self.linked_dirs.add(real)
        return True

    def visit_file(self, entry: os.DirEntry, rel: str, real_prefix: str) -> None:
        """List, hash from the cache, hash now (small files) or queue (large files) one file."""
        full = entry.path
        try:
            st = entry.stat()
        except OSError as exc:
            raise GatedSymileError(f"{full}: cannot hash ({exc.strerror or exc})") from None
        selection = self.selection
        if selection is not None:
            if self.sink is not None and rel not in selection.files:
                self.sink(rel, st.st_size, st.st_mtime_ns)
                return
            self.listing[rel] = (st.st_size, st.st_mtime_ns)
            if rel not in selection.files:
                return
            if selection.files[rel] is not None:  # a header: read its first bytes now
                nbytes = int(selection.files[rel])
                self.files[rel] = (nbytes, prefix_sha256(full, nbytes))
                return
        real = _real_path(entry, real_prefix)
        inside = real.startswith(self.real_root_prefix)  # else not prefetched: ask the cache
        digest = self.hasher._cached(real, st, self.known if inside else None)
        if digest is not None:
            self.cached += 1
        elif st.st_size < THREADED_MIN_BYTES:  # GIL-bound: read here
            digest = self.hasher._read(full, real, st)
        self.files[rel] = (st.st_size, digest)  # None: filled by read_pending
        if digest is None:
            self.pending.append((rel, full, real, st))
            if len(self.pending) >= READ_BATCH:
                self.read_pending()

    def digest(self) -> Digest:
        """The folder's digest: selective (:func:`selective_digest`) or of every file."""
        files, cached, selection = self.files, self.cached, self.selection
        if selection is not None:
            partial = [rel for rel, nbytes in selection.files.items() if nbytes is not None]
            checked = {rel: rel in self.listing for rel in selection.checked}
            found = selective_digest(self.listing, files, partial, checked)
            found.manifests, found.read, found.cached = self.manifests, len(files) - cached, cached
            return found
        size = sum(s for s, _ in files.values())
        return Digest("dir", tree_digest(files), size, files, self.manifests, len(files) - cached, cached)
