"""Synthetic chest radiographs written as MIMIC-CXR DICOMs, and their MIMIC-CXR-JPG conversion.

The image is a cartoon chest built from ellipses on a [-1, 1]^2 grid: body, two lung fields,
mediastinum and spine, heart shadow, diaphragm domes and ribs.  Three findings carry the latents
(``latents.py``) as large, global features a small CNN sees even at 64x64:

* heart width (cardiothoracic ratio 0.46 + 0.06 * ``h_cxr``) -> Cardiomegaly;
* lung haze (density rising with ``f_cxr``, perihilar and basal) -> Edema / Lung Opacity;
* bilateral pleural effusion (dense fluid filling the lung bases with a meniscus) iff
  ``c_cxr == 1`` -> Pleural Effusion: the first XNOR finding;
* a pacemaker (bright generator box below the left clavicle, its lead running to the heart) iff
  ``c2_cxr == 1`` -> Support Devices: the second XNOR finding.

Stored values are 12 bit (0..4095, bright = dense for MONOCHROME2; MONOCHROME1 stores
``4095 - v``).  The JPG is derived from the written DICOM by
:func:`gated_symile.records.mimic_jpg.mimic_jpg_pixels`, the same code that converts real DICOMs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
MAX_12BIT = 4095

_VIEW_CODES = {
    "postero-anterior": "R-10214",
    "antero-posterior": "R-10206",
    "lateral": "R-102CD",
    "left lateral": "R-10236",
}
_ORIENTATION_CODES = {"Erect": "F-10440", "Recumbent": "F-10450"}


def _ellipse(x, y, cx, cy, rx, ry) -> np.ndarray:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency texture: a coarse random grid upsampled by nearest + box smoothing."""
    coarse = rng.standard_normal((cells, cells))
    reps = -(-size // cells)
    field = np.kron(coarse, np.ones((reps, reps)))[:size, :size]
    k = max(1, reps // 2)
    padded = np.pad(field, k, mode="edge")
    c = padded.cumsum(0).cumsum(1)
    c = np.pad(c, ((1, 0), (1, 0)))
    w = 2 * k + 1
    box = c[w:, w:] - c[:-w, w:] - c[w:, :-w] + c[:-w, :-w]
    return box[:size, :size] / (w * w)


def synthesize_cxr(
    rng: np.random.Generator,
    view: str,
    h_cxr: float,
    f_cxr: float,
    c_cxr: int,
    size: int,
    c2_cxr: int = 0,
) -> np.ndarray:
    """12-bit (uint16) radiograph, MONOCHROME2 sense; lateral-type views get a side profile."""
    y, x = np.mgrid[-1.0 : 1.0 : size * 1j, -1.0 : 1.0 : size * 1j]
    x = x + rng.normal(0.0, 0.03)
    y = y + rng.normal(0.0, 0.03)
    img = np.full((size, size), 0.05)
    lateral = "LAT" in view or view == "LL"
    body = _ellipse(x, y, 0.0, 0.15, 0.95 if not lateral else 0.75, 1.2)
    img[body] = 0.45
    haze = 0.5 / (1.0 + np.exp(-(1.8 * f_cxr - 0.6)))
    texture = _smooth_noise(rng, size, 12)
    if lateral:
        lungs = _ellipse(x, y, 0.0, -0.05, 0.55, 0.62)
        heart = _ellipse(x, y, -0.25, 0.3, 0.3 * (1 + 0.12 * h_cxr), 0.3)
        spine = (x > 0.5) & (x < 0.65) & body
        base = 0.3 - 0.2 * x
    else:
        lungs = _ellipse(np.abs(x), y, 0.4, -0.05, 0.3, 0.62)
        ctr = float(np.clip(0.46 + 0.06 * h_cxr, 0.33, 0.68)) * (
            1.08 if view.startswith("AP") else 1.0
        )
        heart = _ellipse(x, y, 0.1, 0.3, 0.75 * ctr, 0.3)
        spine = (np.abs(x) < 0.07) & body
        base = 0.22 - 0.45 * (np.abs(x) - 0.4)  # meniscus: higher laterally
    lung_value = (
        0.14 + 0.05 * texture + haze * np.clip(0.4 + 0.6 * (y + 0.6) / 1.2, 0, 1)
    )
    img[lungs] = lung_value[lungs]
    ribs = (np.sin(2 * np.pi * ((y + 0.3 * x**2) / 0.16)) > 0.75) & lungs
    img[ribs] += 0.08
    if c_cxr == 1:
        fluid = lungs & (y > base + rng.normal(0.0, 0.03))
        img[fluid] = 0.55 + 0.03 * texture[fluid]
    img[spine] = 0.7
    if not lateral:
        img[(np.abs(x - 0.02) < 0.12) & (y < 0.2) & body & (y > -0.9)] = 0.6
    img[heart] = 0.66
    img[body & (y > 0.72 + 0.08 * np.cos(3 * x))] = 0.55
    if c2_cxr == 1:
        img[_pacemaker(rng, x, y)] = 0.95
    img = img * rng.uniform(0.9, 1.1) + rng.normal(0.0, 0.012, img.shape)
    return np.rint(np.clip(img, 0.0, 1.0) * 3600 + 200).astype(np.uint16)


def _pacemaker(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of a pacemaker: generator box below the left clavicle, lead curving to the heart."""
    bx, by = 0.45 + rng.normal(0.0, 0.04), -0.62 + rng.normal(0.0, 0.04)
    box = (np.abs(x - bx) < 0.13) & (np.abs(y - by) < 0.08)
    t = np.linspace(0.0, 1.0, 48)[:, None, None]
    cx = (1 - t) ** 2 * bx + 2 * t * (1 - t) * 0.05 + t**2 * 0.1
    cy = (1 - t) ** 2 * by + 2 * t * (1 - t) * -0.6 + t**2 * 0.35
    lead = (((x - cx) ** 2 + (y - cy) ** 2).min(axis=0)) < 0.03**2
    return box | lead


def write_dicom(
    path: Path, pixels: np.ndarray, photometric: str, tags: dict, uid_key: str
) -> None:
    """Uncompressed explicit-VR little-endian DX DICOM with the MIMIC-CXR tags (docs/data.md §10).

    UIDs are derived from ``uid_key`` (and the study's ``study_key``), so the bytes depend only
    on the config.
    """
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.file_meta = _file_meta(uid_key)
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    _set_study_tags(ds, tags, uid_key)
    _set_pixel_module(ds, pixels, photometric)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _uid(key: str, role: str) -> str:
    """A UID that is a hash of ``key`` and ``role``: the same on every run."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[key, role])


def _file_meta(uid_key: str):
    """The file meta group (part 10 header) of a DX image in explicit-VR little endian."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = _uid(uid_key, "sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _code_sequence(value: str, meaning: str):
    """A one-item code sequence in the SNOMED-RT scheme MIMIC-CXR's DICOMs use."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "SRT"
    item.CodeMeaning = meaning
    return Sequence([item])


def _set_study_tags(ds, tags: dict, uid_key: str) -> None:
    """Patient, study, series and view tags; code sequences only where MIMIC-CXR has a meaning."""
    ds.StudyInstanceUID = _uid(tags["study_key"], "study")
    ds.SeriesInstanceUID = _uid(uid_key, "series")
    ds.PatientID = str(tags["subject_id"])
    ds.PatientName = ""
    ds.Modality = "DX"
    ds.StudyDate = tags["StudyDate"]
    ds.StudyTime = tags["StudyTime"]
    ds.BodyPartExamined = "CHEST"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ViewPosition = tags["ViewPosition"]
    ds.PerformedProcedureStepDescription = tags["PerformedProcedureStepDescription"]
    ds.ProcedureCodeSequence = _code_sequence("CXR", tags["PerformedProcedureStepDescription"])
    if tags["ViewCodeSequence_CodeMeaning"]:
        meaning = tags["ViewCodeSequence_CodeMeaning"]
        ds.ViewCodeSequence = _code_sequence(_VIEW_CODES[meaning], meaning)
    if tags["PatientOrientationCodeSequence_CodeMeaning"]:
        meaning = tags["PatientOrientationCodeSequence_CodeMeaning"]
        ds.PatientOrientationCodeSequence = _code_sequence(_ORIENTATION_CODES[meaning], meaning)


def _set_pixel_module(ds, pixels: np.ndarray, photometric: str) -> None:
    """12-bit pixels in 16-bit words; MONOCHROME1 stores ``4095 - v`` with an inverse LUT shape,
    so the reader's inversion is exercised. Spacing scales as if the film were 3000 pixels wide."""
    spacing = f"{0.139 * 3000 / pixels.shape[1]:.4f}"
    ds.PixelSpacing = [spacing, spacing]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    stored = MAX_12BIT - pixels if photometric == "MONOCHROME1" else pixels
    ds.PixelData = stored.astype("<u2").tobytes()


def write_jpg(dicom_path: Path, jpg_path: Path) -> None:
    """MIMIC-CXR-JPG conversion of a written DICOM (invert MONOCHROME1, 8 bit, equalise, q95)."""
    from PIL import Image

    from gated_symile.records.mimic_jpg import mimic_jpg_pixels

    jpg_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mimic_jpg_pixels(dicom_path)).save(jpg_path, quality=95)


def corrupt_dicom(path: Path, rng: np.random.Generator) -> str:
    """Fault injection: truncate the pixel data, or replace the file by bytes that are not DICOM."""
    if rng.random() < 0.5:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * 0.6)])
        return "truncated"
    path.write_bytes(b"\x00" * 64 + b"NOT A DICOM FILE")
    return "garbage"
