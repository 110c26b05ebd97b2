"""Floors for the scale benchmark: the least a stage could take for what it must do.

Two floors, both timed on the same number of processes as the stage:

* ``bare_read_floor_s`` (the issue's acceptance floor): read, once, exactly the bytes the stage
  read (``.gz`` tables gunzipped), taken from its manifest; nothing hashed, listed or parsed.
* ``provenance_floor_s`` (explanatory, never the acceptance floor): what the manifest adds at
  its bare minimum -- the same reads with each file's bytes also going through sha256, while each
  selectively read folder is walked (``scandir`` and a ``stat`` per file, one process per folder,
  as the stage's listing runs) -- still nothing parsed, checked or written.  The stage's distance
  to it is what its own code (parsing, QC, SQL, writing) costs on top of the reads and the
  provenance the issue asks for.

Page cache: with ``cold`` the files read are evicted just before the clock starts (a release read
from disk); folder entries and inodes stay cached, as ``posix_fadvise`` cannot drop them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from functools import partial
from multiprocessing import get_context
from pathlib import Path

FileRead = tuple[str, int | None]
"""(absolute path, bytes read from its start; ``None``: the whole file)."""
READ_BLOCK = 32
"""Files opened ahead, their reads started, while the block before is read."""


def evict(paths: list[str]) -> None:
    """Drop the files ``paths`` from the page cache (written back first): their next read comes
    from the disk.  Only these files: the interpreter and libraries stay cached, as on any run
    after the first."""
    from gated_symile.records.read_ahead import close_all, open_advised

    os.sync()
    close_all(open_advised(path, os.POSIX_FADV_DONTNEED) for path in paths)


class _Hashed:
    """A binary file whose bytes pass through sha256 as they are read (as the stage's manifest
    hashes what it read: the compressed bytes of a ``.gz`` table)."""

    def __init__(self, raw, digest) -> None:
        self.raw, self.digest = raw, digest

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data


def read_chunk(files: list[FileRead], hash_bytes: bool = False) -> int:
    """Read each file once (only its start where a length is given), gunzip ``.gz``, each file's
    bytes also through sha256 with ``hash_bytes``; bytes delivered.  Files are opened a block
    ahead with their reads started (``blocks_read_ahead``, as the stage's readers do; whole files
    and file starts apart, each with its own read-ahead length), so that on a cold disk the floor
    is not slower than the stage's own reads."""
    from gated_symile.records.read_ahead import blocks_read_ahead

    whole = [(path, nbytes) for path, nbytes in files if nbytes is None]
    starts = [(path, nbytes) for path, nbytes in files if nbytes is not None]
    total = 0
    for group, length in ((whole, 0), (starts, max((n for _, n in starts), default=0))):
        with closing(blocks_read_ahead([[path] for path, _ in group], READ_BLOCK, length)) as blocks:
            for indices, fds in blocks:
                for index, (fd,) in zip(indices, fds):
                    total += _read_one(*group[index], fd, hash_bytes)
    return total


def _read_one(path: str, nbytes: int | None, fd: int | None, hash_bytes: bool) -> int:
    """Bytes delivered by reading ``path`` (opened ahead as ``fd``, which the caller closes)."""
    with open(fd if fd is not None else path, "rb", closefd=fd is None) as handle:
        source = _Hashed(handle, hashlib.sha256()) if hash_bytes else handle
        reader = gzip.GzipFile(fileobj=source) if path.endswith(".gz") else source
        if nbytes is not None:
            return len(reader.read(nbytes))
        total = 0
        while chunk := reader.read(1 << 20):
            total += len(chunk)
        return total


def walk_bare(folder: str) -> int:
    """List ``folder`` as the stage's listing must, at its least: every entry by name (sorted,
    for a reproducible order) and a ``stat`` per file for its size and mtime; files listed."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda entry: entry.name)
    listed = 0
    for entry in entries:
        if entry.is_dir():
            listed += walk_bare(entry.path)
        else:
            entry.stat()
            listed += 1
    return listed


def _one_result_per_item(func, chunk: list) -> list:
    func(chunk)
    return [None] * len(chunk)


def _started(pause_s: float) -> int:
    """Hold a walker busy a moment (so that each folder's walker is a process of its own)."""
    time.sleep(pause_s)
    return os.getpid()


def timed_map(func, items: list, workers: int, cold: list[str] | None = None, walk: Sequence[str] = ()) -> float:
    """Wall seconds of the chunk function ``func`` over ``items`` on ``workers`` processes (the
    stages' own :class:`RecordPool`, started before the clock), each folder of ``walk`` walked
    (:func:`walk_bare`) meanwhile in a process of its own; the clock stops when all are done.
    ``cold``: the files it reads, evicted from the page cache just before the clock starts."""
    from gated_symile.data.mimic.parallel import RecordPool

    task = partial(_one_result_per_item, func)
    with RecordPool(workers) as pool, ProcessPoolExecutor(max(1, len(walk)), mp_context=get_context("spawn")) as walkers:
        pool.map_chunks(task, items[: 8 * workers])  # imports in every worker, before the clock
        # one process per folder, started and importing this module before the clock
        assert len(set(walkers.map(_started, [0.2] * len(walk)))) == len(walk)
        if cold is not None:
            evict(cold)
        start = time.perf_counter()
        walks = [walkers.submit(walk_bare, folder) for folder in walk]
        pool.map_chunks(task, items)
        for done in walks:
            done.result()
        return time.perf_counter() - start


def provenance_floor_s(files: list[FileRead], folders: list[str], workers: int, cold: list[str] | None) -> float:
    """The provenance floor (module docstring): ``files`` read and hashed on ``workers`` processes
    while each of ``folders`` is walked."""
    return timed_map(partial(read_chunk, hash_bytes=True), files, workers, cold, walk=folders)


def files_read(manifest: Path) -> dict[str, list[FileRead]]:
    """Per input of a stage manifest, the files it read (absolute path, bytes read)."""
    from gated_symile.provenance.listings import entry_files
    from gated_symile.provenance.manifests import read_manifest, resolve_entry

    doc = read_manifest(manifest)
    found = {}
    for entry in doc["inputs"]:
        root = resolve_entry(manifest, entry)
        if entry["kind"] == "file":
            found[entry["arg"]] = [(str(root), None)]
            continue
        partial_rels = set(entry.get("partial", ()))
        found[entry["arg"]] = [
            (str(root / rel), size if rel in partial_rels else None)
            for rel, (size, _) in entry_files(manifest, entry).items()
        ]
    return found


def listed_folders(manifest: Path) -> list[str]:
    """The input folders of a stage manifest that were read selectively, hence listed whole."""
    from gated_symile.provenance.manifests import read_manifest, resolve_entry

    return [str(resolve_entry(manifest, e)) for e in read_manifest(manifest)["inputs"] if e.get("selective")]
