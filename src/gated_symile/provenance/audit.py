"""Audit a results tree against its stage manifests: is every artefact still what was recorded?

Why: Snakemake reruns on command or input changes it can see, but not on a tensor file edited in
place, a raw record re-downloaded, or a stage rerun by hand. The manifests (``gated_symile.provenance.manifests``)
hold the sha256 of what each stage read and wrote; the audit compares them with the disk.

Statuses, per artefact (the outputs of one stage run, or a raw input tree nobody produced):

- ``OK``: every recorded file has its recorded sha256 and every input is as it was read;
- ``MODIFIED``: a file of the artefact now differs from the sha256 recorded when it was written;
- ``MISSING``: the artefact, or a file of it, is gone;
- ``STALE``: an input changed after the artefact was made: the input's content differs from what
  the stage read, or the manifest of the stage that produced the input was rewritten since
  (an upstream rerun, which always writes a newer manifest).

Staleness is direct: a stage is STALE when something it read changed; its own consumers become
STALE once it is rerun (its manifest then changes). Large trees go through the hash cache, so an
unchanged file costs a ``stat``.

A stage that read only part of an input folder (a *selective* entry: the cohort reads a few
percent of a raw release) is STALE when a file it read, or the existence of a file it checked,
changed; the rest of the folder was recorded by name, size and mtime, and a change there makes the
raw tree MODIFIED (or MISSING) with the files named, but no reader STALE.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gated_symile.provenance.listings import LISTS, entry_files
from gated_symile.provenance.manifests import read_manifest, resolve_entry
from gated_symile.provenance.hashing import Digest, Hasher, Selection, file_sha256, is_manifest, unread_files

STATUSES: tuple[str, ...] = ("OK", "STALE", "MODIFIED", "MISSING")  # ascending severity
_LIST_MAX = 5


@dataclass
class Finding:
    """The audit verdict on one artefact."""

    path: str
    stage: str | None  # None: a raw input tree with no producing manifest
    manifest: str | None
    status: str = "OK"
    modified: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stale_inputs: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    finished: str = ""

    def raise_to(self, status: str, detail: str) -> None:
        if STATUSES.index(status) > STATUSES.index(self.status):
            self.status = status
        if detail not in self.details:
            self.details.append(detail)


def find_manifests(root: str | Path) -> list[Path]:
    """Every stage manifest under ``root`` (absolute paths, sorted)."""
    found = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames.sort()
        found += [Path(os.path.abspath(os.path.join(folder, n))) for n in sorted(filenames) if is_manifest(n)]
    return found


def _diff(files: dict[str, tuple], current: dict[str, tuple]) -> tuple[list[str], list[str], list[str]]:
    """(changed, missing, added) relative paths of a recorded per-file list against the current one."""
    changed = [rel for rel, value in files.items() if rel in current and tuple(current[rel]) != tuple(value)]
    missing = [rel for rel in files if rel not in current]
    added = [rel for rel in current if rel not in files]
    return sorted(changed), sorted(missing), sorted(added)


def _presence_changed(checked: dict[str, tuple], current: Digest) -> list[str]:
    """Files whose existence a selective reader checked and that now exist, or no longer do."""
    return sorted(rel for rel, (present,) in checked.items() if current.checked.get(rel, False) != present)


def _names(rels: Sequence[str]) -> str:
    shown = ", ".join(rels[:_LIST_MAX])
    return shown + (f" (+{len(rels) - _LIST_MAX} more)" if len(rels) > _LIST_MAX else "")


Use = tuple[Path, dict[str, Any], dict[str, Any]]  # (consumer manifest, its document, input entry)


def walk_chain(
    results_dir: str | Path | Sequence[Path],
) -> tuple[dict[Path, dict[str, Any] | Exception], dict[Path, list[Use]]]:
    """Manifests under ``results_dir`` (or the given manifests) and, recursively, those that
    produced their inputs.

    Returns (documents by manifest path, or the read error; raw inputs -> the manifests that read
    them). Hashes nothing.
    """
    if isinstance(results_dir, (str, Path)):
        queue = find_manifests(results_dir)
    else:
        queue = [Path(os.path.abspath(m)) for m in results_dir]
    docs: dict[Path, dict[str, Any] | Exception] = {}
    sources: dict[Path, list[Use]] = {}
    while queue:
        manifest = queue.pop(0)
        if manifest in docs:
            continue
        try:
            doc = docs[manifest] = read_manifest(manifest)
        except (OSError, ValueError) as exc:
            docs[manifest] = exc
            continue
        for entry in doc.get("inputs", []):
            producers = [Path(os.path.abspath(manifest.parent / p["path"])) for p in entry.get("producers", [])]
            if producers:
                queue += [p for p in producers if p.is_file()]
            else:
                sources.setdefault(resolve_entry(manifest, entry), []).append((manifest, doc, entry))
    return docs, sources


class Auditor:
    """Walks manifests from a results folder back to the raw inputs and checks each artefact."""

    def __init__(self, hasher: Hasher) -> None:
        self.hasher = hasher
        self._current: dict[tuple[Path, frozenset[str], object], Digest] = {}
        self._listings: dict[tuple[Path, str], dict[str, tuple] | Exception] = {}

    def current(self, path: Path, exclude: Iterable[str] = (), selection: Selection | None = None) -> Digest:
        key = (path, frozenset(os.path.abspath(p) for p in exclude), _selection_key(selection))
        if key not in self._current:
            self._current[key] = self.hasher.hash(path, exclude=key[1], selection=selection)
        return self._current[key]

    def _selection(self, finding: Finding, manifest: Path, entry: dict[str, Any]) -> Selection | None:
        """What a selective entry's reader used (None for a whole-folder entry); raises ``_Untrusted``
        when a recorded list cannot be read (the reason is in ``finding``)."""
        if not entry.get("selective"):
            return None
        files = self._recorded_files(finding, manifest, entry)
        checked = self._recorded_files(finding, manifest, entry, "checked")
        if files is None or checked is None:
            raise _Untrusted
        partial = set(entry.get("partial", ()))
        return Selection({rel: size if rel in partial else None for rel, (size, _) in files.items()}, tuple(checked))

    def run(self, results_dir: str | Path) -> list[Finding]:
        docs, sources = walk_chain(results_dir)
        findings: list[Finding] = []
        for manifest, doc in docs.items():
            if isinstance(doc, Exception):
                finding = Finding(str(manifest), "?", str(manifest))
                finding.raise_to("MISSING", f"manifest unreadable: {doc}")
                findings.append(finding)
            else:
                findings.append(self.check_stage(manifest, doc))
        findings.sort(key=lambda f: f.finished, reverse=True)
        findings += [self.check_source(path, uses) for path, uses in sorted(sources.items())]
        return findings

    def check_stage(self, manifest: Path, doc: dict[str, Any]) -> Finding:
        outputs = [resolve_entry(manifest, e) for e in doc.get("outputs", [])]
        primary = outputs[0] if outputs else manifest
        finding = Finding(str(primary), doc.get("stage", "?"), str(manifest), finished=doc.get("finished", ""))
        for entry, path in zip(doc.get("outputs", []), outputs):
            self._check_artefact(finding, manifest, path, entry, exclude=())
        for entry in doc.get("inputs", []):
            self._check_input(finding, manifest, entry, [str(p) for p in outputs])
        for entry in doc.get("inputs", []) + doc.get("outputs", []):
            for key, sidecar in LISTS.items():  # a list nobody compares today must still be the one recorded
                if sidecar in entry:
                    self._recorded_files(finding, manifest, entry, key)
        return finding

    def _check_artefact(
        self, finding: Finding, manifest: Path, path: Path, entry: dict[str, Any], exclude: Sequence[str]
    ) -> None:
        """Compare one recorded output (or raw tree) with the disk; MODIFIED / MISSING details."""
        if not path.exists():
            finding.missing.append(str(path))
            finding.raise_to("MISSING", f"{_display(path)}: missing")
            return
        try:
            current = self.current(path, exclude, self._selection(finding, manifest, entry))
        except _Untrusted:
            return
        shown = _display(path)
        if entry["kind"] != current.kind:
            finding.modified.append(str(path))
            finding.raise_to("MODIFIED", f"{shown}: was a {entry['kind']}, now a {current.kind}")
        elif current.kind == "file":
            if current.sha256 != entry["sha256"]:
                finding.modified.append(str(path))
                finding.raise_to("MODIFIED", f"{shown}: content changed")
        else:
            files = self._recorded_files(finding, manifest, entry)
            if files is None:
                return
            changed, missing, added = _diff(files, current.files)
            checked = self._recorded_files(finding, manifest, entry, "checked") if entry.get("selective") else None
            if checked is not None:
                changed += _presence_changed(checked, current)
            self._report(finding, path, changed, missing, added if finding.stage is None else [], "")
            listed = self._recorded_files(finding, manifest, entry, "listed") if checked is not None else None
            if listed is not None:  # the rest of the folder, by size and mtime
                unread = unread_files(listed, files, entry.get("partial", ()), checked)
                self._report(finding, path, *_diff(unread, current.unread), " (not read by the stage)")

    @staticmethod
    def _report(
        finding: Finding, path: Path, changed: list[str], missing: list[str], added: list[str], note: str
    ) -> None:
        """MODIFIED for changed files and new ones (a raw tree that grew; a stage folder may gain
        files later, so callers pass ``added`` only for raw trees), MISSING for removed ones."""
        shown = _display(path)
        if changed:
            finding.modified += [str(path / rel) for rel in changed]
            finding.raise_to("MODIFIED", f"{shown}: changed{note} {_names(changed)}")
        if missing:
            finding.missing += [str(path / rel) for rel in missing]
            finding.raise_to("MISSING", f"{shown}: missing{note} {_names(missing)}")
        if added:
            finding.modified += [str(path / rel) for rel in added]
            finding.raise_to("MODIFIED", f"{shown}: new files{note} {_names(added)}")

    def _check_input(self, finding: Finding, manifest: Path, entry: dict[str, Any], outputs: Sequence[str]) -> None:
        path = resolve_entry(manifest, entry)
        if not path.exists():
            finding.stale_inputs.append(str(path))
            finding.raise_to("STALE", f"input {_display(path)}: missing")
            return
        try:
            current = self.current(path, outputs, self._selection(finding, manifest, entry))
        except _Untrusted:
            return
        if current.kind != entry["kind"] or current.sha256 != entry["sha256"]:
            what = "content changed"
            files = self._recorded_files(finding, manifest, entry) if current.kind == "dir" == entry["kind"] else None
            if files is not None:
                changed, missing, added = _diff(files, current.files)
                if entry.get("selective"):
                    added = _presence_changed(self._recorded_files(finding, manifest, entry, "checked") or {}, current)
                labels = ("changed", "removed", "presence changed" if entry.get("selective") else "added")
                parts = [f"{label} {_names(rels)}" for label, rels in zip(labels, (changed, missing, added)) if rels]
                what = "; ".join(parts) or what
            finding.stale_inputs.append(str(path))
            finding.raise_to("STALE", f"input {_display(path)}: {what}")
            return
        for producer in entry.get("producers", []):
            mpath = Path(os.path.abspath(manifest.parent / producer["path"]))
            if not mpath.is_file():
                finding.stale_inputs.append(str(path))
                finding.raise_to("STALE", f"input {_display(path)}: producer manifest {_display(mpath)} missing")
            elif file_sha256(mpath) != producer["sha256"]:
                finding.stale_inputs.append(str(path))
                finding.raise_to("STALE", f"input {_display(path)}: rewritten by a later run ({_display(mpath)})")

    def check_source(self, path: Path, uses: list[Use]) -> Finding:
        """A raw input nobody's manifest produced: checked against its newest recorded read."""
        manifest, doc, entry = max(uses, key=lambda use: use[1].get("finished", ""))
        finding = Finding(str(path), None, None, finished=doc.get("finished", ""))
        outputs = [str(resolve_entry(manifest, e)) for e in doc.get("outputs", [])]
        self._check_artefact(finding, manifest, path, entry, outputs)
        return finding

    def _recorded_files(
        self, finding: Finding, manifest: Path, entry: dict[str, Any], key: str = "files"
    ) -> dict[str, tuple] | None:
        """The entry's recorded per-file list ``key``; ``None`` (and the reason in ``finding``) when
        its sidecar is gone or was altered, so nothing can be compared file by file.  A sidecar is
        read and checked once per audit, however many checks need its list."""
        if LISTS[key] not in entry:
            return entry_files(manifest, entry, key)
        cache_key = (manifest, entry[LISTS[key]]["path"])
        if cache_key not in self._listings:
            try:
                self._listings[cache_key] = entry_files(manifest, entry, key)
            except (OSError, ValueError) as exc:
                self._listings[cache_key] = exc
        result = self._listings[cache_key]
        if isinstance(result, OSError):
            finding.raise_to("MISSING", f"file list of {_display(manifest)} unreadable: {result.strerror or result}")
        elif isinstance(result, ValueError):
            finding.raise_to("MODIFIED", str(result))
        else:
            return result
        return None


