"""A small DICOM Part 10 header parser: the fast path of ``read_dicom_header_and_length``.

Why: indexing the MIMIC-CXR DICOM release reads the header of every image of the admitted
subjects.  pydicom spends about 0.8 ms a file building its dataset, against some 20 us to read the
header bytes, so at scale the index is mostly pydicom overhead.  This module walks the elements
of a plain file itself and picks out the few values :func:`dicom_header.dicom_tags` reports.

Contract: :func:`read_header_fast` either returns *exactly* what the pydicom path of
:func:`gated_symile.records.dicom_header.read_dicom_header_and_length` returns for the file, or
``None`` ("not handled"), and the caller then runs the pydicom path, which also owns every error
message.  So the fast path only ever *accepts* a file, and only one it fully understands:

* the 128-byte preamble and ``DICM``; a file meta group 0002 in explicit VR little endian that
  starts with its group length (UL); transfer syntax explicit or implicit VR little endian (big
  endian, deflate and the encapsulated syntaxes go to pydicom);
* every dataset (top level and sequence items) a run of elements in strictly ascending tag order
  (pydicom keeps the last of duplicate tags), with a VR pydicom knows (explicit), even defined
  lengths, no group 0000-0007 or FFFE element at the top level, no item or delimiter out of place;
  undefined lengths only for sequences (in implicit VR only for the code sequences read here,
  whose VR is known), walked item by item;
* pixel data (7FE0,0010) as the first pixel element, OB/OW (explicit), defined length, its value
  ending exactly at the end of the file: then nothing is truncated and nothing follows it, which
  is what ``check_complete_image`` verifies;
* every value reported decodes the same under any character set accepted here (none, ISO_IR 100,
  ISO_IR 192): printable ASCII without a backslash (pydicom would split it into a multi-value),
  with the trailing spaces and NULs pydicom strips; numbers (US) exactly two bytes; each value
  with the VR the data dictionary gives its tag; the image tags ``check_complete_image`` requires
  (Rows, Columns, BitsAllocated, PhotometricInterpretation) present and not empty.

Anything else -- and any doubt -- returns ``None``.  No pydicom import: a worker that never falls
back never pays for it.
"""

from __future__ import annotations

import os
from struct import Struct

from gated_symile.records.dicom_header import CODE_SEQUENCES, MIMIC_TAGS, REQUIRED_IMAGE_TAGS

__all__ = ["FIRST_READ", "read_header_fast"]

FIRST_READ = 8192
"""Bytes read first; most headers fit, a longer one is read again in full (see _Short)."""

_EXPLICIT_LE = b"1.2.840.10008.1.2.1"
_IMPLICIT_LE = b"1.2.840.10008.1.2"
_CHARSETS = frozenset({b"", b"ISO_IR 100", b"ISO_IR 192"})
"""Specific Character Sets under which an ASCII value decodes as ASCII in pydicom."""

LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
"""Explicit VRs with a 2-byte reserved field and a 4-byte length (pydicom EXPLICIT_VR_LENGTH_32)."""
SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split())
"""The other explicit VRs pydicom reads (with LONG_VRS, its ENCODED_VR less the ambiguous ones)."""
_HEAD_SIZE = {**dict.fromkeys(LONG_VRS, 12), **dict.fromkeys(SHORT_VRS, 8)}
"""Bytes of an explicit element's tag, VR and length: the value starts this far in."""

PIXEL_DATA = 0x7FE00010
_FIRST_PIXEL_TAG = 0x7FE00008  # float pixel data; 7FE0,0009 is double float pixel data
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_NO_END = 1 << 62
_CHARSET = 0x00080005
_CHARSET_NAME = "SpecificCharacterSet"
_TEXT_VRS = frozenset({b"CS", b"DA", b"LO", b"TM", b"UI"})
_TRANSFER_SYNTAX = 0x00020010

