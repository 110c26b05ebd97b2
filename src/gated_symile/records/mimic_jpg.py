"""The MIMIC-CXR-JPG pixel conversion of a DICOM radiograph (docs/data.md §3).

MIMIC-CXR-JPG was made from the DICOM release by: Modality LUT / rescale, inverting MONOCHROME1,
min-max scaling to 8 bits, global histogram equalisation, JPEG q95.  The synthetic generator
writes its JPG release with :func:`mimic_jpg_pixels`, and the tensors stage uses the same function
when it is pointed at the DICOM release, so both releases give the same images up to JPEG loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gated_symile.records.dicom_cxr import CxrImage, read_dicom_image

__all__ = [
    "MAX_LOOKUP_LEVELS",
    "equalize_histogram",
    "mimic_jpg_from_image",
    "mimic_jpg_pixels",
    "scale_to_uint8",
]

MAX_LOOKUP_LEVELS = 1 << 20
"""Widest stored-value range converted through a lookup table; wider (or float) data goes the
whole-image float way.  Radiographs store 10-16 bits, so this only stops pathological files."""


def scale_to_uint8(values: np.ndarray, *, invert: bool = False) -> np.ndarray:
    """Min-max scale to 0..255 uint8 (rounded), optionally inverting once.

    A constant image maps to all zeros (all 255 when inverted) instead of dividing by zero.
    """
    values = np.asarray(values, dtype=np.float64)
    return _scale_between(values, float(values.min()), float(values.max()), invert=invert)


def _scale_between(values: np.ndarray, low: float, high: float, *, invert: bool) -> np.ndarray:
    """The min-max arithmetic of :func:`scale_to_uint8`, element-wise, for given extremes.

    Shared by the whole-image path and the lookup-table path so that both round identically.
    """
    span = high - low
    if span > 0:
        scaled = (values - low) * (255.0 / span)
    else:
        scaled = np.zeros_like(values)
    if invert:
        scaled = 255.0 - scaled
    return np.rint(scaled).astype(np.uint8)


def equalize_histogram(image: np.ndarray) -> np.ndarray:
    """Global histogram equalisation of a uint8 image (the OpenCV ``equalizeHist`` mapping).

    ``lut[v] = round((cdf[v] - cdf_min) * 255 / (N - cdf_min))``; an image with a single grey
    level is returned unchanged.
    """
    if image.dtype != np.uint8:
        raise TypeError(f"equalize_histogram needs uint8, got {image.dtype}")
    return _equalization_lut(np.bincount(image.ravel(), minlength=256))[image]


def _equalization_lut(hist: np.ndarray) -> np.ndarray:
    """The uint8 -> uint8 equalisation table for a 256-bin histogram (identity for one level)."""
    cdf = np.cumsum(hist)
    cdf_min = int(cdf[np.flatnonzero(hist)[0]])
    total = int(cdf[-1])
    if total == cdf_min:
        return np.arange(256, dtype=np.uint8)
    lut = np.rint((cdf - cdf_min) * (255.0 / (total - cdf_min)))
    return np.clip(lut, 0, 255).astype(np.uint8)


def mimic_jpg_pixels(path: str | Path) -> np.ndarray:
    """The MIMIC-CXR-JPG conversion of one DICOM: uint8 (H, W), ready to save as JPEG q95.

    Steps (docs/data.md §3): decode; Modality LUT / rescale; invert once if MONOCHROME1 (a
    ``PresentationLUTShape INVERSE`` on a MONOCHROME1 image is the standard companion, not a second
    inversion); min-max scale to 0..255; global histogram equalisation.  No VOI windowing: the
    equalisation replaces it, as in the published conversion.
    """
    return mimic_jpg_from_image(read_dicom_image(path))


def mimic_jpg_from_image(image: CxrImage, *, lookup_table: bool = True) -> np.ndarray:
    """The conversion of :func:`mimic_jpg_pixels` for an already decoded image.

    Why two ways: every step is a function of the stored value alone, so for integer pixels the
    whole chain is evaluated once per stored level in ``[min, max]`` and applied with one gather
    (``lookup_table=True``: two compiled passes over the pixels instead of several full-image
    float64 passes).  Both ways run the same element-wise arithmetic
    (:meth:`CxrImage.modality_values`, :func:`_scale_between`, :func:`_equalization_lut`), so their
    outputs are identical; float pixels or ranges wider than :data:`MAX_LOOKUP_LEVELS` take the
    whole-image way.
    """
    pixels = image.pixels
    if lookup_table and pixels.dtype.kind in "iu" and pixels.size:
        low, high = int(pixels.min()), int(pixels.max())
        if high - low < MAX_LOOKUP_LEVELS:
            return _convert_by_lookup(image, low, high)
    scaled = scale_to_uint8(image.modality_values(), invert=image.is_inverted)
    return equalize_histogram(scaled)


def _convert_by_lookup(image: CxrImage, low: int, high: int) -> np.ndarray:
    """Evaluate the conversion per stored level ``low..high`` and gather it (exact, see above)."""
    from gated_symile.records.level_kernels import gather_levels, level_histogram

    pixels = image.pixels
    flat = pixels.reshape(-1)
    if not flat.dtype.isnative:  # big-endian files decode to '>u2' arrays; numba wants native
        flat = flat.astype(flat.dtype.newbyteorder("="))
    counts = level_histogram(flat, low, high - low + 1)
    levels = np.arange(low, high + 1, dtype=np.int64).astype(pixels.dtype)
    values = image.modality_values(levels)
    present = values[counts > 0]
    grey = _scale_between(
        values, float(present.min()), float(present.max()), invert=image.is_inverted
    )
    grey_hist = np.zeros(256, dtype=np.int64)
    np.add.at(grey_hist, grey, counts)
    table = _equalization_lut(grey_hist)[grey]
    return gather_levels(flat, low, table).reshape(pixels.shape)
