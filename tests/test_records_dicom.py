"""DICOM radiograph reader, MIMIC-CXR-JPG conversion and JPG reader: real samples + synthetic files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gated_symile.records import (
    MissingRecord,
    NotGrayscale,
    UnreadableRecord,
    UnsupportedRecord,
    equalize_histogram,
    mimic_jpg_pixels,
    read_dicom_image,
    read_jpg_gray,
)
from tests._realdata import realdata

PYDICOM_DATA = ("pydicom-data", "data_store", "data")
WHEEL = ("pydicom-3.0.2-wheel", "pydicom", "data", "test_files")
HIGHDICOM_DX = ("highdicom", "data", "test_files", "dx_image.dcm")
NCCID = (
    "nhsx-nccid-warehouse-loader", "warehouse-loader", "tests", "test_data",
    "1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm",
)  # fmt: skip


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME1",
    bits_stored: int = 12,
    slope: float | None = None,
    intercept: float | None = None,
    transfer_syntax: str = "1.2.840.10008.1.2.1",
    frames: int = 1,
    with_meta: bool = True,
) -> Path:
    """A minimal DX radiograph (16-bit allocated) written with pydicom."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, generate_uid

    ds = Dataset()
    ds.SOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(path.name)])
    ds.Modality = "DX"
    ds.PatientID = "10000032"
    ds.StudyDate = "21800723"
    ds.StudyTime = "084400.000"
    ds.ViewPosition = "PA"
    rows, columns = pixels.shape[-2:]
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    if UID(transfer_syntax).is_compressed:  # an undecodable stand-in fragment is enough here
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([ds.PixelData])
    if with_meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


def assert_non_increasing_in(raw: np.ndarray, converted: np.ndarray) -> None:
    """``converted`` is a non-increasing function of ``raw`` (exactly one inversion happened)."""
    order = np.argsort(raw.ravel(), kind="stable")
    assert np.all(np.diff(converted.ravel()[order].astype(np.int16)) <= 0)
    assert converted.ravel()[order][0] == 255 and converted.ravel()[order][-1] == 0


# ---------------------------------------------------------------- real radiographs


def test_rg1_monochrome1_jpeg2000_chest_decodes_and_is_inverted_once():
    path = realdata(*PYDICOM_DATA, "RG1_J2KI.dcm")
    image = read_dicom_image(path)
    assert image.pixels.shape == (1955, 1841)
    assert image.photometric == "MONOCHROME1" and image.bits_stored == 15
    assert image.transfer_syntax_uid == "1.2.840.10008.1.2.4.91"
    assert image.tags["ViewPosition"] == "PA" and image.tags["Modality"] == "CR"
    converted = mimic_jpg_pixels(path)
    assert converted.dtype == np.uint8 and converted.shape == image.pixels.shape
    assert_non_increasing_in(image.pixels[::7, ::7], converted[::7, ::7])


def test_highdicom_monochrome1_with_inverse_presentation_lut_is_inverted_only_once():
    path = realdata(*HIGHDICOM_DX)
    image = read_dicom_image(path)
    assert image.photometric == "MONOCHROME1" and image.presentation_lut_shape == "INVERSE"
    assert_non_increasing_in(image.pixels, mimic_jpg_pixels(path))


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "JLSL_16_15_1_1F.dcm"])
def test_jpeg_lossless_and_jpeg_ls_decode_or_fail_as_unsupported(name):
    path = realdata(*PYDICOM_DATA, name)
    from pydicom import dcmread
    from pydicom.pixels import get_decoder

    syntax = dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if get_decoder(syntax).is_available:
        image = read_dicom_image(path)
        assert image.pixels.ndim == 2 and image.pixels.size > 0
        np.testing.assert_array_equal(image.pixels, dcmread(path).pixel_array)
    else:
        with pytest.raises(UnsupportedRecord, match="unsupported transfer syntax"):
            read_dicom_image(path)


def test_vlut_04_voi_lut_is_applied_on_request_only():
    image = read_dicom_image(realdata(*PYDICOM_DATA, "vlut_04.dcm"))
    assert image.has_voi_lut
    modality, windowed = image.modality_values(), image.voi_values()
    assert modality.max() == 255
    assert windowed.max() > 255  # the 16-bit VOI LUT output range
    assert not np.array_equal(modality, windowed)


def test_nccid_secondary_capture_without_view_and_date_tags():
    image = read_dicom_image(realdata(*NCCID))
    assert image.tags["PatientID"] == "Covid0000"
    assert image.tags["ViewPosition"] is None and image.tags["StudyDate"] is None
    assert image.pixels.shape == (1024, 1024)
    assert mimic_jpg_pixels(realdata(*NCCID)).shape == (1024, 1024)