_Wanted = dict[int, tuple[str, bytes]]
TOP_LEVEL_TAGS: _Wanted = {
    _CHARSET: (_CHARSET_NAME, b"CS"),
    0x00080016: ("SOPClassUID", b"UI"),
    0x00080018: ("SOPInstanceUID", b"UI"),
    0x00080020: ("StudyDate", b"DA"),
    0x00080030: ("StudyTime", b"TM"),
    0x00080060: ("Modality", b"CS"),
    0x00081032: ("ProcedureCodeSequence", b"SQ"),
    0x00100020: ("PatientID", b"LO"),
    0x00185101: ("ViewPosition", b"CS"),
    0x0020000D: ("StudyInstanceUID", b"UI"),
    0x0020000E: ("SeriesInstanceUID", b"UI"),
    0x00280004: ("PhotometricInterpretation", b"CS"),
    0x00280010: ("Rows", b"US"),
    0x00280011: ("Columns", b"US"),
    0x00280100: ("BitsAllocated", b"US"),
    0x00400254: ("PerformedProcedureStepDescription", b"LO"),
    0x00540220: ("ViewCodeSequence", b"SQ"),
    0x00540410: ("PatientOrientationCodeSequence", b"SQ"),
}
"""The top-level elements whose values the header reader reports or checks, with their VR
(names as in the pydicom data dictionary; tests/test_dicom_header_fast.py checks it)."""
_CHARSET_ONLY: _Wanted = {_CHARSET: TOP_LEVEL_TAGS[_CHARSET]}
_FIRST_ITEM: dict[str | None, _Wanted] = {
    name: {**_CHARSET_ONLY, 0x00080104: (f"{name}_CodeMeaning", b"LO")} for name in CODE_SEQUENCES
}
"""What to read in the first item of each code sequence: its CodeMeaning (LO)."""

_TAG_HEAD = Struct("<HHL")  # group, element, 4-byte length (implicit VR, items, delimiters)
_EXPLICIT_HEAD = Struct("<HH2sHL")  # group, element, VR, 2-byte length, 4-byte length if long


class _NotHandled(Exception):
    """Something the fast path does not fully understand: the pydicom path decides."""


class _Short(Exception):
    """The header runs past the bytes read so far; ``needed`` is how many are wanted."""

    def __init__(self, needed: int) -> None:
        super().__init__(needed)
        self.needed = needed


FastHeader = tuple[dict[str, str | int | None], bytes, os.stat_result]
"""The tags, the header (the file's bytes before its pixel data element) and the file's stat."""


def read_header_fast(path: str | os.PathLike) -> FastHeader | None:
    """The tags and header as the pydicom path gives them, from one open of the file; ``None``:
    not handled here.

    Reads the first :data:`FIRST_READ` bytes, and the whole header when it is longer.  Never
    raises for a bad file (``OSError`` included): the pydicom path then names the problem.
    """
    try:
        with open(path, "rb", buffering=0) as handle:
            stat = os.fstat(handle.fileno())
            buf = handle.read(FIRST_READ)
            while True:
                try:
                    parser = _Parser(buf, stat.st_size)
                    tags = _report(parser.parse())
                    return tags, buf[: parser.header_length], stat
                except _Short as short:
                    if short.needed > stat.st_size or len(buf) >= stat.st_size:
                        return None  # truncated: the pydicom path words the error
                    wanted = min(stat.st_size, max(short.needed + FIRST_READ, 2 * len(buf)))
                    more = handle.read(wanted - len(buf))
                    if not more:
                        return None  # the file shrank under us
                    buf += more
    except (OSError, ValueError, _NotHandled):  # ValueError: a value that is not ASCII
        return None


