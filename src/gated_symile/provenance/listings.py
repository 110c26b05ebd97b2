"""Per-file lists of a manifest's folder entries, and the gzip JSON-lines sidecars that hold the
long ones.

Why sidecars: a raw release has up to millions of files; a manifest that inlined each one's name,
size and hash would be hundreds of MB of JSON that every audit parses. Lists longer than
:data:`LISTING_INLINE_MAX` go to ``<manifest>.<section>-<i>[-<key>].files.jsonl.gz`` and the
manifest keeps the sidecar's sha256, so a changed list is noticed before it is trusted.

Why buffered writes: a release listing is written once per stage run; one ``gzip.write`` and one
``json.dumps`` per file cost ~25 us each, about as much as listing the file (``stat``) itself, so
lines are formatted and compressed in blocks (:class:`GzipLines`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from glob import escape as glob_escape
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import recv_handle, send_handle
from pathlib import Path
from typing import IO, Any

from gated_symile.errors import GatedSymileError
from gated_symile.outputs import atomic_path
from gated_symile.provenance.hashing import LISTING_SUFFIX, Sink, file_sha256

LISTING_INLINE_MAX = 10_000
"""Most files a folder entry lists inside the manifest; longer lists go to a sidecar."""

LISTING_NICENESS = 10
"""How much lower the listing process's CPU priority is than the stage's (``os.nice``): the stage's
own work is its critical path and nothing reads the listing before the stage is done, so on a
machine with fewer cores than busy processes the walk takes the cycles the stage leaves (on two
cores the 20k cohort stage went from 5.33-5.46 s to 5.07-5.13 s, alternated by hand; 5 gave
5.27-5.36 s, 19 the same as 10).  On more cores nothing changes: no process waits for a core."""

LISTS: dict[str, str] = {"files": "listing", "checked": "checked_listing", "listed": "listed_listing"}
"""Per-file lists of a folder entry -> the key that names their sidecar when they are long."""

BLOCK_LINES = 4096
"""Lines formatted and compressed at once (bounds the buffer to a few hundred kB)."""
COMPRESS_LEVEL = 1
"""zlib's fastest level: on these lines level 6 (zlib's default) is 4.5x slower for 12 % smaller
files (a 20k-admission release's ECG lists: 0.33 s against 0.07 s, all of it serial time at
the end of the stage; about 200 MB of lines at full MIMIC scale)."""


class GzipLines:
    """Writes JSON lines into a gzip stream without a timestamp (the same rows give the same
    bytes), a block of :data:`BLOCK_LINES` lines per compressor call."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=COMPRESS_LEVEL)
        self._block: list[str] = []

    def add(self, line: str) -> None:
        """One line (without its newline), already JSON."""
        self._block.append(line)
        if len(self._block) >= BLOCK_LINES:
            self._flush()

    def _flush(self) -> None:
        if self._block:
            self._gz.write(("\n".join(self._block) + "\n").encode("utf-8"))
            self._block.clear()

    def close(self) -> None:
        self._flush()
        self._gz.close()


class ListingStopped(Exception):
    """Ends a listing walk whose stage ended first (:meth:`StreamedListing.close`), or whose
    stage process is gone."""


class ListingFile:
    """A folder's listing as ``[rel, size, mtime_ns]`` JSON lines, gzip-compressed into the open
    binary file ``raw``, one file at a time (:meth:`add`, the walk's sink); once closed, read
    back by :func:`listed_lines`.

    ``parent_pid``: the process that will read the file back; a walk whose reader is gone (killed)
    stops at its next block of lines instead of listing the rest of a release for nobody.
    """

    def __init__(self, raw: IO[bytes], parent_pid: int | None = None) -> None:
        self.count = self.size = 0
        self._parent_pid = parent_pid
        self._raw: IO[bytes] | None = raw
        self._lines: GzipLines | None = GzipLines(raw)

    def add(self, rel: str, size: int, mtime_ns: int) -> None:
        assert self._lines is not None, "the listing is closed for writing"
        if self.count % BLOCK_LINES == 0 and self._parent_pid not in (None, os.getppid()):
            raise ListingStopped
        self._lines.add(f"[{json.dumps(rel)}, {size}, {mtime_ns}]")  # == json.dumps([rel, size, mtime_ns])
        self.count += 1
        self.size += size

    def close(self) -> None:
        """End writing (closes ``raw``)."""
        assert self._lines is not None and self._raw is not None, "closed already"
        self._lines.close()
        self._raw.close()
        self._lines = self._raw = None