class _Untrusted(Exception):
    """A selective entry's recorded lists cannot be read: nothing to compare against."""


def _selection_key(selection: Selection | None) -> object:
    if selection is None:
        return None
    return (tuple(sorted(selection.files.items())), tuple(sorted(selection.checked)))


def audit(results_dir: str | Path, hasher: Hasher) -> list[Finding]:
    """Check every artefact reachable from the manifests under ``results_dir``."""
    if not Path(results_dir).is_dir():
        from gated_symile.errors import GatedSymileError

        raise GatedSymileError(f"{results_dir}: results folder not found")
    return Auditor(hasher).run(results_dir)


def _display(path: str | Path) -> str:
    """Relative to the working directory when that is short, else absolute."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith(".." + os.sep + "..") else rel


def format_table(findings: Sequence[Finding]) -> str:
    """Readable report: one line per artefact, its problems indented below."""
    rows = [(f.status, f.stage or "(raw input)", _display(f.path)) for f in findings]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("STATUS", "STAGE", "ARTEFACT"))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(("STATUS", "STAGE", "ARTEFACT"), widths)).rstrip()]
    for finding, row in zip(findings, rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        lines += [f"    {detail}" for detail in finding.details]
    counts = {s: sum(f.status == s for f in findings) for s in STATUSES}
    lines.append(f"{len(findings)} artefacts: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)


def to_json(findings: Sequence[Finding]) -> str:
    return json.dumps(
        {"ok": all(f.status == "OK" for f in findings), "artefacts": [asdict(f) for f in findings]},
        indent=2,
    )


RUN_STAGES: tuple[str, ...] = ("train", "evaluate", "track", "aggregate")


def provenance_report(results_dir: str | Path | Sequence[Path]) -> str:
    """Markdown: code versions, and the digest and config hash of every data artefact and raw input.

    Built from the manifests reachable from ``results_dir``, a folder or a list of manifests (no
    hashing); the per-run stages (train, evaluate, track) are summarised by count, their digests
    live in MLflow.
    """
    docs, sources = walk_chain(results_dir)
    good = {m: d for m, d in docs.items() if not isinstance(d, Exception)}
    lines = ["# Provenance", ""]
    if not good:
        where = f"under `{results_dir}`" if isinstance(results_dir, (str, Path)) else "for the given runs"
        return "\n".join(lines + [f"No stage manifests found {where}.", ""])
    codes: dict[tuple[str, str, str], int] = {}
    for doc in good.values():
        code = doc.get("code", {})
        key = (code.get("version", "?"), code.get("git_commit", "?"), code.get("git_dirty", "?"))
        codes[key] = codes.get(key, 0) + 1
    lines += ["## Code", "", "| package version | git commit | dirty | stage runs |", "|---|---|---|---|"]
    lines += [f"| {v} | `{c}` | {d} | {n} |" for (v, c, d), n in sorted(codes.items())]
    runs = sum(doc.get("stage", "").split(" ")[0] in RUN_STAGES for doc in good.values())
    lines += ["", f"{runs} training/evaluation/tracking stage runs (digests in their manifests and MLflow tags).", ""]
    lines += ["## Data artefacts", "", "| stage | artefact | sha256 | files | bytes | config sha256 |",
              "|---|---|---|---|---|---|"]
    data = sorted(
        (doc.get("stage", "?"), out, doc)
        for m, doc in good.items() if doc.get("stage", "").split(" ")[0] not in RUN_STAGES
        for out in [resolve_entry(m, e) for e in doc.get("outputs", [])][:1]
    )
    for stage, out, doc in data:
        entry = doc["outputs"][0]
        lines.append(f"| {stage} | `{_display(out)}` | `{entry['sha256'][:16]}` | {entry.get('n_files', 1)} "
                     f"| {entry['size']} | `{doc.get('config_sha256', '?')[:16]}` |")
    lines += ["", "## Raw inputs (no producing manifest)", "", "| path | sha256 | files | bytes | read by |",
              "|---|---|---|---|---|"]
    for path, uses in sorted(sources.items()):
        _, doc, entry = max(uses, key=lambda use: use[1].get("finished", ""))
        readers = ", ".join(sorted({u[1].get("stage", "?") for u in uses}))
        lines.append(f"| `{_display(path)}` | `{entry['sha256'][:16]}` | {entry.get('n_files', 1)} "
                     f"| {entry['size']} | {readers} |")
    return "\n".join(lines + [""])
