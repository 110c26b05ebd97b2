"""DICOM chest radiograph reader and the MIMIC-CXR-JPG pixel conversion (data.md section 3).

Why a wrapper around ``pydicom``: the cohort must turn every way a DICOM can be unusable (RGB,
multi-frame, no pixels, truncated, undecodable transfer syntax, not DICOM at all) into one typed
:class:`~gated_symile.errors.RecordError` naming the file, instead of a decoder traceback deep
inside a pipeline run.  Decoding is done exactly once (``ds.pixel_array``) so the reader costs no
more than the bare pydicom call.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gated_symile.records.errors import (
    MissingRecord,
    NotGrayscale,
    RecordError,
    UnreadableRecord,
    UnsupportedRecord,
)

__all__ = [
    "MIMIC_TAGS",
    "CxrImage",
    "equalize_histogram",
    "mimic_jpg_from_image",
    "mimic_jpg_pixels",
    "read_dicom_image",
    "scale_to_uint8",
]

MIMIC_TAGS: tuple[str, ...] = (
    "PatientID",
    "StudyDate",
    "StudyTime",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "ViewPosition",
    "PerformedProcedureStepDescription",
    "Rows",
    "Columns",
)
"""Plain tags copied into :attr:`CxrImage.tags` (``None`` when absent)."""

_CODE_SEQUENCES: tuple[str, ...] = (
    "ProcedureCodeSequence",
    "ViewCodeSequence",
    "PatientOrientationCodeSequence",
)
"""Sequences whose first item's ``CodeMeaning`` goes into the MIMIC metadata CSV."""

_GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")


@dataclass(frozen=True)
class CxrImage:
    """One decoded grayscale radiograph plus the tags the cohort needs.

    ``pixels`` is the raw decoded array (stored values, dtype as decoded, 2-D); use
    :meth:`modality_values` for rescaled values and :meth:`voi_values` for the windowed display
    values.  Keeping the raw array avoids a float copy when a caller only needs the tags or shape.
    """

    path: str
    pixels: np.ndarray
    photometric: str
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    transfer_syntax_uid: str
    transfer_syntax_name: str
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    presentation_lut_shape: str | None = None
    window_center: float | None = None
    window_width: float | None = None
    has_voi_lut: bool = False
    tags: dict[str, str | int | None] = field(default_factory=dict)
    dataset: object | None = field(default=None, repr=False, compare=False)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def is_inverted(self) -> bool:
        """True for MONOCHROME1: low values are bright (invert once for display)."""
        return self.photometric == "MONOCHROME1"

    def modality_values(self, stored: np.ndarray | None = None) -> np.ndarray:
        """Pixels after the Modality LUT / rescale slope and intercept, as float64.

        ``stored`` (default: :attr:`pixels`) lets the lookup-table conversion map just the distinct
        stored levels through exactly the same element-wise arithmetic as the whole image.
        """
        stored = self.pixels if stored is None else stored
        ds = self.dataset
        if ds is not None and "ModalityLUTSequence" in ds:
            from pydicom.pixels import apply_modality_lut

            return np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
        values = stored.astype(np.float64)
        if self.rescale_slope != 1.0:
            values *= self.rescale_slope
        if self.rescale_intercept != 0.0:
            values += self.rescale_intercept
        return values

    def voi_values(self) -> np.ndarray:
        """Modality values with the VOI LUT or window applied (pydicom ``apply_voi_lut``).

        Falls back to the modality values when the file carries neither a VOI LUT nor a window.
        """
        values = self.modality_values()
        if self.dataset is None or not (self.has_voi_lut or self.window_width):
            return values
        from pydicom.pixels import apply_voi_lut

        if self.has_voi_lut:  # a LUT is indexed by integer modality values
            values = np.rint(values).astype(np.int64)
        return np.asarray(apply_voi_lut(values, self.dataset), dtype=np.float64)