def listed_lines(raw: IO[bytes]) -> Iterator[str]:
    """The lines of the listing in binary file ``raw`` (read from its start), as written."""
    raw.seek(0)
    with gzip.open(raw, "rt", encoding="utf-8") as text:  # leaves ``raw`` open
        yield from (line.rstrip("\n") for line in text)


class StreamedListing:
    """A selective input folder's files as listed while the stage runs, streamed into a
    temporary :class:`ListingFile`: a release's 1.6 M names are never held in memory, so the
    stage's peak memory does not grow with the release.

    Why in a process of its own (:meth:`start`): listing a release by name, size and mtime is a
    walk of one folder per record, mostly system calls and Python (about 12 us a file: 1.4 s for
    the 119,000 files of a 20k-admission synthetic ECG release, about 25 s for the real ECG and
    CXR-JPG releases).  On a thread it held the stage's interpreter lock against the stage's own
    Python work (folding record verdicts, noting reads, checking files exist): on two cores the
    20k cohort stage took 9.2-10.3 s with the walk on a thread, 8.6-9.4 s with it in a process.
    Nothing reads the listing before the stage is done (:meth:`lines` and :meth:`save_as` wait
    for the walk), so the process runs at a lower CPU priority (:data:`LISTING_NICENESS`).

    Why a temporary file without a name (handed to the walk's process as a descriptor): a stage
    killed with its process group (``SIGKILL``: neither process can clean up) leaves nothing
    behind in the temporary folder; a named file would stay there for good.
    ``folder`` names the listed folder in errors.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.count = self.size = 0
        self._file = tempfile.TemporaryFile(prefix="gated-symile-listing-")
        self._process: BaseProcess | None = None
        self._result: Connection | None = None
        self._outcome: tuple[str, Any, int, int] | None = None

    def start(self, walk: Callable[[Sink], Any]) -> None:
        """Run ``walk(sink)`` (picklable: a module-level function or a ``partial`` of one) in a
        process of its own; :meth:`wait` returns what it returned."""
        context = get_context("spawn")  # the stage's process holds DuckDB threads: no fork
        self._result, child_end = context.Pipe(duplex=True)  # a socket pair: it can pass descriptors
        self._process = context.Process(
            target=_walk_into, args=(walk, child_end, os.getpid()), name="listing", daemon=True
        )
        self._process.start()
        child_end.close()
        send_handle(self._result, self._file.fileno(), self._process.pid)

    def wait(self) -> Any:
        """The walk's result once it is done, or its exception (e.g. a folder it cannot list)."""
        if self._outcome is None:
            assert self._process is not None and self._result is not None, "start() first"
            try:
                outcome = self._result.recv()
            except EOFError:  # the process died before sending anything
                outcome = None
            self._process.join()
            if outcome is None:
                code = self._process.exitcode
                message = f"{self.folder}: its listing process ended without a result (exit code {code})"
                outcome = ("error", GatedSymileError(message), 0, 0)
            self._outcome = outcome
        kind, value, self.count, self.size = self._outcome
        if kind == "error":
            raise value
        return value

    def lines(self) -> Iterator[str]:
        """:func:`listed_lines` of the whole walk (waits for it)."""
        self.wait()
        yield from listed_lines(self._file)

    def save_as(self, sidecar: Path) -> dict[str, str]:
        """The whole walk's listing copied, as compressed, into ``sidecar`` (atomically); its
        manifest key.  Why a copy: it is already the sidecar's format, so nothing is decoded or
        compressed again at the stage's serial end (re-encoding a 20k-admission release's listing
        cost 0.5 s there)."""
        self.wait()
        self._file.seek(0)
        with atomic_path(sidecar) as tmp:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(self._file, out)
            digest = file_sha256(tmp)  # as write_sidecar: the key of the bytes on disk
        return {"path": sidecar.name, "sha256": digest}

    def close(self) -> None:
        """Stop the walk if it still runs (the stage failed), then drop the listing."""
        if self._outcome is None:
            self._outcome = ("error", ListingStopped("the stage ended before its inputs were listed"), 0, 0)
        if self._process is not None and self._process.is_alive():
            self._process.terminate()
            self._process.join()
        if self._result is not None:
            self._result.close()
        self._file.close()


