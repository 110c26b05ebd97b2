"""Parsing a DICOM file and checking it is a complete image before anything trusts its tags.

Why: ``pydicom.dcmread`` stops silently where a file ends.  A radiograph truncated right after its
file meta header reads as an empty dataset -- every tag blank, so a cohort would exclude it for
"no AP/PA view" instead of "unreadable image" -- and a file cut inside an element keeps the
partial value (a few bytes of ``PixelData``, a cut UID) without a word.  Truncated encapsulated
pixel data disappears altogether.  :func:`open_dicom` therefore checks, right after parsing and
before any value is converted, that the dataset is not empty, that no element runs past the end
of the file, that there is pixel data and that the tags every image needs are present.  Both the
image reader (:mod:`gated_symile.records.dicom_cxr`) and the header-only reader
:func:`read_dicom_header` (the cohort's index of the DICOM release) go through it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from gated_symile.records.errors import MissingRecord, RecordError, UnreadableRecord

__all__ = [
    "CODE_SEQUENCES",
    "MIMIC_TAGS",
    "REQUIRED_IMAGE_TAGS",
    "check_complete_image",
    "dicom_tags",
    "header_length",
    "malformed_element",
    "open_dicom",
    "read_dicom_header",
    "read_dicom_header_and_bytes",
    "read_dicom_header_and_length",
    "read_dicom_header_with_pydicom",
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
"""Plain tags copied into a radiograph's tag dictionary (``None`` when absent)."""

CODE_SEQUENCES: tuple[str, ...] = (
    "ProcedureCodeSequence",
    "ViewCodeSequence",
    "PatientOrientationCodeSequence",
)
"""Sequences whose first item's ``CodeMeaning`` goes into the MIMIC metadata CSV."""

REQUIRED_IMAGE_TAGS: tuple[str, ...] = (
    "Rows",
    "Columns",
    "BitsAllocated",
    "PhotometricInterpretation",
)
"""Type 1 tags of every image pixel module (PS3.3 C.7.6.3) that decoding cannot do without."""

_PIXEL_DATA = 0x7FE00010
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, _PIXEL_DATA)
"""Float, double float and plain pixel data: where ``dcmread(stop_before_pixels=True)`` stops."""
_DEFLATED = "1.2.840.10008.1.2.1.99"
"""Deflated explicit VR little endian: element positions are offsets in the inflated stream."""


def open_dicom(path: str | Path, *, header_only: bool = False):
    """Parse a DICOM file and check it is a complete image; returns the pydicom dataset.

    ``header_only`` skips over large values (pixel data) instead of reading them; their presence
    and length are still checked.  Raises :class:`MissingRecord` or :class:`UnreadableRecord`
    (not DICOM, empty or truncated dataset, no pixel data, a required image tag missing).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise MissingRecord(path, "file does not exist")
    defer_size = 1024 if header_only else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a cut value warns; the checks below say why
            ds = pydicom.dcmread(path, defer_size=defer_size)
    except InvalidDicomError:
        ds = _read_forced(path, defer_size)
    except Exception as exc:  # pydicom raises many types for corrupt headers
        raise UnreadableRecord(path, f"cannot parse DICOM: {type(exc).__name__}: {exc}") from exc
    check_complete_image(path, ds)
    return ds


def _read_forced(path: Path, defer_size: int | None):
    """Read a file without the DICM preamble / file meta (old ACR-NEMA style) or reject it."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, defer_size=defer_size)
            n_elements = len(ds)
            recognisable = "PixelData" in ds or "SOPClassUID" in ds
    except Exception as exc:
        raise UnreadableRecord(path, f"not a DICOM file ({type(exc).__name__}: {exc})") from exc
    if n_elements == 0 or not recognisable:
        raise UnreadableRecord(
            path, "not a DICOM file (no 'DICM' preamble or file meta, no recognisable elements)"
        )
    return ds


def check_complete_image(path: Path, ds) -> None:
    """Raise :class:`UnreadableRecord` unless ``ds`` is a whole image (see the module docstring).

    Must run before any element is accessed: it reads the file positions pydicom keeps on the
    still unconverted elements.
    """
    if len(ds) == 0:
        raise UnreadableRecord(
            path, "no data elements after the file meta header (file truncated?)"
        )
    size = path.stat().st_size
    deflated = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "")) == _DEFLATED
    for tag in () if deflated else sorted(ds.keys()):
        element = ds.get_item(tag, keep_deferred=True)  # no read, no conversion
        end = _value_end(element)
        if end is not None and end > size:
            what = "pixel data" if element.tag == _PIXEL_DATA else f"element {element.tag}"
            raise UnreadableRecord(
                path,
                f"truncated {what}: the file ends at byte {size}, the value needs "
                f"{element.length} bytes from byte {element.value_tell}",
            )
    try:
        if "PixelData" not in ds:
            kind = ds.get("Modality") or ds.get("SOPClassUID", "unknown SOP class")
            raise UnreadableRecord(
                path,
                f"no PixelData element (not an image, or truncated before or inside its pixel "
                f"data; Modality {kind})",
            )
        missing = [name for name in REQUIRED_IMAGE_TAGS if ds.get(name) in (None, "")]
    except RecordError:
        raise
    except Exception as exc:  # a corrupt value of one of these tags
        raise malformed_element(path, exc) from exc
    if missing:
        raise UnreadableRecord(path, f"missing required image tag(s) {', '.join(missing)}")


