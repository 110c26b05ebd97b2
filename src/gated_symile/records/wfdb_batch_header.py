"""WFDB headers of the common MIMIC-IV-ECG shape, recognised with one regex and a cached layout.

Why: parsing a header field by field (:func:`~gated_symile.records.wfdb_header.parse_plain_header`)
and checking it (:func:`~gated_symile.records.wfdb_ecg.check_header`) costs more per record than
reading the record's files.  A release repeats a handful of header *layouts* -- everything but the
record name, base time and date, file name, initial values and checksums -- so the checks are
made once per layout and cached.  Every MIMIC-IV-ECG header has this shape::

    40689238 12 500 5000 08:44:00 23/07/2180
    40689238.dat 16 200.0(0)/mV 16 0 -31 9616 0 I        (one line per signal)
    # <subject_id>: 10000032                             (comments, at the end)

A header that is not exactly this shape (other whitespace, blank lines, a missing field, no base
date, comments between the signal lines, non-ASCII bytes ...), whose layout fails a check, or whose
base time or date is invalid gives ``None``: the caller reads that record with the per-record
reader, which gives its exact result or error.

Why the verdict is the per-record one: the shape is a subset of the plain grammar.  Every signal
line has all nine fields, one per token, separated by single spaces; in the grammar's signal-line
regex no field but the last (the description) can hold a space and each field is optional only
together with all later ones, so the per-record parser reads every field from its own token, and
the tokens the layout is made of (format, gain(baseline)/units, adc_res, adc_zero, block size,
name) give the same values for every header that has them.  The per-record tokens (file name,
initial value, checksum) are checked against the grammar here, by the shape regex.  The layout's
header checks are the per-record ones (:func:`~gated_symile.records.wfdb_ecg.check_header`), made
on the first header with that layout.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np

from gated_symile.records.errors import RecordError
from gated_symile.records.wfdb_ecg import check_header, is_plain_format16, stored_to_mv
from gated_symile.records.wfdb_header import parse_plain_header, valid_base_time_and_date
from gated_symile.records.wfdb_integrity import signal_file_bytes

__all__ = ["CommonHeader", "HeaderLayout", "parse_common_header"]

_RECORD_START = rb"[-\w]+ \d+ "  # record name, number of signals
_BASE_TIME_AND_DATE = rb" (\d\d:\d\d:\d\d) (\d\d/\d\d/\d{4})\n"
_FILE_NAME = rb"(?=[-\w.~])~?[-\w]*\.?\w*"  # not empty
_COMMENTS = rb"(?:#[ -~]*\n)*"
_COMMON_SHAPE = re.compile(
    _RECORD_START + rb"(\d+) (\d+)" + _BASE_TIME_AND_DATE  # record line: ... fs, length ...
    + rb"((?:" + _FILE_NAME  # signal lines: file name,
    + rb" [!-~]+ [!-~]+ [!-~]+ [!-~]+"  # format, gain(baseline)/units, adc_res, adc_zero,
    rb" -?\d+ -?\d+ [!-~]+ [!-~]+\n)+)"  # initial value, checksum, block size, name
    + _COMMENTS,
    re.ASCII,
)  # fmt: skip
_FIELDS = 9
"""Tokens per signal line (in the order of the comments above)."""
_LAYOUT_FIELDS = (1, 2, 3, 4, 7, 8)
_CHECKSUM_FIELD = 6
_MAX_CACHED_LAYOUTS = 1024


@dataclass(frozen=True, eq=False)
class HeaderLayout:
    """What every header of one layout shares: one plain format-16 file of ``n_samples`` x
    ``n_leads`` that passed the header checks; lead order and calibration in *canonical* order
    (``gain[i]`` is the gain of canonical lead ``i``), ready to convert stored rows to mV."""

    n_samples: int
    n_leads: int
    file_bytes: int
    order: np.ndarray
    gain: np.ndarray
    baseline: np.ndarray
    unit_scale: np.ndarray
    to_mv: Callable[[np.ndarray], np.ndarray]  # the per-record conversion of stored rows to mV


class CommonHeader(NamedTuple):
    """One common-shape header: its layout, the signal file name(s) as the header lists them
    (one per signal), and the signals' checksums (as written, source order).  A named tuple:
    made per record, at a fraction of a frozen dataclass's cost."""

    layout: HeaderLayout
    file_name: tuple[str, ...]
    checksum: list[bytes]


