"""``gated-symile audit``: a small real chain (raw -> cohort -> splits -> tensors -> misalign), then
single-byte edits; the audit must name exactly the edited artefact and the stages that read it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gated_symile.provenance.audit import audit, format_table, provenance_report
from gated_symile.cli import main
from gated_symile.provenance.hash_cache import CACHE_ENV, HashCache
from gated_symile.provenance.hashing import LISTING_SUFFIX, Hasher


@pytest.fixture(scope="module", params=["inline", "sidecar"])
def chain(tmp_path_factory, request) -> Path:
    """raw/ (written by the generator library: no manifest, like a real download) and results/.

    ``sidecar``: every folder list longer than 3 files goes to a sidecar beside its manifest, as a
    raw release's does, so every audit test below also runs against lists read from sidecars.
    """
    from gated_symile.provenance import listings
    from gated_symile.synthetic.mimic import MimicSynthConfig, generate_mimic

    root = tmp_path_factory.mktemp(f"chain-{request.param}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(root.parent / f"chain-cache-{request.param}.sqlite"))
        if request.param == "sidecar":
            mp.setattr(listings, "LISTING_INLINE_MAX", 3)
        raw, res = root / "raw", root / "results"
        generate_mimic(raw, MimicSynthConfig(admissions=40, seed=0, image_size=32))
        steps = [
            ["cohort", "mimic", "--mimic-iv", raw / "mimic-iv", "--ecg", raw / "mimic-iv-ecg",
             "--cxr", raw / "mimic-cxr-jpg", "--out", res / "cohort"],
            ["splits", "mimic", "--cohort", res / "cohort" / "cohort.parquet", "--out", res / "splits",
             "--train-n", "20", "--val-n", "5", "--candidate-n", "3"],
            ["tensors", "mimic", "--splits", res / "splits", "--ecg", raw / "mimic-iv-ecg",
             "--cxr", raw / "mimic-cxr-jpg", "--out", res / "tensors", "--cxr-size", "16"],
            ["misalign", "--tensors", res / "tensors", "--out", res / "misalign", "--p", "0.5",
             "--mode", "swap"],
        ]  # fmt: skip
        for step in steps:
            assert main([str(a) for a in step]) == 0, step
    return root


@pytest.fixture
def work(chain, tmp_path, monkeypatch) -> Path:
    """A private copy of the chain (manifests hold relative paths, so a moved tree still audits)."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache.sqlite"))
    copy = tmp_path / "copy"
    shutil.copytree(chain, copy)
    return copy


def _statuses(root: Path, **kwargs) -> dict[str, tuple[str, object]]:
    with Hasher(HashCache(Path(os.environ[CACHE_ENV])), **kwargs) as hasher:
        findings = audit(root / "results", hasher)
    return {os.path.relpath(f.path, root): f for f in findings}