def _value_end(element) -> int | None:
    """File offset just past a still raw element's value; ``None`` when unknown."""
    tell = getattr(element, "value_tell", None)
    if tell is None or getattr(element, "is_undefined_length", False):
        return None
    length = int(element.length)
    return None if length == 0xFFFFFFFF else int(tell) + length


def read_dicom_header(path: str | Path) -> dict[str, str | int | None]:
    """The tags of a complete DICOM image without decoding its pixels (:func:`dicom_tags`).

    For indexing a release: the same checks as the image reader, so an image that passes here
    is not rejected later for being empty or truncated.
    """
    return read_dicom_header_and_length(path)[0]


def read_dicom_header_and_length(path: str | Path) -> tuple[dict[str, str | int | None], int]:
    """:func:`read_dicom_header` and :func:`header_length` from one parse of the file
    (:func:`read_dicom_header_and_bytes`)."""
    tags, header, _ = read_dicom_header_and_bytes(path)
    return tags, len(header)


def read_dicom_header_and_bytes(
    path: str | Path,
) -> tuple[dict[str, str | int | None], bytes, os.stat_result]:
    """The tags, the header bytes before the pixel data (:func:`header_length` of them) and the
    file's stat, from one parse of the file.

    A plain file is parsed by :mod:`gated_symile.records.dicom_fast_header` (an order of magnitude
    faster), which has the header in memory from its one open of the file (an index hashes the
    header it read, for provenance); whatever it does not fully understand, every broken file
    included, goes to pydicom (:func:`read_dicom_header_with_pydicom`), which gives the same answer
    and words the errors, and the header is then read again.
    """
    from gated_symile.records.dicom_fast_header import read_header_fast

    fast = read_header_fast(path)
    if fast is not None:
        return fast
    tags, length = read_dicom_header_with_pydicom(path)
    with open(path, "rb") as handle:
        return tags, handle.read(length), os.fstat(handle.fileno())


def read_dicom_header_with_pydicom(path: str | Path) -> tuple[dict[str, str | int | None], int]:
    """:func:`read_dicom_header_and_length` through pydicom alone (the fast path's reference)."""
    path = Path(path)
    ds = open_dicom(path, header_only=True)
    length = header_length(path, ds)
    return dicom_tags(path, ds), length


def header_length(path: Path, ds) -> int:
    """How many bytes of the file precede the pixel data: the offset of the first top-level pixel
    data element, where ``pydicom.dcmread(stop_before_pixels=True)`` leaves the file (a deflated
    file is inflated whole, so there it is the file size).

    Why: the header is what an index of the release reads, so its hash is what provenance records.
    Needs the still raw elements of a dataset from :func:`open_dicom` (call before any access).
    """
    from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

    if str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "")) == _DEFLATED:
        return path.stat().st_size
    starts = []
    for tag in _PIXEL_TAGS:
        if tag in ds:
            element = ds.get_item(tag, keep_deferred=True)
            explicit_long = not element.is_implicit_VR and element.VR in EXPLICIT_VR_LENGTH_32
            starts.append(int(element.value_tell) - (12 if explicit_long else 8))
    if not starts:  # open_dicom has checked there is pixel data
        raise UnreadableRecord(path, "no PixelData element")
    return min(starts)


def dicom_tags(path: Path, ds) -> dict[str, str | int | None]:
    """:data:`MIMIC_TAGS` and ``<sequence>_CodeMeaning`` of :data:`CODE_SEQUENCES` (``None``: absent).

    Raises :class:`UnreadableRecord` when a value cannot be decoded.
    """
    try:
        tags: dict[str, str | int | None] = {name: _tag_value(ds, name) for name in MIMIC_TAGS}
        for sequence in CODE_SEQUENCES:
            tags[f"{sequence}_CodeMeaning"] = _code_meaning(ds, sequence)
    except Exception as exc:  # pydicom converts values lazily; corrupt ones raise assorted types
        raise malformed_element(path, exc) from exc
    return tags


def malformed_element(path: Path, exc: Exception) -> UnreadableRecord:
    """The error for a value pydicom cannot convert (it converts lazily, raising assorted types)."""
    return UnreadableRecord(path, f"malformed DICOM element: {type(exc).__name__}: {exc}")


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
