"""The uncompressed-pixel fast path of ``read_dicom_image`` equals ``pydicom``'s ``pixel_array``.

``_native_view`` returns the file's bytes as a read-only array instead of pydicom's copy with the
unused high bits cleared; these tests pin that the two are the same array for every layout the
view accepts (including dirty high bits, which must fall back) and that the view is really used.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gated_symile.records import read_dicom_image
from tests._realdata import REALDATA

SYNTAXES = {
    "implicit-le": ("1.2.840.10008.1.2", True, True),
    "explicit-le": ("1.2.840.10008.1.2.1", False, True),
    "explicit-be": ("1.2.840.10008.1.2.2", False, False),
}


def write_native(
    path: Path, stored_values: np.ndarray, *, allocated: int, stored: int, signed: bool, syntax: str
) -> Path:
    """A single-frame MONOCHROME2 image whose PixelData holds ``stored_values`` as given."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, generate_uid

    uid, implicit, little = SYNTAXES[syntax]
    ds = Dataset()
    ds.SOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[path.name])
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored_values.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, stored, stored - 1
    ds.PixelRepresentation = int(signed)
    dtype = np.dtype(f"{'i' if signed else 'u'}{allocated // 8}").newbyteorder("<" if little else ">")
    data = stored_values.astype(dtype).tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(uid)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True, implicit_vr=implicit, little_endian=little)
    return path


@st.composite
def native_images(draw):
    allocated = draw(st.sampled_from([8, 16]))
    stored = draw(st.integers(1, allocated))
    signed = draw(st.booleans())
    dirty = draw(st.booleans())  # values use the bits above BitsStored
    bits = allocated if dirty else stored
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    shape = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    seed = draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).integers(low, high, size=shape, endpoint=True)
    values.flat[0] = high  # a dirty value whenever the drawn range is wider than BitsStored
    syntax = draw(st.sampled_from(sorted(SYNTAXES)))
    return values, allocated, stored, signed, syntax


@settings(max_examples=150, deadline=None)
@given(native_images())
def test_native_view_equals_pixel_array(case):
    values, allocated, stored, signed, syntax = case
    with tempfile.TemporaryDirectory() as folder:
        path = write_native(
            Path(folder) / "x.dcm", values, allocated=allocated, stored=stored, signed=signed,
            syntax=syntax,
        )  # fmt: skip
        expected = pydicom.dcmread(path).pixel_array
        pixels = read_dicom_image(path).pixels
    np.testing.assert_array_equal(pixels, expected)
    assert pixels.dtype == expected.dtype and pixels.shape == values.shape
    low, high = (-(1 << (stored - 1)), (1 << (stored - 1)) - 1) if signed else (0, (1 << stored) - 1)
    clean = low <= values.min() and values.max() <= high
    view_expected = SYNTAXES[syntax][2] and clean  # little endian, nothing to clear
    assert pixels.flags.writeable is not view_expected


def test_dirty_high_bits_are_cleared_as_pydicom_does(tmp_path):
    values = np.array([[0x0FFF, 0xF123], [0x1000, 7]])  # 12 bits stored, garbage above
    path = write_native(
        tmp_path / "dirty.dcm", values, allocated=16, stored=12, signed=False, syntax="explicit-le"
    )
    np.testing.assert_array_equal(read_dicom_image(path).pixels, [[0x0FFF, 0x0123], [0, 7]])


def test_native_view_is_used_for_a_clean_12_bit_radiograph(tmp_path):
    values = np.random.default_rng(0).integers(0, 4096, size=(64, 48))
    path = write_native(
        tmp_path / "cxr.dcm", values, allocated=16, stored=12, signed=False, syntax="explicit-le"
    )
    pixels = read_dicom_image(path).pixels
    assert not pixels.flags.writeable and not pixels.flags.owndata
    np.testing.assert_array_equal(pixels, values)


def test_real_uncompressed_files_equal_pixel_array():
    from gated_symile.errors import RecordError

    folder = REALDATA / "pydicom-data" / "data_store" / "data"
    wheel = REALDATA / "pydicom-3.0.2-wheel" / "pydicom" / "data" / "test_files"
    files = sorted(p for f in (folder, wheel) if f.is_dir() for p in f.glob("*.dcm"))
    if not files:
        pytest.skip("no real DICOM samples available")
    compared = 0
    for path in files:
        try:
            image = read_dicom_image(path)
        except RecordError:
            continue
        if image.pixels.flags.writeable:  # decoded by pydicom, nothing to compare
            continue
        np.testing.assert_array_equal(image.pixels, pydicom.dcmread(path).pixel_array, str(path))
        compared += 1
    assert compared >= 3