def _flip(path: Path) -> None:
    """Flip one bit of the last byte; the size stays, the mtime moves (as any real edit does)."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    # a coarse file-system clock can leave mtime unchanged within one tick: make the edit visible
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


ARTEFACTS = {
    "results/cohort", "results/splits", "results/tensors", "results/misalign",
    "raw/mimic-iv", "raw/mimic-iv-ecg", "raw/mimic-cxr-jpg",
}  # fmt: skip


def test_clean_chain_is_ok_from_any_subfolder(work, capsys):
    found = _statuses(work)
    assert set(found) == ARTEFACTS
    assert {f.status for f in found.values()} == {"OK"}
    assert found["raw/mimic-iv-ecg"].stage is None and found["results/tensors"].stage == "tensors mimic"
    # from a subfolder: the chain is followed back through the inputs' manifests
    assert main(["audit", str(work / "results" / "misalign")]) == 0
    out = capsys.readouterr().out
    assert "7 artefacts: 7 OK" in out and "misalign" in out
    assert not (work / "results" / "provenance.json").exists()  # audit writes no manifest


def test_flipped_tensor_file_is_modified_and_its_readers_stale(work, capsys):
    victim = work / "results" / "tensors" / "train" / "ecg.npy"
    _flip(victim)
    found = _statuses(work)
    assert found["results/tensors"].status == "MODIFIED"
    assert found["results/tensors"].modified == [str(victim)]
    assert found["results/misalign"].status == "STALE"
    assert found["results/misalign"].stale_inputs == [str(work / "results" / "tensors")]
    assert {k for k, f in found.items() if f.status != "OK"} == {"results/tensors", "results/misalign"}

    assert main(["audit", str(work / "results"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert {os.path.relpath(a["path"], work): a["status"] for a in report["artefacts"]}["results/tensors"] == "MODIFIED"

    _flip(victim)  # flipped back: same bytes, so OK again (rehashed because the mtime moved)
    assert {f.status for f in _statuses(work).values()} == {"OK"}


def test_flipped_raw_record_is_modified_and_its_readers_stale(work):
    import pandas as pd

    # a record both stages read: the ECG of a training row (the cohort hashed it when it ran QC)
    rel = pd.read_parquet(work / "results" / "splits" / "train.parquet").ecg_path.iloc[0]
    victim = work / "raw" / "mimic-iv-ecg" / f"{rel}.dat"
    _flip(victim)
    found = _statuses(work)
    assert found["raw/mimic-iv-ecg"].status == "MODIFIED"
    assert found["raw/mimic-iv-ecg"].modified == [str(victim)]
    # both stages that read the ECG tree are stale; the splits (read only the cohort) are not
    stale = {k for k, f in found.items() if f.status == "STALE"}
    assert stale == {"results/cohort", "results/tensors"}
    assert {k for k, f in found.items() if f.status == "OK"} == ARTEFACTS - stale - {"raw/mimic-iv-ecg"}
    assert "STALE" in format_table(list(found.values()))


def test_flipped_raw_record_no_stage_read_leaves_the_stages_ok(work):
    """The cohort and the tensors hash only the records they read; a record neither read (outside
    every window, or after a valid one) is only listed, so its change is named but stales nobody."""
    from gated_symile.provenance.listings import entry_files

    manifest = work / "results" / "cohort" / "provenance.json"
    entry = next(e for e in json.loads(manifest.read_text())["inputs"] if e["arg"] == "ecg")
    read = entry_files(manifest, entry)
    rel = sorted(r for r in entry_files(manifest, entry, "listed") if r.endswith(".dat") and r not in read)[0]
    victim = work / "raw" / "mimic-iv-ecg" / rel
    _flip(victim)
    found = _statuses(work)
    assert found["raw/mimic-iv-ecg"].status == "MODIFIED" and found["raw/mimic-iv-ecg"].modified == [str(victim)]
    assert {k for k, f in found.items() if f.status != "OK"} == {"raw/mimic-iv-ecg"}


def test_rerun_upstream_makes_readers_stale_and_deleted_file_missing(work):
    res = work / "results"
    args = ["splits", "mimic", "--cohort", str(res / "cohort" / "cohort.parquet"), "--out", str(res / "splits"),
            "--train-n", "20", "--val-n", "5", "--candidate-n", "3"]  # fmt: skip
    assert main(args) == 0  # same bytes, but a new manifest: the tensors were made before it
    found = _statuses(work)
    assert found["results/splits"].status == "OK"
    assert found["results/tensors"].status == "STALE"
    assert "rewritten by a later run" in " ".join(found["results/tensors"].details)
    (res / "misalign" / "manifest_val.parquet").unlink()
    found = _statuses(work)
    assert found["results/misalign"].status == "MISSING"
    assert found["results/misalign"].missing == [str(res / "misalign" / "manifest_val.parquet")]


def test_rehash_sees_an_edit_that_kept_size_and_mtime(work):
    victim = work / "results" / "splits" / "metadata.json"
    _statuses(work)  # fill the cache
    before = victim.stat()
    text = victim.read_bytes()
    victim.write_bytes(text[:-2] + (b" \n" if text[-2:] != b" \n" else b"\t\n"))
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _statuses(work)["results/splits"].status == "OK"  # trusted the cache (documented)
    assert _statuses(work, use_cache=False)["results/splits"].status == "MODIFIED"


def test_provenance_report_lists_datasets_and_raw_trees(work):
    text = provenance_report(work / "results" / "misalign")
    assert "| tensors mimic |" in text and "| cohort mimic |" in text
    assert "mimic-iv-ecg" in text and "cohort mimic, tensors mimic" in text
    assert "No stage manifests" in provenance_report(work / "raw")


def _sidecars(root: Path) -> list[Path]:
    return sorted(root.rglob(f"*{LISTING_SUFFIX}"))


SIDECAR_CHAIN_ONLY = pytest.mark.parametrize("chain", ["sidecar"], indirect=True)


@SIDECAR_CHAIN_ONLY
def test_long_file_lists_live_in_sidecars_and_are_checked(work):
    cohort_manifest = work / "results" / "cohort" / "provenance.json"
    doc = json.loads(cohort_manifest.read_text())
    ecg = next(e for e in doc["inputs"] if e["arg"] == "ecg")
    assert "files" not in ecg and ecg["listing"]["path"].endswith(LISTING_SUFFIX) and ecg["n_files"] > 3
    assert {f.status for f in _statuses(work).values()} == {"OK"}  # sidecars are never hashed

    sidecar = cohort_manifest.parent / ecg["listing"]["path"]
    _flip(sidecar)
    found = _statuses(work)
    assert found["results/cohort"].status == "MODIFIED"
    assert "file list changed after the manifest was written" in " ".join(found["results/cohort"].details)
    for path in _sidecars(work / "results"):
        path.unlink()
    found = _statuses(work)
    assert found["raw/mimic-iv-ecg"].status == "MISSING" and "unreadable" in found["raw/mimic-iv-ecg"].details[0]


@SIDECAR_CHAIN_ONLY
def test_sidecars_are_deterministic_and_replaced_on_rerun(work, monkeypatch):
    from gated_symile.provenance import listings

    res = work / "results"
    before = {p.name: p.read_bytes() for p in _sidecars(res / "splits")}
    assert before  # the splits folder lists its cohort input and its own files
    args = ["splits", "mimic", "--cohort", str(res / "cohort" / "cohort.parquet"), "--out", str(res / "splits"),
            "--train-n", "20", "--val-n", "5", "--candidate-n", "3"]  # fmt: skip
    monkeypatch.setattr(listings, "LISTING_INLINE_MAX", 3)
    assert main(args) == 0
    assert {p.name: p.read_bytes() for p in _sidecars(res / "splits")} == before
    monkeypatch.setattr(listings, "LISTING_INLINE_MAX", 10_000)
    assert main(args) == 0
    assert _sidecars(res / "splits") == []  # the lists are inline again; no stale sidecar is left
