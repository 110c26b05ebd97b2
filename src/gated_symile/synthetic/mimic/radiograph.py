"""Synthetic chest radiographs written as MIMIC-CXR DICOMs, and their MIMIC-CXR-JPG conversion.

The image is a cartoon chest built from ellipses on a [-1, 1]^2 grid: body, two lung fields,
mediastinum and spine, heart shadow, diaphragm domes and ribs.  Three findings carry the latents
(``latents.py``) as large, global features a small CNN sees even at 64x64:

* heart width (cardiothoracic ratio 0.46 + 0.06 * ``h_cxr``) -> Cardiomegaly;
* lung haze (density rising with ``f_cxr``, perihilar and basal) -> Edema / Lung Opacity;
* bilateral pleural effusion (dense fluid filling the lung bases with a meniscus) iff
  ``c_cxr == 1`` -> Pleural Effusion: the XNOR finding.

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
    img = img * rng.uniform(0.9, 1.1) + rng.normal(0.0, 0.012, img.shape)
    return np.rint(np.clip(img, 0.0, 1.0) * 3600 + 200).astype(np.uint16)


def write_dicom(
    path: Path, pixels: np.ndarray, photometric: str, tags: dict, uid_key: str
) -> None:
    """Uncompressed explicit-VR little-endian DX DICOM with the MIMIC-CXR tags (docs/data.md §10)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        ExplicitVRLittleEndian,
        generate_uid,
    )

    def uid(role: str) -> str:
        return generate_uid(entropy_srcs=[uid_key, role])

    def code(value: str, meaning: str) -> Sequence:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "SRT"
        item.CodeMeaning = meaning
        return Sequence([item])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = uid("sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[tags["study_key"], "study"])
    ds.SeriesInstanceUID = uid("series")
    ds.PatientID = str(tags["subject_id"])
    ds.PatientName = ""
    ds.Modality = "DX"
    ds.StudyDate = tags["StudyDate"]
    ds.StudyTime = tags["StudyTime"]
    ds.BodyPartExamined = "CHEST"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ViewPosition = tags["ViewPosition"]
    ds.PerformedProcedureStepDescription = tags["PerformedProcedureStepDescription"]
    ds.ProcedureCodeSequence = code("CXR", tags["PerformedProcedureStepDescription"])
    if tags["ViewCodeSequence_CodeMeaning"]:
        meaning = tags["ViewCodeSequence_CodeMeaning"]
        ds.ViewCodeSequence = code(_VIEW_CODES[meaning], meaning)
    if tags["PatientOrientationCodeSequence_CodeMeaning"]:
        meaning = tags["PatientOrientationCodeSequence_CodeMeaning"]
        ds.PatientOrientationCodeSequence = code(_ORIENTATION_CODES[meaning], meaning)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


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
