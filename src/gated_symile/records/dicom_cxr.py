"""DICOM chest radiograph reader and the MIMIC-CXR-JPG pixel conversion (docs/data.md §3).

Why a wrapper around ``pydicom``: the cohort must turn every way a DICOM can be unusable (RGB,
multi-frame, no pixels, truncated, undecodable transfer syntax, not DICOM at all) into one typed
:class:`~gated_symile.errors.RecordError` naming the file, instead of a decoder traceback deep
inside a pipeline run.  Decoding is done exactly once, and uncompressed little-endian pixel data is
read as a view of the file's bytes when that equals ``ds.pixel_array`` (see :func:`_native_view`),
so the reader costs less than the bare pydicom call.

The MIMIC-CXR-JPG conversion of the decoded image lives in :mod:`gated_symile.records.mimic_jpg`.
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
    "read_dicom_image",
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

    ``pixels`` is the raw decoded array (stored values, dtype as decoded, 2-D; read-only when it is
    a view of uncompressed pixel data); use
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


_NATIVE_DTYPES = {(8, 0): "u1", (8, 1): "i1", (16, 0): "<u2", (16, 1): "<i2"}
"""(BitsAllocated, PixelRepresentation) -> little-endian dtype of the uncompressed layouts read as
views; others (1, 32 or 64 bits) go through ``pixel_array``."""


def _native_view(ds, syntax) -> np.ndarray | None:
    """A read-only view of uncompressed little-endian pixel data, when it equals ``pixel_array``.

    Why: for native data ``pixel_array`` copies the buffer and clears the unused high bits with two
    full-image shifts (PS3.5 8.1.1), which is most of its time (about 11 of 12 ms on a 3056x2544
    radiograph).  When no value has a bit set above ``BitsStored`` (signed: every value already
    sign-extended), those steps change nothing, so the view is the same array.  Otherwise, and
    for any unusual layout or a pixel-data length other than expected (+1 padding byte), return
    ``None`` and let ``pixel_array`` decode and report the problem.
    """
    if syntax.is_encapsulated or not syntax.is_little_endian:
        return None
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        allocated = int(ds.BitsAllocated)
        stored = int(ds.get("BitsStored", allocated) or allocated)
        signed = int(ds.get("PixelRepresentation", 0) or 0)
        data = ds.PixelData
    except (AttributeError, TypeError, ValueError):
        return None
    dtype = _NATIVE_DTYPES.get((allocated, signed))
    if dtype is None or rows <= 0 or columns <= 0 or not 0 < stored <= allocated:
        return None
    expected = rows * columns * (allocated // 8)
    if not isinstance(data, bytes) or not (
        len(data) == expected or (expected % 2 and len(data) == expected + 1)
    ):
        return None
    view = np.frombuffer(data, dtype=dtype, count=rows * columns).reshape(rows, columns)
    if stored < allocated:
        low, high = (-(1 << (stored - 1)), (1 << (stored - 1)) - 1) if signed else (0, (1 << stored) - 1)
        if view.min() < low or view.max() > high:
            return None
    return view


def _decode(path: Path, ds, syntax) -> np.ndarray:
    """Decode once; the transfer syntax was already checked to have a decoder."""
    view = _native_view(ds, syntax)
    if view is not None:
        return view
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
