"""The cohort stage's manifest hashes what the stage read, lists the rest, and the audit still
names every change that matters.

Runs ``cohort mimic`` through the CLI (as Snakemake does) on small hand-made releases, then edits
single files: a record the cohort read, a record it never opened, a listing file, an image whose
existence it checked, a DICOM header and the pixel data after it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gated_symile.provenance.audit import audit
from gated_symile.cli import main
from gated_symile.provenance.hash_cache import CACHE_ENV, HashCache
from gated_symile.provenance.hashing import Hasher
from tests.mimic_raw_fixtures import RawWorld

T0 = datetime(2180, 1, 1, 12, 0, 0)
H = timedelta(hours=1)


def world() -> RawWorld:
    """Two admissions: the first one's earliest ECG is NaN (read, rejected), the next is chosen, a
    third is never read; an ECG outside every window; a missing JPG before the chosen one."""
    w = RawWorld()
    for k in (1, 2):
        subject, admit = 10000000 + k, T0 + k * timedelta(days=10)
        w.add_admission(subject, 20000000 + k, admit)
        w.add_cxr(subject, 50000000 + k, f"{k:08x}-0-0-0-0", admit + 48 * H)
        w.add_lab(subject, 51221, admit + H, 1.0)
        w.add_ecg(subject, 40000000 + 10 * k, admit + H, "nan" if k == 1 else "ok")
        w.add_ecg(subject, 40000001 + 10 * k, admit + 2 * H)
        w.add_ecg(subject, 40000002 + 10 * k, admit + 3 * H)
        w.add_ecg(subject, 40000003 + 10 * k, admit - 30 * H)  # outside the window
    w.add_cxr(10000001, 50000009, "00000001-9-0-0-0", T0 + timedelta(days=10) + 30 * H, present=False)
    return w


def ecg_rel(study: int) -> str:
    subject = 10000000 + (study - 40000000) // 10
    return f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"


@pytest.fixture
def release(tmp_path, monkeypatch, request) -> dict:
    kind = getattr(request, "param", "jpg")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache.sqlite"))
    paths = world().write(tmp_path / "raw", release=kind)
    out = tmp_path / "results" / "cohort"
    argv = ["cohort", "mimic", "--mimic-iv", paths["mimic_iv"], "--ecg", paths["ecg"], "--cxr", paths["cxr"],
            "--out", out]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    doc = json.loads((out / "provenance.json").read_text())
    return {"root": tmp_path, **paths, "out": out, "inputs": {e["arg"]: e for e in doc["inputs"]}}


def statuses(root: Path) -> dict[str, object]:
    with Hasher(HashCache(Path(os.environ[CACHE_ENV]))) as hasher:
        return {os.path.relpath(f.path, root): f for f in audit(root / "results", hasher)}


def flip(path: Path, offset: int = -1) -> None:
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def test_manifest_hashes_what_was_read_and_lists_the_rest(release):
    ecg, mimic, cxr = (release["inputs"][k] for k in ("ecg", "mimic_iv", "cxr"))
    assert ecg["selective"] and mimic["selective"] and cxr["selective"]
    read = {"record_list.csv"} | {ecg_rel(s) + x for s in (40000010, 40000011, 40000020) for x in (".hea", ".dat")}
    assert set(ecg["files"]) == read
    assert ecg["n_files"] == len(ecg["listed"]) == 1 + 2 * 8 and read <= set(ecg["listed"])
    unread = (Path(release["ecg"]) / (ecg_rel(40000012) + ".dat")).stat()  # after the first valid ECG
    assert ecg["listed"][ecg_rel(40000012) + ".dat"] == [unread.st_size, unread.st_mtime_ns]
    assert set(mimic["files"]) == {f"hosp/{t}.csv.gz" for t in ("patients", "admissions", "labevents")}
    assert set(cxr["files"]) == {"mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-2.0.0-chexpert.csv.gz"}
    assert sorted(cxr["checked"].values()) == [False, True, True]  # the JPGs in some window
    summary = json.loads((release["out"] / "summary.json").read_text())
    assert summary["records_opened"] == {"ecg_records": 3, "cxr_jpg_files": 0}
    assert {f.status for f in statuses(release["root"]).values()} == {"OK"}


def test_an_empty_hash_cache_reads_only_what_the_stage_read(release):
    """The first run hashes (and caches) only the files the stage read, never the others."""
    with sqlite3.connect(os.environ[CACHE_ENV]) as db:
        cached = {Path(p).name for (p,) in db.execute("SELECT path FROM sha256")}
    assert "40000011.dat" in cached and "40000012.dat" not in cached and "40000013.hea" not in cached


def test_flipped_record_the_cohort_read_makes_it_stale(release):
    victim = Path(release["ecg"]) / (ecg_rel(40000010) + ".dat")  # read and rejected (NaN)
    flip(victim)
    found = statuses(release["root"])
    assert found["raw/mimic-iv-ecg"].status == "MODIFIED" and found["raw/mimic-iv-ecg"].modified == [str(victim)]
    assert found["results/cohort"].status == "STALE"
    assert ecg_rel(40000010) + ".dat" in " ".join(found["results/cohort"].details)


def test_flipped_record_never_opened_leaves_the_cohort_ok(release):
    victim = Path(release["ecg"]) / (ecg_rel(40000012) + ".dat")  # after the first valid ECG
    flip(victim)
    found = statuses(release["root"])
    assert found["results/cohort"].status == "OK"
    assert found["raw/mimic-iv-ecg"].status == "MODIFIED" and found["raw/mimic-iv-ecg"].modified == [str(victim)]
    assert "not read by the stage" in found["raw/mimic-iv-ecg"].details[0]
    (Path(release["ecg"]) / "files" / "extra.dat").write_bytes(b"new")
    details = " ".join(statuses(release["root"])["raw/mimic-iv-ecg"].details)
    assert "new files (not read by the stage) files/extra.dat" in details


@pytest.mark.parametrize("listing", ["record_list.csv", "metadata"])
def test_edited_listing_file_makes_the_cohort_stale(release, listing):
    victim = (
        Path(release["ecg"]) / "record_list.csv" if listing == "record_list.csv"
        else Path(release["cxr"]) / "mimic-cxr-2.0.0-metadata.csv.gz"
    )  # fmt: skip
    flip(victim, offset=len(victim.read_bytes()) // 2)
    found = statuses(release["root"])
    raw = os.path.relpath(victim.parent, release["root"])
    assert found[raw].status == "MODIFIED" and found[raw].modified == [str(victim)]
    assert found["results/cohort"].status == "STALE" and victim.name in " ".join(found["results/cohort"].details)


def test_existence_checks_are_part_of_what_the_cohort_used(release):
    cxr = Path(release["cxr"])
    absent = cxr / "files/p10/p10000001/s50000009/00000001-9-0-0-0.jpg"
    absent.parent.mkdir(parents=True, exist_ok=True)
    absent.write_bytes(b"")  # the missing image appears: the cohort could now choose it
    found = statuses(release["root"])
    assert found["results/cohort"].status == "STALE" and "presence changed" in found["results/cohort"].details[0]
    absent.unlink()
    (cxr / "files/p10/p10000002/s50000002/00000002-0-0-0-0.jpg").unlink()  # a chosen image goes
    assert statuses(release["root"])["results/cohort"].status == "STALE"


@pytest.mark.parametrize("release", ["dicom"], indirect=True)
def test_dicom_headers_are_hashed_as_read_and_pixel_edits_only_listed(release):
    cxr = Path(release["cxr"])
    entry = release["inputs"]["cxr"]
    dicom = "files/p10/p10000001/s50000001/00000001-0-0-0-0.dcm"
    assert dicom in entry["partial"] and entry["files"][dicom][0] < (cxr / dicom).stat().st_size
    flip(cxr / dicom)  # the last pixel byte: never read by the cohort
    found = statuses(release["root"])
    assert found["results/cohort"].status == "OK" and found["raw/mimic-cxr"].status == "MODIFIED"
    flip(cxr / dicom, offset=200)  # inside the header
    found = statuses(release["root"])
    assert found["results/cohort"].status == "STALE" and dicom in " ".join(found["results/cohort"].details)