def read_dicom_image(path: str | Path) -> CxrImage:
    """Read and decode a single-frame grayscale DICOM image.

    Raises :class:`MissingRecord` (no file), :class:`UnreadableRecord` (not DICOM, no pixel data,
    truncated pixel data, decoder failure), :class:`NotGrayscale` (RGB / YBR, multi-frame) or
    :class:`UnsupportedRecord` (transfer syntax without an installed decoder).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise MissingRecord(path, "file does not exist")
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        ds = _read_forced(path)
    except Exception as exc:  # pydicom raises many types for corrupt headers
        raise UnreadableRecord(path, f"cannot parse DICOM: {type(exc).__name__}: {exc}") from exc

    _check_image_attributes(path, ds)
    syntax = _transfer_syntax(path, ds)
    pixels = _decode(path, ds, syntax)
    return _build_image(path, ds, syntax, pixels)


def _read_forced(path: Path):
    """Read a file without the DICM preamble / file meta (old ACR-NEMA style) or reject it."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
            n_elements = len(ds)
    except Exception as exc:
        raise UnreadableRecord(path, f"not a DICOM file ({type(exc).__name__}: {exc})") from exc
    if n_elements == 0 or ("PixelData" not in ds and "SOPClassUID" not in ds):
        raise UnreadableRecord(
            path, "not a DICOM file (no 'DICM' preamble or file meta, no recognisable elements)"
        )
    return ds


