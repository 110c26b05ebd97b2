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
import io
import json
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from glob import escape as glob_escape
from itertools import islice
from pathlib import Path
from typing import IO, Any

from gated_symile.outputs import atomic_path
from gated_symile.provenance.hashing import LISTING_SUFFIX, Sink, file_sha256

LISTING_INLINE_MAX = 10_000
"""Most files a folder entry lists inside the manifest; longer lists go to a sidecar."""

LISTS: dict[str, str] = {"files": "listing", "checked": "checked_listing", "unread": "unread_listing"}
"""Per-file lists of a folder entry -> the key that names their sidecar when they are long."""

BLOCK_LINES = 4096
"""Lines formatted and compressed at once (bounds the buffer to a few hundred kB)."""
COMPRESS_LEVEL = 6
"""zlib's default trade-off: level 9 is ~2x slower on these lines for ~3 % smaller files."""


class GzipLines:
    """Writes JSON lines into a gzip stream without a timestamp (the same rows give the same
    bytes), a block of :data:`BLOCK_LINES` lines per compressor call."""

    def __init__(self, raw: IO[bytes], level: int = COMPRESS_LEVEL) -> None:
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=level)
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
    """Raised into a background listing's walk when the stage ends before the walk did."""


class StreamedListing:
    """A selective input folder's files as listed while the stage runs, ``[rel, size,
    mtime_ns]`` lines streamed into a temporary gzip file: a release's 1.6 M names are never held
    in memory, so the stage's peak memory does not grow with the release.

    Why in the background (:meth:`start`): listing a release by name, size and mtime is a
    Python-bound walk of one folder per record (2 s for 156,000 files, about 20 s for the real
    ECG and CXR-JPG releases); on a thread it overlaps the stage, whose DuckDB scans and record
    workers leave the interpreter free most of the time.  Nothing reads the listing before the
    stage is done (:meth:`lines_except` waits for the walk).
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._lines: GzipLines | None = GzipLines(self._file, level=1)  # read back once, soon
        self.count = self.size = 0
        self._walker: ThreadPoolExecutor | None = None
        self._walk: Future | None = None
        self._stopping = False

    def start(self, walk: Callable[[Sink], Any]) -> None:
        """Run ``walk(self.add)`` on a thread of its own; :meth:`wait` returns what it returned."""
        self._walker = ThreadPoolExecutor(1, thread_name_prefix="listing")
        self._walk = self._walker.submit(walk, self.add)

    def wait(self) -> Any:
        """The walk's result once it is done, or its exception (e.g. a folder it cannot list)."""
        assert self._walk is not None, "start() first"
        return self._walk.result()

    def add(self, rel: str, size: int, mtime_ns: int) -> None:
        if self._stopping:
            raise ListingStopped
        assert self._lines is not None
        self._lines.add(f"[{json.dumps(rel)}, {size}, {mtime_ns}]")  # == json.dumps([rel, size, mtime_ns])
        self.count += 1
        self.size += size

    def lines_except(self, covered: Callable[[list[str]], Collection[str]]) -> Iterator[str]:
        """The listed lines, as written, but those of the files that ``covered`` returns when
        given the names of a block of :data:`BLOCK_LINES` lines (a lookup in the stage's read set
        on disk: no set of every name read is built).

        Why lines: re-encoding every row of a release listing (``json.loads`` + ``json.dumps``)
        cost as much as listing it; only the name is decoded here, and only by its JSON text:
        a line is ``[<name as JSON>, size, mtime_ns]`` and the two numbers hold no ``", "``. A
        name without a backslash is its JSON text between the quotes, so only names with escapes
        are parsed.
        """
        if self._walk is not None:
            self.wait()
        if self._lines is not None:
            self._lines.close()
            self._lines = None
        self._file.seek(0)
        with gzip.GzipFile(fileobj=self._file, mode="rb") as raw:
            lines = (line.rstrip("\n") for line in io.TextIOWrapper(raw, encoding="utf-8"))
            while block := list(islice(lines, BLOCK_LINES)):
                names = [_listed_name(line) for line in block]
                skipped = covered(names)
                yield from (line for line, name in zip(block, names) if name not in skipped)

    def close(self) -> None:
        """Stop the walk if it still runs (the stage failed), then drop the listing."""
        self._stopping = True
        if self._walker is not None:
            self._walker.shutdown(wait=True)
        self._file.close()


def _listed_name(line: str) -> str:
    """The file name of a listing line ``[<name as JSON>, size, mtime_ns]``."""
    name = line[1:].rsplit(", ", 2)[0]
    return json.loads(name) if "\\" in name else name[1:-1]


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
    ``target``: one ``[path, *values]`` JSON line per file (``files``: size, sha256; ``unread``:
    size, mtime_ns; ``checked``: present). Sidecars of an earlier run of this manifest are
    removed; those the recorder streamed already (a selective input's ``unread`` list) are kept."""
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
    ``unread``: ``(size, mtime_ns)``; ``checked``: ``(present,)``), inline or from its sidecar.

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