_layouts: dict[tuple, HeaderLayout | None] = {}
_known: dict[tuple[float, int], list[tuple[re.Pattern[bytes], HeaderLayout]]] = {}
"""Per (expected_fs, expected_samples): regexes of the layouts seen last (latest first)."""
_MAX_KNOWN_LAYOUTS = 4


def parse_common_header(
    content: bytes, *, expected_fs: float, expected_samples: int
) -> CommonHeader | None:
    """``content`` of a ``.hea`` file as a :class:`CommonHeader` when it has the common shape and
    a layout that passes the header checks for ``expected_fs`` / ``expected_samples``; else None.

    A header of a recently seen layout is matched by that layout's own regex (about a third of the
    cost of the shape regex, and no tokenising); any other goes through the shape regex."""
    known = _known.setdefault((expected_fs, expected_samples), [])
    for position, (pattern, layout) in enumerate(known):
        match = pattern.fullmatch(content)
        if match is not None:
            if position:
                known.insert(0, known.pop(position))
            base_time, base_date, file_name, *checksum = match.groups()
            if not valid_base_time_and_date(base_time.decode(), base_date.decode()):
                return None
            return CommonHeader(layout, (file_name.decode(),) * len(checksum), checksum)
    return _parse_any_layout(content, expected_fs, expected_samples, known)


def _parse_any_layout(
    content: bytes,
    expected_fs: float,
    expected_samples: int,
    known: list[tuple[re.Pattern[bytes], HeaderLayout]],
) -> CommonHeader | None:
    """:func:`parse_common_header` by the shape regex; a layout that passes its checks is added
    to ``known`` (its layout regex) for the headers that follow."""
    match = _COMMON_SHAPE.fullmatch(content)
    if match is None:
        return None
    fs, length, base_time, base_date, block = match.groups()
    if not valid_base_time_and_date(base_time.decode(), base_date.decode()):
        return None
    tokens = block.split()
    file_name = tokens[0::_FIELDS]
    if file_name.count(file_name[0]) != len(file_name):
        return None
    layout_tokens = tuple(tuple(tokens[field::_FIELDS]) for field in _LAYOUT_FIELDS)
    key = (fs, length, expected_fs, expected_samples, *layout_tokens)
    layout = _layouts.get(key, _layouts)
    if layout is _layouts:
        layout = _layout_of(content, expected_fs, expected_samples)
        if len(_layouts) >= _MAX_CACHED_LAYOUTS:
            _layouts.clear()
        _layouts[key] = layout
    if layout is None:
        return None
    known.insert(0, (_layout_pattern(fs, length, layout_tokens), layout))
    del known[_MAX_KNOWN_LAYOUTS:]
    names = (file_name[0].decode(),) * len(file_name)
    return CommonHeader(layout, names, tokens[_CHECKSUM_FIELD::_FIELDS])


def _layout_pattern(fs: bytes, length: bytes, layout_tokens: tuple) -> re.Pattern[bytes]:
    """The shape regex with one layout's tokens written out: it matches exactly the common-shape
    headers of that layout whose signal lines all name one file.  Groups: base time, base date,
    file name, then the checksums."""
    record = _RECORD_START + re.escape(fs + b" " + length) + _BASE_TIME_AND_DATE
    file_name = rb"(?P<file>" + _FILE_NAME + rb")"
    lines = []
    for fmt, gain, adc_res, adc_zero, block_size, name in zip(*layout_tokens, strict=True):
        middle = re.escape(b" ".join((fmt, gain, adc_res, adc_zero)))
        tail = re.escape(block_size + b" " + name)
        lines.append(file_name + b" " + middle + rb" -?\d+ (-?\d+) " + tail + rb"\n")
        file_name = rb"(?P=file)"
    return re.compile(record + b"".join(lines) + _COMMENTS, re.ASCII)


def _layout_of(content: bytes, expected_fs: float, expected_samples: int) -> HeaderLayout | None:
    """The layout of a common-shape header, checked exactly as the per-record reader checks it."""
    header = parse_plain_header(content.decode("ascii"))
    if header is None or not is_plain_format16(header):
        return None
    try:
        order, gain, baseline, unit_scale = check_header(
            header, "", expected_fs=expected_fs, expected_samples=expected_samples
        )
    except RecordError:
        return None
    n_samples, n_leads = int(header.sig_len), len(order)
    (file_bytes,) = signal_file_bytes(header.fmt[0], n_samples * n_leads)
    return HeaderLayout(
        n_samples, n_leads, file_bytes, order, gain[order], baseline[order], unit_scale[order],
        partial(stored_to_mv, order=order, gain=gain, baseline=baseline, unit_scale=unit_scale),
    )  # fmt: skip
