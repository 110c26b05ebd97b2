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
from tests.test_cohort_rules import T0, H, complete, dicom, sid
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
