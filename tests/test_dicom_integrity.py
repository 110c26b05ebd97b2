"""DICOM files that parse but are not whole images (empty, truncated, tags missing) are rejected.

pydicom stops silently where a file ends, so these used to read "successfully" with blank tags or
a few bytes of pixel data; the cohort then indexed such an image with no view position and
excluded its admission for the wrong reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from gated_symile.data.mimic.cohort import MimicCohortConfig, build_mimic_cohort
from gated_symile.records import UnreadableRecord, read_dicom_header, read_dicom_image
from tests.mimic_raw_fixtures import RawWorld
from tests.test_cohort_rules import T0, H, complete, dicom, hid, sid
from tests.test_records_dicom import write_dicom


def _file_meta_end(path: Path) -> int:
    """Offset just past the file meta group: preamble 128 + 'DICM' 4 + group-length element 12."""
    return 144 + int(pydicom.dcmread(path).file_meta.FileMetaInformationGroupLength)


def _radiograph(path: Path) -> Path:
    return write_dicom(path, (np.arange(64 * 48) % 4096).reshape(64, 48).astype(np.uint16))


@pytest.mark.parametrize("read", [read_dicom_image, read_dicom_header])
def test_file_cut_right_after_its_file_meta_is_unreadable(tmp_path, read):
    path = _radiograph(tmp_path / "a.dcm")
    path.write_bytes(path.read_bytes()[: _file_meta_end(path)])
    assert len(pydicom.dcmread(path)) == 0  # what pydicom alone makes of it: an empty dataset
    with pytest.raises(UnreadableRecord) as caught:
        read(path)
    assert caught.value.path == str(path)
    assert caught.value.problem == "no data elements after the file meta header (file truncated?)"


@pytest.mark.parametrize("read", [read_dicom_image, read_dicom_header])
def test_file_cut_inside_the_pixel_data_is_unreadable(tmp_path, read):
    path = _radiograph(tmp_path / "a.dcm")
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(UnreadableRecord, match=r"truncated pixel data: the file ends at byte"):
        read(path)


def test_file_cut_inside_a_header_element_is_unreadable(tmp_path):
    path = _radiograph(tmp_path / "a.dcm")
    data = path.read_bytes()
    uid = pydicom.dcmread(path).SOPInstanceUID.encode()
    cut = data.index(uid, _file_meta_end(path)) + 3  # three characters into SOPInstanceUID
    path.write_bytes(data[:cut])
    with pytest.raises(UnreadableRecord, match=r"truncated element \(0008,0018\)"):
        read_dicom_header(path)


def test_image_without_rows_is_unreadable_not_a_decoder_traceback(tmp_path):
    path = _radiograph(tmp_path / "a.dcm")
    ds = pydicom.dcmread(path)
    del ds.Rows
    ds.save_as(path, enforce_file_format=True)
    for read in (read_dicom_image, read_dicom_header):
        with pytest.raises(UnreadableRecord, match=r"missing required image tag\(s\) Rows$"):
            read(path)


def test_complete_header_gives_the_same_tags_as_the_image_reader(tmp_path):
    path = _radiograph(tmp_path / "a.dcm")
    assert read_dicom_header(path) == read_dicom_image(path).tags


def test_cohort_quarantines_a_truncated_dicom_as_an_unreadable_image(tmp_path):
    w = RawWorld()
    complete(w, 1)
    w.add_cxr(sid(1), 50000099, dicom(1, 9), T0 + 30 * H)  # earlier than the good image
    paths = w.write(tmp_path, release="dicom")
    broken = Path(paths["cxr"]) / f"files/p10/p{sid(1)}/s50000099/{dicom(1, 9)}.dcm"
    broken.write_bytes(broken.read_bytes()[: _file_meta_end(broken)])
    out = tmp_path / "out"
    build_mimic_cohort(MimicCohortConfig(**paths, out=out))
    assert pd.read_parquet(out / "cohort.parquet").cxr_dicom_id.tolist() == [dicom(1)]
    ex = pd.read_parquet(out / "exclusions.parquet")
    images = ex[ex.level == "cxr_image"]
    assert images.reason.tolist() == [
        "unreadable image: no data elements after the file meta header (file truncated?)"
    ]
    assert images.id.tolist() == [f"files/p10/p{sid(1)}/s50000099/{dicom(1, 9)}.dcm"]


def _without_rows(path: Path) -> None:
    ds = pydicom.dcmread(path)
    del ds.Rows
    ds.save_as(path, enforce_file_format=True)


def _cut_after_file_meta(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: _file_meta_end(path)])


def _garbled_header(path: Path) -> None:
    path.write_bytes(b"\x00\xff not a WFDB header \xfe\n")


def test_admission_whose_only_records_are_unusable_is_excluded_naming_the_problem(tmp_path):
    """Each admission's only candidate image or ECG is unusable (pydicom-written DICOMs cut after
    the file meta or missing a required tag, a deleted DICOM, a garbled or all-zero ECG): the
    admission's reason names the problem, not "no AP/PA CXR" as if no image had existed."""
    w = RawWorld()
    complete(w, 1)
    for k in (2, 3, 4, 5):  # the only AP/PA image in the window: cut, no Rows, deleted, cut ...
        complete(w, k, cxr=False)
        w.add_cxr(sid(k), 50000000 + k, dicom(k), T0 + 48 * H)
    # ... but 5's study has a readable image taken after its window: the cut one cannot be its CXR
    w.add_cxr(sid(5), 50000005, dicom(5, 1), T0 + 100 * H, "LATERAL")
    complete(w, 6, ecg=False)
    w.add_ecg(sid(6), 40000060, T0 + H)  # garbled below
    complete(w, 7, ecg=False)
    w.add_ecg(sid(7), 40000070, T0 + H, "zero")
    w.add_ecg(sid(7), 40000071, T0 + 2 * H, "missing")
    complete(w, 8, cxr=False)  # no image at all
    paths = w.write(tmp_path, release="dicom")
    files = Path(paths["cxr"]) / "files/p10"
    image = {k: files / f"p{sid(k)}/s{50000000 + k}/{dicom(k)}.dcm" for k in (2, 3, 4, 5)}
    _cut_after_file_meta(image[2])
    _without_rows(image[3])
    image[4].unlink()
    _cut_after_file_meta(image[5])
    _garbled_header(Path(paths["ecg"]) / f"files/p1000/p{sid(6)}/s40000060/40000060.hea")
    out = tmp_path / "out"
    summary = build_mimic_cohort(MimicCohortConfig(**paths, out=out))

    ex = pd.read_parquet(out / "exclusions.parquet")
    admissions = ex[ex.level == "admission"].set_index("hadm_id")
    no_cxr, no_ecg = "AP/PA CXR within (24 h, 72 h]", "no valid ECG within [-24 h, +24 h]"
    assert admissions.reason.to_dict() == {
        hid(2): f"no usable {no_cxr}: unreadable image",
        hid(3): f"no usable {no_cxr}: unreadable image",
        hid(4): f"no usable {no_cxr}: CXR file missing",
        hid(5): f"no {no_cxr}",
        hid(6): f"{no_ecg}: ECG record unreadable",
        hid(7): f"{no_ecg}: ECG failed QC; ECG record missing",
        hid(8): f"no {no_cxr}",
    }
    cohort = pd.read_parquet(out / "cohort.parquet")
    assert cohort.hadm_id.tolist() == [hid(1)]
    per_reason = admissions.reason.value_counts()
    assert summary["admissions"] == len(cohort) + per_reason.sum() == 8
    attrition = pd.read_csv(out / "attrition.csv").set_index("criterion").dropped
    assert attrition["with AP/PA CXR in (24 h, 72 h]"] == per_reason.filter(like="CXR").sum() == 5
    assert attrition["with valid ECG in [-24 h, +24 h]"] == per_reason.filter(like="ECG").sum() == 2
    images = ex[ex.level == "cxr_image"].set_index("id").reason
    assert images[str(image[3].relative_to(paths["cxr"]))] == (
        "unreadable image: missing required image tag(s) Rows"
    )