@pytest.mark.parametrize(
    ("name", "error", "problem"),
    [
        ("SC_rgb_small_odd.dcm", NotGrayscale, "not grayscale (PhotometricInterpretation RGB"),
        ("SC_rgb_jpeg.dcm", NotGrayscale, "not grayscale"),
        ("MR_truncated.dcm", UnreadableRecord, "truncated pixel data"),
        ("rtplan.dcm", UnreadableRecord, "no PixelData element"),
        ("waveform_ecg.dcm", UnreadableRecord, "no PixelData element"),
        ("no_meta.dcm", UnreadableRecord, "not a DICOM file"),
    ],
)
def test_pydicom_edge_cases_are_rejected_with_a_reason(name, error, problem):
    path = realdata(*WHEEL, name)
    with pytest.raises(error) as caught:
        read_dicom_image(path)
    assert caught.value.path == str(path)
    assert caught.value.problem.startswith(problem)


@pytest.mark.parametrize(
    "name",
    ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_jp2klossless.dcm",
     "MR_small_jpeg_ls_lossless.dcm", "image_dfl.dcm", "JPGExtended.dcm"],
)  # fmt: skip
def test_transfer_syntaxes_decode_like_bare_pydicom(name):
    from pydicom import dcmread

    path = realdata(*WHEEL, name)
    np.testing.assert_array_equal(read_dicom_image(path).pixels, dcmread(path).pixel_array)


# ---------------------------------------------------------------- synthetic DICOM files


def test_synthetic_12_bit_monochrome1_conversion_is_exact(tmp_path):
    pixels = np.array([[0, 1000], [4095, 4095]], dtype=np.uint16)
    path = write_dicom(tmp_path / "m1.dcm", pixels, slope=2.0, intercept=-100.0)
    image = read_dicom_image(path)
    np.testing.assert_array_equal(image.modality_values(), 2.0 * pixels - 100.0)
    # min-max: 0, 62.27 -> 62, 255; inverted: 255, 193, 0, 0; equalised: 255, 128, 0, 0
    np.testing.assert_array_equal(mimic_jpg_pixels(path), [[255, 128], [0, 0]])


def test_synthetic_conversion_is_deterministic_and_monochrome2_is_not_inverted(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 4096, size=(64, 48), dtype=np.uint16)
    m1 = mimic_jpg_pixels(write_dicom(tmp_path / "m1.dcm", pixels))
    m2 = mimic_jpg_pixels(write_dicom(tmp_path / "m2.dcm", pixels, photometric="MONOCHROME2"))
    np.testing.assert_array_equal(m1, mimic_jpg_pixels(tmp_path / "m1.dcm"))
    assert_non_increasing_in(pixels, m1)
    assert_non_increasing_in(pixels, 255 - m2)


def test_file_without_meta_but_with_pixels_is_read(tmp_path):
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    path = write_dicom(tmp_path / "nometa.dcm", pixels, with_meta=False)
    assert path.read_bytes()[128:132] != b"DICM"
    image = read_dicom_image(path)
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.transfer_syntax_uid == "1.2.840.10008.1.2"


def test_multi_frame_is_rejected(tmp_path):
    path = write_dicom(tmp_path / "mf.dcm", np.zeros((2, 4, 4), dtype=np.uint16), frames=2)
    with pytest.raises(NotGrayscale, match="multi-frame image \\(2 frames\\)"):
        read_dicom_image(path)


def test_transfer_syntax_without_decoder_is_unsupported(tmp_path):
    path = write_dicom(
        tmp_path / "mpeg.dcm", np.zeros((4, 4), dtype=np.uint16),
        transfer_syntax="1.2.840.10008.1.2.4.100",
    )  # fmt: skip
    with pytest.raises(
        UnsupportedRecord,
        match=r"unsupported transfer syntax MPEG2 .*\(1\.2\.840\.10008\.1\.2\.4\.100\): install",
    ):
        read_dicom_image(path)


def test_missing_and_non_dicom_files(tmp_path):
    with pytest.raises(MissingRecord):
        read_dicom_image(tmp_path / "absent.dcm")
    text = tmp_path / "notes.dcm"
    text.write_text("just some text, not DICOM\n" * 20)
    with pytest.raises(UnreadableRecord, match="not a DICOM file"):
        read_dicom_image(text)


# ---------------------------------------------------------------- histogram equalisation


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20))))
def test_equalisation_is_monotone_and_spans_the_range(image):
    out = equalize_histogram(image)
    order = np.argsort(image.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order].astype(np.int16)) >= 0)
    if np.unique(image).size > 1:
        assert out.min() == 0 and out.max() == 255
    else:
        np.testing.assert_array_equal(out, image)


# ---------------------------------------------------------------- JPG reader