def _check_image_attributes(path: Path, ds) -> None:
    if "PixelData" not in ds:
        kind = ds.get("Modality") or ds.get("SOPClassUID", "unknown SOP class")
        raise UnreadableRecord(path, f"no PixelData element (not an image; Modality {kind})")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "") or "")
    if samples != 1 or photometric not in _GRAYSCALE:
        raise NotGrayscale(
            path,
            f"not grayscale (PhotometricInterpretation {photometric or 'missing'}, "
            f"SamplesPerPixel {samples})",
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise NotGrayscale(path, f"multi-frame image ({frames} frames), expected one")


def _transfer_syntax(path: Path, ds):
    """The transfer syntax UID; files without file meta get the one pydicom detected on read."""
    from pydicom.uid import UID

    uid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if uid is None:
        implicit = ds.original_encoding[0] if ds.original_encoding else None
        little = ds.original_encoding[1] if ds.original_encoding else None
        if implicit is None or little is None:
            raise UnreadableRecord(path, "no file meta and the transfer syntax cannot be inferred")
        uid = UID(
            ("1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1")
            if little
            else "1.2.840.10008.1.2.2"
        )
        ds.file_meta.TransferSyntaxUID = uid
    uid = UID(str(uid))
    if uid.is_compressed:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(uid)
        except NotImplementedError:
            decoder = None
        if decoder is None or not decoder.is_available:
            options = "; ".join(decoder.missing_dependencies) if decoder is not None else ""
            raise UnsupportedRecord(
                path,
                f"unsupported transfer syntax {uid.name} ({uid}): install a decoder plugin"
                + (f" ({options})" if options else " (none is known for it)"),
            )
    return uid


def _decode(path: Path, ds, syntax) -> np.ndarray:
    """Decode once; the transfer syntax was already checked to have a decoder."""
    try:
        pixels = ds.pixel_array
    except ValueError as exc:
        text = str(exc).split(" - ")[0]
        if "less than expected" in text or "truncat" in text.lower():
            raise UnreadableRecord(path, f"truncated pixel data ({text})") from exc
        raise UnreadableRecord(
            path, f"pixel data cannot be decoded ({syntax.name}): {text}"
        ) from exc
    except Exception as exc:  # third-party decoders raise arbitrary types
        raise UnreadableRecord(
            path, f"pixel data cannot be decoded ({syntax.name}): {type(exc).__name__}: {exc}"
        ) from exc
    if pixels.ndim != 2:
        raise NotGrayscale(path, f"decoded pixel array has shape {pixels.shape}, expected 2-D")
    return pixels


def _float_or_none(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        if (
            isinstance(value, (list, tuple))
            or hasattr(value, "__len__")
            and not isinstance(value, str)
        ):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _tag_value(ds, name: str):
    value = ds.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return int(value)
    return str(value)


def _code_meaning(ds, sequence: str) -> str | None:
    items = ds.get(sequence)
    if not items:
        return None
    meaning = items[0].get("CodeMeaning")
    return str(meaning) if meaning else None


def _build_image(path: Path, ds, syntax, pixels: np.ndarray) -> CxrImage:
    tags: dict[str, str | int | None] = {name: _tag_value(ds, name) for name in MIMIC_TAGS}
    for sequence in _CODE_SEQUENCES:
        tags[f"{sequence}_CodeMeaning"] = _code_meaning(ds, sequence)
    bits_allocated = int(ds.get("BitsAllocated", pixels.dtype.itemsize * 8) or 0)
    return CxrImage(
        path=str(path),
        pixels=pixels,
        photometric=str(ds.PhotometricInterpretation),
        bits_allocated=bits_allocated,
        bits_stored=int(ds.get("BitsStored", bits_allocated) or bits_allocated),
        pixel_representation=int(ds.get("PixelRepresentation", 0) or 0),
        transfer_syntax_uid=str(syntax),
        transfer_syntax_name=syntax.name,
        rescale_slope=_float_or_none(ds.get("RescaleSlope")) or 1.0,
        rescale_intercept=_float_or_none(ds.get("RescaleIntercept")) or 0.0,
        presentation_lut_shape=_tag_value(ds, "PresentationLUTShape"),
        window_center=_float_or_none(ds.get("WindowCenter")),
        window_width=_float_or_none(ds.get("WindowWidth")),
        has_voi_lut="VOILUTSequence" in ds,
        tags=tags,
        dataset=ds,
    )


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


MAX_LOOKUP_LEVELS = 1 << 20
"""Widest stored-value range converted through a lookup table; wider (or float) data goes the
whole-image float way.  Radiographs store 10-16 bits, so this only stops pathological files."""

_CHUNK = 1 << 18
"""Pixels per block in the lookup-table passes: the block's intp indices stay in cache."""


def mimic_jpg_pixels(path: str | Path) -> np.ndarray:
    """The MIMIC-CXR-JPG conversion of one DICOM: uint8 (H, W), ready to save as JPEG q95.

    Steps (data.md section 3): decode; Modality LUT / rescale; invert once if MONOCHROME1 (a
    ``PresentationLUTShape INVERSE`` on a MONOCHROME1 image is the standard companion, not a second
    inversion); min-max scale to 0..255; global histogram equalisation.  No VOI windowing: the
    equalisation replaces it, as in the published conversion.
    """
    return mimic_jpg_from_image(read_dicom_image(path))


def mimic_jpg_from_image(image: CxrImage, *, lookup_table: bool = True) -> np.ndarray:
    """The conversion of :func:`mimic_jpg_pixels` for an already decoded image.

    Why two ways: every step is a function of the stored value alone, so for integer pixels the
    whole chain is evaluated once per stored level in ``[min, max]`` and applied with one gather
    (``lookup_table=True``, several times faster on 3000x2500 radiographs than full-image float64
    passes).  Both ways run the same element-wise arithmetic (:meth:`CxrImage.modality_values`,
    :func:`_scale_between`, :func:`_equalization_lut`), so their outputs are identical; float
    pixels or ranges wider than :data:`MAX_LOOKUP_LEVELS` take the whole-image way.
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
    pixels = image.pixels
    flat = pixels.reshape(-1)
    counts = np.zeros(high - low + 1, dtype=np.int64)
    for _, offsets in _offset_blocks(flat, low):
        counts += np.bincount(offsets, minlength=counts.size)
    levels = np.arange(low, high + 1, dtype=np.int64).astype(pixels.dtype)
    values = image.modality_values(levels)
    present = values[counts > 0]
    grey = _scale_between(
        values, float(present.min()), float(present.max()), invert=image.is_inverted
    )
    grey_hist = np.zeros(256, dtype=np.int64)
    np.add.at(grey_hist, grey, counts)
    lut = _equalization_lut(grey_hist)[grey]
    out = np.empty(flat.size, dtype=np.uint8)
    for start, offsets in _offset_blocks(flat, low):
        np.take(lut, offsets, out=out[start : start + offsets.size])
    return out.reshape(pixels.shape)


def _offset_blocks(flat: np.ndarray, low: int):
    """Yield ``(start, flat[start:start+n] - low)`` as intp blocks that fit in cache (reused buffer)."""
    buffer = np.empty(min(_CHUNK, flat.size), dtype=np.intp)
    for start in range(0, flat.size, _CHUNK):
        block = buffer[: min(_CHUNK, flat.size - start)]
        block[...] = flat[start : start + block.size]
        if low:
            block -= low
        yield start, block