class _Parser:
    """One pass over the bytes of one file (see the module docstring for what it accepts).

    Written for speed: the element loop of :meth:`_dataset` costs one ``unpack_from`` and a few
    comparisons per element and only notes where a wanted value lies; :meth:`_decode` converts
    the noted values afterwards.
    """

    def __init__(self, buf: bytes, size: int) -> None:
        self.buf = buf
        self.size = size
        self.implicit = False
        self.header_length = -1
        self.found: list[tuple[str, bytes, bytes | None, int, int]] = []
        """(name, VR expected, VR found or None if implicit, value position, length)"""

    def parse(self) -> dict[str, str | int | None]:
        """The values found, after walking the whole file up to its pixel data."""
        pos = self._file_meta()
        buf = self._need(pos, 8)
        if self.implicit and 0x40 < buf[pos + 4] < 0x5B and 0x40 < buf[pos + 5] < 0x5B:
            raise _NotHandled  # pydicom would take the first element for explicit VR
        self._dataset(pos, None, TOP_LEVEL_TAGS, top=True)
        if self.header_length < 0:
            raise _NotHandled
        return self._decode()

    def _need(self, pos: int, n: int) -> bytes:
        """The buffer, after checking it holds bytes ``pos .. pos + n``."""
        if pos + n > len(self.buf):
            raise _Short(pos + n)
        return self.buf

    def _file_meta(self) -> int:
        """Check the preamble and file meta group; set the encoding; return the dataset start."""
        buf = self._need(0, 144)
        if buf[128:140] != b"DICM\x02\x00\x00\x00UL\x04\x00":
            raise _NotHandled  # no DICM, or the meta does not start with its group length (UL)
        pos, last, syntax = 132, -1, None
        while True:
            head_bytes = self._need(pos, 12)
            group, element, vr, length, long_length = _EXPLICIT_HEAD.unpack_from(head_bytes, pos)
            tag, head = group << 16 | element, _HEAD_SIZE.get(vr)
            if group != 2:
                break
            length = long_length if head == 12 else length
            if tag <= last or head is None or length == _UNDEFINED:
                raise _NotHandled
            last, pos = tag, pos + head
            if tag == _TRANSFER_SYNTAX:
                syntax = self._need(pos, length)[pos : pos + length].rstrip(b"\0 ")
            pos += length
        if syntax not in (_EXPLICIT_LE, _IMPLICIT_LE):
            raise _NotHandled
        self.implicit = syntax == _IMPLICIT_LE
        return pos

    def _dataset(self, pos: int, end: int | None, wanted: _Wanted, *, top: bool = False) -> int:
        """Walk one dataset from ``pos``: up to ``end``, to its item delimiter (``end`` None in
        an item), or to the pixel data (``top``).  Notes the ``wanted`` elements in ``found``;
        returns the position after the dataset."""
        buf, implicit, found, head_size = self.buf, self.implicit, self.found, _HEAD_SIZE
        unpack = _TAG_HEAD.unpack_from if implicit else _EXPLICIT_HEAD.unpack_from
        # tags ascend; from group 0008 at the top level, which the first pixel tag ends; in an
        # item a tag of group FFFE can only be the item's delimiter
        last, high = (0x0007FFFF, _FIRST_PIXEL_TAG) if top else (-1, _ITEM)
        limit, vr, head = _NO_END if end is None else end, None, 8
        while pos < limit:
            if pos + 12 > len(buf):
                raise _Short(pos + 12)
            if implicit:
                group, element, length = unpack(buf, pos)
            else:
                group, element, vr, length, long_length = unpack(buf, pos)
            tag = group << 16 | element
            if tag <= last:
                raise _NotHandled  # out of order or repeated: pydicom keeps the last
            if tag >= high:
                return self._dataset_end(pos, tag, top, end)
            last = tag
            if not implicit:
                head = head_size.get(vr)
                if head is None:
                    raise _NotHandled
                if head == 12:
                    length = long_length
            if length & 1:  # odd, or undefined (0xFFFFFFFF)
                pos = self._undefined(pos + head, length, vr, wanted.get(tag))
                continue
            if tag in wanted:
                name, expected = wanted[tag]
                found.append((name, expected, vr, pos + head, length))
            pos += head + length
        if pos != end:
            raise _NotHandled  # the last element runs past its item or sequence
        return pos

    def _dataset_end(self, pos: int, tag: int, top: bool, end: int | None) -> int:
        """The pixel data that ends the top level, or the delimiter of an undefined-length item."""
        if top:
            self._pixel_data(pos, tag)
            return self.size
        length = _TAG_HEAD.unpack_from(self.buf, pos)[2]
        if tag != _ITEM_END or end is not None or length != 0:
            raise _NotHandled
        return pos + 8

    def _undefined(
        self, value_pos: int, length: int, vr: bytes | None, wanted: tuple[str, bytes] | None
    ) -> int:
        """Walk an undefined-length sequence (anything else undefined, or odd, is not handled):
        explicit VR SQ, or in implicit VR one of the code sequences, whose VR is known."""
        name = wanted[0] if wanted is not None else None
        if length != _UNDEFINED or (vr if vr is not None else wanted and wanted[1]) != b"SQ":
            raise _NotHandled
        return self._sequence(value_pos, None, name)

    def _sequence(self, pos: int, end: int | None, name: str | None) -> int:
        """Walk the items of a sequence; for a code sequence (``name``) note its first item's
        CodeMeaning.  Returns the position after the sequence."""
        wanted = _FIRST_ITEM.get(name, _CHARSET_ONLY)
        limit = _NO_END if end is None else end
        while pos < limit:
            group, element, length = _TAG_HEAD.unpack_from(self._need(pos, 8), pos)
            tag, value_pos = group << 16 | element, pos + 8
            if tag == _SEQUENCE_END and end is None:
                if length != 0:
                    raise _NotHandled
                return value_pos
            if tag != _ITEM or length & 1 and length != _UNDEFINED:
                raise _NotHandled
            item_end = None if length == _UNDEFINED else value_pos + length
            pos = self._dataset(value_pos, item_end, wanted)
            wanted = _CHARSET_ONLY  # pydicom reports the first item's CodeMeaning
        if pos != end:
            raise _NotHandled
        return pos

    def _decode(self) -> dict[str, str | int | None]:
        """Convert the noted values as pydicom would (see the module docstring); walks the
        defined-length code sequences on the way, which note more values.

        Every noted value lies inside ``buf``: the walk went on to read an element header after
        each of them (the pixel data's, at least).
        """
        buf, found, values = self.buf, self.found, {}
        index = 0
        while index < len(found):  # grows while a sequence is walked
            name, expected, vr, pos, length = found[index]
            index += 1
            if vr != expected and vr is not None:
                raise _NotHandled  # an unusual VR: pydicom's conversion may differ
            if expected in _TEXT_VRS:
                text = buf[pos : pos + length].rstrip(b" \0")
                value = text.decode("ascii")  # UnicodeDecodeError: not handled
                if not value.isprintable() or "\\" in value:
                    raise _NotHandled  # control bytes, or a multi-value (backslash)
                if name == _CHARSET_NAME and text not in _CHARSETS:
                    raise _NotHandled
                values[name] = value or None
            elif expected == b"US":
                if length != 2:
                    raise _NotHandled
                values[name] = buf[pos] | buf[pos + 1] << 8
            else:
                self._sequence(pos, pos + length, name)
        return values

    def _pixel_data(self, pos: int, tag: int) -> None:
        """Accept only plain pixel data whose value ends exactly at the end of the file."""
        if tag != PIXEL_DATA:
            raise _NotHandled
        if self.implicit:
            length, value_pos = _TAG_HEAD.unpack_from(self.buf, pos)[2], pos + 8
        elif self.buf[pos + 4 : pos + 8] in (b"OB\0\0", b"OW\0\0"):
            length, value_pos = _TAG_HEAD.unpack_from(self.buf, pos + 4)[2], pos + 12
        else:
            raise _NotHandled
        if length == _UNDEFINED or length & 1 or value_pos + length != self.size:
            raise _NotHandled
        self.header_length = pos


def _report(values: dict[str, str | int | None]) -> dict[str, str | int | None]:
    """The tags as :func:`dicom_header.dicom_tags` orders them; ``None`` where absent.

    Refuses (not handled) a file missing a required image tag: the pydicom path words that error.
    """
    if any(values.get(name) in (None, "") for name in REQUIRED_IMAGE_TAGS):
        raise _NotHandled
    tags = {name: values.get(name) for name in MIMIC_TAGS}
    for sequence in CODE_SEQUENCES:
        tags[f"{sequence}_CodeMeaning"] = values.get(f"{sequence}_CodeMeaning")
    return tags
