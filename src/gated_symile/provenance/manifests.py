"""Stage manifests: what a stage read, what it wrote, with which code, config and tools.

Why one central writer: ``gated_symile.cli.main`` wraps every stage, so no stage repeats this
code. Inputs and outputs come from the parsed arguments by convention (``--out`` and ``--out-*``
are outputs; every other argument holding a ``Path`` is an input when it exists), and a stage
adds what the convention cannot see with :func:`declare` (e.g. a ``str`` argument that may name a
config file). Stages with no output (``inspect``, ``audit``) write nothing.

The manifest sits beside the primary output: ``<out>/provenance.json`` for a folder,
``<out>.provenance.json`` for a file. Inputs are hashed before the stage runs (what it read),
outputs after it succeeded; each input also names the manifests of the stages that produced it
(with their sha256), which is how ``gated-symile audit`` walks the chain and spots reruns.

A folder's per-file list goes into the manifest up to
:data:`gated_symile.provenance.listings.LISTING_INLINE_MAX` files; a longer
one (a raw release: 1.6 M files in MIMIC-IV-ECG) is written beside it as gzip JSON lines, and the
manifest keeps its sha256. Reading a manifest to follow the chain then stays cheap, and the list
is still there, tamper-evident, for the audit (:func:`gated_symile.provenance.listings.entry_files`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from gated_symile import __version__
from gated_symile.provenance.hashing import (
    MANIFEST_NAME,
    MANIFEST_SUFFIX,
    Hasher,
    file_sha256,
    sorted_tree_digest,
)
from gated_symile.provenance.hash_cache import HashCache
from gated_symile.provenance import listings as sidecars  # not `listings`: a StageRecorder field
from gated_symile.provenance.read_set import FolderReads, active, recording
from gated_symile.outputs import write_bytes

FORMAT = "gated-symile-provenance/2"
"""/2: a selective input records its whole listing (``listed``) instead of the part not read."""
TOOLS: tuple[str, ...] = (
    "snakemake", "torch", "duckdb", "polars", "pydicom", "wfdb", "numpy", "mlflow", "pyarrow", "pandas",
)
_SPEC_DEST = "_provenance_spec"


@dataclass(frozen=True)
class ProvenanceSpec:
    """Argument names (argparse dests) to treat as inputs/outputs beyond the convention, and the
    input folders the stage reads only in part (``selective``, see :mod:`gated_symile.provenance.read_set`)."""

    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    selective: tuple[str, ...] = ()


def declare(
    parser: argparse.ArgumentParser, *, inputs: Sequence[str] = (), outputs: Sequence[str] = (),
    selective: Sequence[str] = (),
) -> None:  # fmt: skip
    """Add argument dests to a stage's inputs/outputs (a ``str`` value counts when it names a path).

    An input folder named in ``selective`` is not hashed whole: the manifest hashes the files the
    stage noted as read while it ran and lists the rest by name, size and mtime.
    """
    parser.set_defaults(**{_SPEC_DEST: ProvenanceSpec(tuple(inputs), tuple(outputs), tuple(selective))})


# ----------------------------------------------------------------------------- environment


def git_state(path: str | Path | None = None) -> tuple[str, str]:
    """(commit, dirty) of the git checkout holding ``path`` (default: this package's source).

    ``"unknown"`` for both when the package is not in a git work tree or git is unavailable.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=where, capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"
    return commit or "unknown", "true" if status.strip() else "false"


def tool_versions() -> dict[str, str | None]:
    """Python and the installed versions of the pipeline's main tools (metadata only, no import)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def code_version() -> dict[str, str]:
    commit, dirty = git_state()
    return {"package": "gated-symile", "version": __version__, "git_commit": commit, "git_dirty": dirty}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# ----------------------------------------------------------------------------- arguments


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def stage_config(args: argparse.Namespace) -> dict[str, Any]:
    """The stage's parsed arguments (its config subset), JSON-ready."""
    return {
        k: _jsonable(v) for k, v in sorted(vars(args).items()) if k != "func" and not k.startswith("_")
    }


def config_sha256(config: dict[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_output(dest: str) -> bool:
    return dest == "out" or dest.startswith("out_")


def _paths(value: Any, explicit: bool) -> list[Path]:
    values = value if isinstance(value, (list, tuple)) else [value]
    found = []
    for v in values:
        if isinstance(v, Path) or (explicit and isinstance(v, str) and v and not v.lstrip().startswith("{")):
            found.append(Path(v))
    return found


def stage_paths(args: argparse.Namespace) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """(inputs, outputs) as (dest, path) pairs; inputs only where they exist now."""
    spec: ProvenanceSpec = getattr(args, _SPEC_DEST, None) or ProvenanceSpec()
    inputs, outputs = [], []
    for dest, value in sorted(vars(args).items()):
        if dest == "func" or dest.startswith("_"):
            continue
        if _is_output(dest) or dest in spec.outputs:
            outputs += [(dest, p) for p in _paths(value, dest in spec.outputs)]
        else:
            inputs += [(dest, p) for p in _paths(value, dest in spec.inputs) if p.exists()]
    return inputs, outputs


def manifest_path(output: Path) -> Path:
    """Where the manifest of a stage whose primary output is ``output`` goes."""
    return output / MANIFEST_NAME if output.is_dir() else output.with_name(output.name + MANIFEST_SUFFIX)


# ----------------------------------------------------------------------------- producers


def _covers(manifest: Path, target: Path) -> bool:
    """Whether the manifest lists an output equal to or containing ``target``."""
    try:
        doc = read_manifest(manifest)
    except (OSError, ValueError):
        return False
    for out in doc.get("outputs", []):
        root = resolve_entry(manifest, out)
        if target == root or root in target.parents:
            return True
    return False


def producers_of(path: Path, nested: Iterable[Path] = ()) -> list[Path]:
    """Manifests of the stages that wrote ``path``: its own, one above it, else those inside it."""
    target = Path(os.path.abspath(path))
    own = manifest_path(target)
    if own.is_file():
        return [own]
    for parent in target.parents:
        candidate = parent / MANIFEST_NAME
        if candidate.is_file() and _covers(candidate, target):
            return [candidate]
    return sorted(Path(os.path.abspath(m)) for m in nested)


def inputs_digest(paths: Iterable[Path | None]) -> str | None:
    """One sha256 over the manifests that produced ``paths`` (None when none has a manifest).

    Tagged on MLflow runs so that a run names exactly which tensor/misalignment builds it saw.
    """
    found = {m for p in paths if p is not None and Path(p).exists() for m in producers_of(Path(p))}
    if not found:
        return None
    return hashlib.sha256("".join(f"{sha}\n" for sha in sorted(map(file_sha256, found))).encode()).hexdigest()


def resolve_entry(manifest: Path, entry: dict[str, Any]) -> Path:
    """An input/output path of a manifest: relative to the manifest's folder, else absolute."""
    relative = Path(os.path.abspath(Path(manifest).parent / entry["path"]))
    if relative.exists() or not entry.get("abspath"):
        return relative
    absolute = Path(entry["abspath"])
    return absolute if absolute.exists() else relative


def _entry(dest: str, path: Path, where: Path, digest_record: dict[str, Any]) -> dict[str, Any]:
    absolute = os.path.abspath(path)
    return {"arg": dest, "path": os.path.relpath(absolute, where), "abspath": absolute, **digest_record}


# ----------------------------------------------------------------------------- writing


_REAL_FOLDERS_KEPT = 4096
"""Resolved folders :class:`_RealPaths` keeps (one per record folder otherwise: memory that grew
with the cohort)."""


class _RealPaths:
    """Resolved paths of files below ``base`` (the hash cache's keys), resolving each folder once
    from its resolved parent: ``os.path.realpath`` per file costs ~100 us (an ``lstat`` per path
    component), and a stage notes tens of thousands of records, most in a folder of their own.
    Below a folder whose listing met no link (``has_links`` False) a path resolves by joining
    it to the folder's resolved path, without a system call."""

    def __init__(self, base: str, has_links: bool = True) -> None:
        self.base, self.folders = base, {base: os.path.realpath(base)}
        self.has_links = has_links

    def __call__(self, rel: str) -> str:
        if ".." in rel.split("/"):  # lexical folders do not resolve like links do
            return os.path.realpath(os.path.join(self.base, rel))
        rel = os.path.normpath(rel)  # "." and "//" only
        if not self.has_links:
            return os.path.join(self.folders[self.base], rel)
        full = os.path.join(self.base, rel)
        folder, name = os.path.split(full)
        return self._resolve(self._folder(folder), full, name)

    def _folder(self, folder: str) -> str:
        real = self.folders.get(folder)
        if real is None:
            if len(self.folders) > _REAL_FOLDERS_KEPT:  # files come sorted: old folders are done
                self.folders = {self.base: self.folders[self.base]}
            parent, name = os.path.split(folder)
            real = self.folders[folder] = self._resolve(self._folder(parent), folder, name)
        return real

    @staticmethod
    def _resolve(real_parent: str, path: str, name: str) -> str:
        """``path`` (= parent/name) resolved, given its parent resolved: only a link needs more."""
        return os.path.realpath(path) if os.path.islink(path) else os.path.join(real_parent, name)


@dataclass
class StageRecorder:
    """Collects a stage's inputs before it runs and writes its manifest after it succeeded.

    A selective input folder is only listed before the run (streamed, not held); the stage's read
    set (:func:`gated_symile.provenance.read_set.recording`, active from :meth:`start` to :meth:`close`)
    supplies the hashes of what it read, which :meth:`finish` also puts into the hash cache.
    """

    args: argparse.Namespace
    argv: Sequence[str]
    hasher: Hasher = field(default_factory=Hasher)
    started: str = field(default_factory=_now)
    inputs: list[tuple[str, Path]] = field(default_factory=list)
    outputs: list[tuple[str, Path]] = field(default_factory=list)
    input_records: list[tuple[str, Path, dict[str, Any], list[Path]]] = field(default_factory=list)
    listings: dict[int, sidecars.StreamedListing] = field(default_factory=dict)  # input index -> listing
    _reads: ExitStack = field(default_factory=ExitStack)

    @classmethod
    def start(cls, args: argparse.Namespace, argv: Sequence[str], hasher: Hasher | None = None) -> StageRecorder | None:
        """Hash the inputs now (start listing the selective ones, :class:`~gated_symile.provenance.
        listings.StreamedListing`); None when the stage declares no output."""
        inputs, outputs = stage_paths(args)
        if not outputs:
            return None
        rec = cls(args, list(argv), hasher or Hasher(), _now(), inputs, outputs)
        selective = (getattr(args, _SPEC_DEST, None) or ProvenanceSpec()).selective
        excluded = [p for _, p in outputs]
        for dest, path in inputs:
            if dest in selective and path.is_dir():
                listing = sidecars.StreamedListing(path)
                rec.listings[len(rec.input_records)] = rec._reads.enter_context(closing(listing))
                # in a process of its own while the stage runs, with a cache-less hasher (it reads nothing)
                listing.start(partial(Hasher(HashCache(None)).list_files, path, exclude=excluded))
                rec.input_records.append((dest, path, {}, []))  # manifests met: after the walk
                continue
            digest = rec.hasher.hash(path, exclude=excluded)
            rec.input_records.append((dest, path, digest.record(), digest.manifests))
        if rec.listings:
            rec._reads.enter_context(recording())
        return rec

    def close(self) -> None:
        """End the read recording, drop the listings and close the hash cache (after
        :meth:`finish` or a failure)."""
        self._reads.close()
        self.hasher.cache.close()

    def _selective_records(self, target: Path) -> None:
        """Each selective input's record: the files the stage read (also put into the hash
        cache), its existence checks, and the whole listing by size and mtime (``listed``; the
        audit compares the part the digest does not cover).  Each list is streamed from the
        read set on disk or the listing file (inline when short, else into its sidecar of
        ``target``), so writing the manifest holds no per-file objects either."""
        if not self.listings:
            return
        reads = active()
        assert reads is not None, "the read recording ends in close(), after finish()"
        for index, listing in self.listings.items():
            dest, path, _, _ = self.input_records[index]
            nested, has_links = listing.wait()
            below = reads.under(path)
            record = {"kind": "dir", "size": listing.size, "n_files": listing.count,
                      "sha256": sorted_tree_digest(below.digest_entries()),
                      "selective": True, "partial": below.partial()}  # fmt: skip
            files = self._files_lines(below, _RealPaths(os.path.abspath(path), has_links))
            lists = {"files": (below.n_opened, files),
                     "checked": (below.n_checked, (json.dumps(list(row)) for row in below.checked())),
                     "listed": (listing.count, listing.lines())}  # fmt: skip
            for key, (count, lines) in lists.items():  # JSON lines [rel, *values]
                if count <= sidecars.LISTING_INLINE_MAX:
                    rows = (json.loads(line) for line in lines)
                    record[key] = {rel: values[0] if key == "checked" else values for rel, *values in rows}
                    continue
                sidecar = sidecars.sidecar_path(target, "inputs", index, key)
                save = listing.save_as if key == "listed" else partial(sidecars.write_sidecar, lines=lines)
                record[sidecars.LISTS[key]] = save(sidecar)
            self.input_records[index] = (dest, path, record, nested)
        self.hasher.cache.flush()

    def _files_lines(self, below: FolderReads, real_path: _RealPaths) -> Iterator[str]:
        """The JSON lines ``[rel, bytes hashed, sha256]`` of the files read below a selective
        input; each file read whole also goes into the hash cache on the way (one pass over the
        read set)."""
        for item in below.opened():
            if item.nbytes is None:
                self.hasher.cache.put(real_path(item.path), item.size, item.mtime_ns, item.sha256)
            yield json.dumps([item.path, item.size if item.nbytes is None else item.nbytes, item.sha256])

    def finish(self) -> Path | None:
        """Hash the outputs and write the manifest beside the primary output; returns its path."""
        present = [(d, p) for d, p in self.outputs if p.exists()]
        if not present:
            return None
        target = manifest_path(present[0][1])
        self._selective_records(target)
        where = target.parent
        inputs = []
        for dest, path, record, nested in self.input_records:
            entry = _entry(dest, path, where, record)
            entry["producers"] = [
                {"path": os.path.relpath(m, where), "sha256": file_sha256(m)}
                for m in producers_of(path, nested)
                if m != target
            ]
            inputs.append(entry)
        outputs = [_entry(d, p, where, self.hasher.hash(p, skip_owned=True).record()) for d, p in present]
        config = stage_config(self.args)
        doc = {
            "format": FORMAT,
            "stage": " ".join(_stage_words(self.argv)),
            "argv": list(self.argv),
            "config": config,
            "config_sha256": config_sha256(config),
            "code": code_version(),
            "tools": tool_versions(),
            "host": socket.gethostname(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "snakemake_rule": os.environ.get("SNAKEMAKE_RULE"),
            "started": self.started,
            "finished": _now(),
            "inputs": inputs,
            "outputs": outputs,
        }
        write_manifest(doc, target)
        return target


def _stage_words(argv: Sequence[str]) -> list[str]:
    words = []
    for token in argv:
        if token.startswith("-"):
            break
        words.append(token)
    return words


def write_manifest(doc: dict[str, Any], target: Path) -> None:
    """Write the manifest and its list sidecars (:func:`~gated_symile.provenance.listings.write_listings`,
    which moves long lists out of ``doc``), each atomically (temporary file + rename): a killed job
    never leaves half a one."""
    sidecars.write_listings(doc, target)
    write_bytes(target, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def read_manifest(path: Path) -> dict[str, Any]:
    """A stage manifest whose entries have the fields the audit and the chain walk use.

    Raises ``ValueError`` naming the file for anything else (unreadable, cut short, edited), which
    the audit reports as an unreadable manifest instead of failing on a missing key.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        if isinstance(found, str) and found.startswith(FORMAT.rsplit("/", 1)[0] + "/"):
            raise ValueError(f"{path}: a {found} manifest, this version reads {FORMAT} (rerun its stage)")
        raise ValueError(f"{path}: not a {FORMAT} manifest")
    for section in ("inputs", "outputs"):
        entries = doc.get(section, [])
        if not isinstance(entries, list) or not all(_valid_entry(e) for e in entries):
            raise ValueError(f"{path}: {section} entries lack path, kind, sha256 or size")
    if not all(isinstance(doc.get(k, ""), str) for k in ("stage", "finished", "config_sha256")):
        raise ValueError(f"{path}: stage, finished and config_sha256 must be strings")
    return doc


def _valid_entry(entry: Any) -> bool:
    """One input/output entry: the fields :mod:`gated_symile.provenance.audit` reads, with their types."""
    if not isinstance(entry, dict) or entry.get("kind") not in ("file", "dir"):
        return False
    if not all(isinstance(entry.get(k), str) for k in ("path", "sha256")) or not isinstance(entry.get("size"), int):
        return False
    files = entry.get("files", {})
    if not isinstance(entry.get("abspath", ""), str) or not isinstance(files, dict):
        return False
    if not all(isinstance(v, list) and len(v) == 2 for v in files.values()):
        return False
    producers, listing = entry.get("producers", []), entry.get("listing", {"path": "", "sha256": ""})
    return (
        isinstance(producers, list)
        and all(isinstance(p, dict) and isinstance(p.get("path"), str) and isinstance(p.get("sha256"), str) for p in producers)
        and isinstance(listing, dict) and isinstance(listing.get("path"), str) and isinstance(listing.get("sha256"), str)
    )