def _walk_into(walk: Callable[[Sink], Any], conn: Connection, parent_pid: int) -> None:
    """The listing process: ``walk`` into the file whose descriptor the stage's process sends
    first over ``conn``; then sends ``(kind, result or exception, count, size)`` back."""
    os.nice(LISTING_NICENESS)
    listing = ListingFile(os.fdopen(recv_handle(conn), "wb"), parent_pid)
    try:
        result = walk(listing.add)
        listing.close()
        conn.send(("done", result, listing.count, listing.size))
    except ListingStopped:  # the stage's process is gone: nobody will read the file
        listing.close()
    except Exception as exc:  # noqa: BLE001 -- handed to the stage, which raises it
        conn.send(("error", _picklable(exc), 0, 0))
    finally:
        conn.close()


def _picklable(exc: Exception) -> Exception:
    """``exc`` if it survives the trip to the stage's process, else its one line as a
    :class:`~gated_symile.errors.GatedSymileError` (named by its type unless it is one)."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 -- any failure means: send the message instead
        named = "" if isinstance(exc, GatedSymileError) else f"{type(exc).__name__}: "
        return GatedSymileError(f"{named}{exc}")
    return exc


def write_sidecar(sidecar: Path, lines: Iterable[str]) -> dict[str, str]:
    """Stream JSON lines (one row each, without newline) into a gzip sidecar (atomically); its
    manifest key."""
    with atomic_path(sidecar) as tmp:
        with open(tmp, "wb") as raw:
            out = GzipLines(raw)
            for line in lines:
                out.add(line)
            out.close()
        digest = file_sha256(tmp)
    return {"path": sidecar.name, "sha256": digest}


def sidecar_path(target: Path, section: str, index: int, key: str) -> Path:
    """Where manifest ``target`` keeps the per-file list ``key`` (:data:`LISTS`) of its
    ``section`` entry ``index``."""
    tag = "" if key == "files" else f"-{key}"
    return target.with_name(f"{target.name}.{section}-{index}{tag}{LISTING_SUFFIX}")


def write_listings(doc: dict[str, Any], target: Path) -> None:
    """Move each per-file list longer than :data:`LISTING_INLINE_MAX` into a sidecar of
    ``target``: one ``[path, *values]`` JSON line per file (``files``: size, sha256; ``listed``:
    size, mtime_ns; ``checked``: present). Sidecars of an earlier run of this manifest are
    removed; those the recorder wrote already (a selective input's lists) are kept."""
    written = set()
    for section in ("inputs", "outputs"):
        for index, entry in enumerate(doc.get(section, [])):
            for key, sidecar_key in LISTS.items():
                values = entry.get(key)
                if sidecar_key in entry:
                    written.add(entry[sidecar_key]["path"])
                if values is None or len(values) <= LISTING_INLINE_MAX:
                    continue
                sidecar = sidecar_path(target, section, index, key)
                del entry[key]
                rows = (json.dumps([rel, *_as_list(v)]) for rel, v in values.items())
                entry[sidecar_key] = write_sidecar(sidecar, rows)
                written.add(sidecar.name)
    for old in target.parent.glob(f"{glob_escape(target.name)}.*{LISTING_SUFFIX}"):
        if old.name not in written:
            old.unlink()


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def entry_files(manifest: Path, entry: dict[str, Any], key: str = "files") -> dict[str, tuple]:
    """A folder entry's recorded per-file list ``key`` (``files``: ``{path: (size, sha256)}``;
    ``listed``: ``(size, mtime_ns)``; ``checked``: ``(present,)``), inline or from its sidecar.

    Raises ``OSError`` when the sidecar is gone and ``ValueError`` when its bytes are not the ones
    the manifest recorded (the list cannot be trusted any more).
    """
    listing = entry.get(LISTS[key])
    if listing is None:
        return {rel: tuple(_as_list(value)) for rel, value in entry.get(key, {}).items()}
    path = Path(manifest).parent / listing["path"]
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != listing["sha256"]:
        raise ValueError(f"{path}: file list changed after the manifest was written")
    rows = (json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines())
    return {row[0]: tuple(row[1:]) for row in rows}