def test_admission_whose_only_jpg_is_missing_is_excluded_naming_it(tmp_path):
    w = RawWorld()
    complete(w, 1, cxr=False)
    w.add_cxr(sid(1), 50000001, dicom(1), T0 + 48 * H, present=False)
    complete(w, 2, cxr=False)
    w.add_cxr(sid(2), 50000002, dicom(2), T0 + 100 * H, present=False)  # outside the window
    out = tmp_path / "out"
    build_mimic_cohort(MimicCohortConfig(**w.write(tmp_path), out=out))
    ex = pd.read_parquet(out / "exclusions.parquet")
    assert ex[ex.level == "admission"].set_index("hadm_id").reason.to_dict() == {
        hid(1): "no usable AP/PA CXR within (24 h, 72 h]: CXR file missing",
        hid(2): "no AP/PA CXR within (24 h, 72 h]",
    }


@pytest.mark.parametrize(
    "syntax", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99", "no meta"]
)
def test_header_hash_covers_the_bytes_before_the_pixel_data_from_one_parse(tmp_path, syntax):
    """The index's provenance hashes what ``dcmread(stop_before_pixels=True)`` reads (explicit,
    implicit, deflated, no preamble), from the header reader's own parse of the file."""
    import hashlib

    from gated_symile.data.mimic.cxr_index import _read_header_fields

    pixels = (np.arange(64 * 48) % 4096).reshape(64, 48).astype(np.uint16)
    if syntax == "no meta":
        write_dicom(tmp_path / "a.dcm", pixels, with_meta=False)
    else:
        write_dicom(tmp_path / "a.dcm", pixels, transfer_syntax=syntax)
    with open(tmp_path / "a.dcm", "rb") as handle:
        pydicom.dcmread(handle, stop_before_pixels=True, force=True)
        expected = handle.tell()
    fields, opened = _read_header_fields(str(tmp_path), "a.dcm", hash_bytes=True)
    assert fields["ViewPosition"] == "PA"
    data = (tmp_path / "a.dcm").read_bytes()
    assert opened.nbytes == expected and opened.size == len(data)
    assert opened.sha256 == hashlib.sha256(data[:expected]).hexdigest()