def test_jpg_reader_accepts_gray_and_rgb_and_rejects_broken_files(tmp_path):
    from PIL import Image

    gray = (np.arange(40 * 30) % 256).astype(np.uint8).reshape(40, 30)
    Image.fromarray(gray).save(tmp_path / "g.jpg", quality=95)
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "rgb.png")
    assert read_jpg_gray(tmp_path / "g.jpg").shape == (40, 30)
    np.testing.assert_array_equal(read_jpg_gray(tmp_path / "rgb.png"), gray)

    data = (tmp_path / "g.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(UnreadableRecord, match="truncated"):
        read_jpg_gray(tmp_path / "cut.jpg")
    with pytest.raises(UnreadableRecord, match="not an image"):
        read_jpg_gray(tmp_path / "text.jpg")
    with pytest.raises(MissingRecord):
        read_jpg_gray(tmp_path / "absent.jpg")


# ---------------------------------------------------------------- lookup-table vs float conversion


def _image(pixels: np.ndarray, photometric: str, slope: float, intercept: float):
    from gated_symile.records.dicom_cxr import CxrImage

    return CxrImage(
        path="synthetic", pixels=pixels, photometric=photometric, bits_allocated=16,
        bits_stored=16, pixel_representation=int(pixels.dtype.kind == "i"),
        transfer_syntax_uid="1.2.840.10008.1.2.1", transfer_syntax_name="Explicit VR Little Endian",
        rescale_slope=slope, rescale_intercept=intercept,
    )  # fmt: skip


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize(
    ("dtype", "low", "high"),
    [("<u2", 0, 4096), ("<u2", 0, 65536), ("<i2", -32768, 32768), ("<u2", 700, 703)],
)
@pytest.mark.parametrize(("slope", "intercept"), [(1.0, 0.0), (0.37, -1024.5), (-2.0, 7.0)])
def test_lookup_table_conversion_equals_the_float_path(photometric, dtype, low, high, slope, intercept):
    from gated_symile.records.mimic_jpg import mimic_jpg_from_image

    rng = np.random.default_rng(7)
    pixels = rng.integers(low, high, size=(97, 131)).astype(dtype)
    pixels[0, :4] = pixels[0, 0]  # repeated levels, as in real images
    image = _image(pixels, photometric, slope, intercept)
    fast = mimic_jpg_from_image(image)
    np.testing.assert_array_equal(fast, mimic_jpg_from_image(image, lookup_table=False))
    assert fast.dtype == np.uint8 and fast.shape == pixels.shape


def test_lookup_table_conversion_of_constant_and_float_images():
    from gated_symile.records.mimic_jpg import mimic_jpg_from_image

    for photometric, expected in (("MONOCHROME1", 255), ("MONOCHROME2", 0)):
        constant = _image(np.full((5, 7), 1234, dtype=np.uint16), photometric, 1.0, 0.0)
        np.testing.assert_array_equal(mimic_jpg_from_image(constant), np.full((5, 7), expected))
    floats = _image(np.linspace(0, 1, 35).reshape(5, 7), "MONOCHROME2", 1.0, 0.0)
    np.testing.assert_array_equal(
        mimic_jpg_from_image(floats), mimic_jpg_from_image(floats, lookup_table=False)
    )


def _real_grayscale_files() -> list[Path]:
    from tests._realdata import REALDATA

    folders = [REALDATA.joinpath(*PYDICOM_DATA), REALDATA.joinpath(*WHEEL),
               REALDATA.joinpath(*HIGHDICOM_DX).parent, REALDATA.joinpath(*NCCID).parent]  # fmt: skip
    files = sorted(p for f in folders if f.is_dir() for p in f.glob("*.dcm"))
    if not files:
        pytest.skip("no real DICOM samples available")
    return files


def test_lookup_table_conversion_equals_the_float_path_on_real_files():
    from gated_symile.errors import RecordError
    from gated_symile.records.mimic_jpg import mimic_jpg_from_image

    compared = []
    for path in _real_grayscale_files():
        try:
            image = read_dicom_image(path)
        except RecordError:
            continue  # RGB, multi-frame, no pixels, ...: covered by the rejection tests
        np.testing.assert_array_equal(
            mimic_jpg_from_image(image), mimic_jpg_from_image(image, lookup_table=False), str(path)
        )
        compared.append(path.name)
    assert {"RG1_J2KI.dcm", "CT_small.dcm", "dx_image.dcm"} <= set(compared)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_lookup_table_conversion_equals_the_float_path_with_a_modality_lut(photometric):
    from dataclasses import replace

    from pydicom.dataset import Dataset

    from gated_symile.records.mimic_jpg import mimic_jpg_from_image

    rng = np.random.default_rng(11)
    item = Dataset()
    item.LUTDescriptor = [3000, 500, 16]  # values below 500 / above 3499 clip to the ends
    item.ModalityLUTType = "US"
    item.LUTData = rng.integers(0, 65536, size=3000).tolist()  # not monotone on purpose
    ds = Dataset()
    ds.ModalityLUTSequence = [item]
    pixels = rng.integers(0, 4096, size=(61, 53)).astype(np.uint16)
    image = replace(_image(pixels, photometric, 1.0, 0.0), dataset=ds)
    np.testing.assert_array_equal(
        mimic_jpg_from_image(image), mimic_jpg_from_image(image, lookup_table=False)
    )
