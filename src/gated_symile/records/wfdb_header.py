"""WFDB header (``.hea``) reading: a direct parser for plain single-segment headers, else wfdb.

Why not always ``wfdb.rdheader``: it looks every field up in pandas tables and costs 4-40 ms per
header, i.e. hours over the ~800 000 MIMIC-IV-ECG records, several times the cost of reading the
signal itself.  The headers MIMIC writes follow the plain grammar of the WFDB header spec
(https://wfdb.io/spec/header.html)::

    record_name n_sig [fs[/counter_freq[(base_counter)]] [n_samples [base_time [base_date]]]]
    file_name format [adc_gain[(baseline)][/units] [adc_res [adc_zero [init_value [checksum
        [block_size [description]]]]]]]
    # comment

:func:`parse_plain_header` reads exactly that grammar, with wfdb's read defaults for missing
fields (fs 250, gain 200 -- also for a gain of 0 --, baseline = adc_zero or 0, units mV).  Anything
outside it -- multi-segment records, ``format x spf : skew + offset``, tabs inside a description,
a token that does not parse -- returns ``None`` and the header goes through ``wfdb.rdheader``, whose
result and errors are the reference; the tests check both ways agree on every real sample header.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache
from pathlib import Path

from gated_symile.records.errors import MissingRecord, UnreadableRecord

__all__ = [
    "WfdbHeader",
    "parse_plain_header",
    "read_wfdb_header",
    "valid_base_time_and_date",
]

_NAME = re.compile(r"[-\w]+")
_FS = re.compile(r"(\d+\.?\d*|\.\d+)(?:/(-?\d*\.?\d*)(?:\((-?\d*\.?\d*)\))?)?")
_TIME = re.compile(r"\d{1,2}(?::\d{1,2}){0,2}(?:\.\d{1,6})?")
_DATE = re.compile(r"\d{1,2}/\d{1,2}/\d{4}")
_WS = r"[^\S\n]+"  # whitespace inside one line
_SIGNAL_LINES = re.compile(  # whole signal lines; fields optional from the gain on
    rf"^(~?[-\w]*\.?\w*){_WS}(\d+)"  # file name, format
    rf"(?:{_WS}(-?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)(?:\((-?\d+)\))?(?:/([\w^?%/-]+))?"  # gain
    rf"(?:{_WS}(\d+)(?:{_WS}(-?\d+)(?:{_WS}(-?\d+)(?:{_WS}(-?\d+)"  # adc res, zero, init, checksum
    rf"(?:{_WS}(\d+)(?:{_WS}(.+))?)?)?)?)?)?)?$",  # block size, description
    re.MULTILINE,
)
_UNSIGNED = re.compile(r"\d+")
_DEFAULT_FS = 250
_DEFAULT_GAIN = 200.0


@dataclass(frozen=True)
class WfdbHeader:
    """The fields of a single-segment WFDB header that the ECG reader uses (one entry per signal)."""

    record_name: str
    fs: float | None
    sig_len: int | None
    base_time: time | None
    base_date: date | None
    file_name: tuple[str, ...]
    fmt: tuple[str, ...]
    samps_per_frame: tuple[int | None, ...]
    skew: tuple[int | None, ...]
    byte_offset: tuple[int | None, ...]
    adc_gain: tuple[float, ...]
    baseline: tuple[int, ...]
    units: tuple[str, ...]
    adc_res: tuple[int | None, ...]
    adc_zero: tuple[int | None, ...]
    init_value: tuple[int | None, ...]
    checksum: tuple[int | None, ...]
    block_size: tuple[int | None, ...]
    sig_name: tuple[str | None, ...]
    comments: tuple[str, ...]

    @property
    def base_datetime(self) -> datetime | None:
        if self.base_date is None or self.base_time is None:
            return None
        return datetime.combine(self.base_date, self.base_time)


def read_wfdb_header(stem: str | Path, *, fast: bool = True) -> WfdbHeader:
    """Read ``<stem>.hea``; ``fast=False`` forces ``wfdb.rdheader`` (the reference, for tests).

    Raises :class:`MissingRecord` (no header) or :class:`UnreadableRecord` (wfdb cannot parse it,
    multi-segment, no signal lines); the message names the ``.hea`` file.
    """
    stem = os.fspath(stem)
    header_file = stem + ".hea"
    try:
        with open(header_file, "rb") as handle:
            content = handle.read()
    except FileNotFoundError as exc:
        raise MissingRecord(header_file, "header file does not exist") from exc
    except OSError as exc:
        raise UnreadableRecord(header_file, f"cannot read header file ({exc})") from exc
    header = parse_plain_header(content.decode("ascii", errors="ignore")) if fast else None
    return header if header is not None else _read_with_wfdb(stem, header_file)


def parse_plain_header(text: str) -> WfdbHeader | None:
    """Parse the plain single-segment grammar (module docstring); ``None`` for anything else."""
    lines, comments = [], []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            comments.append(line.strip(" \t#"))
        elif line:
            lines.append(line)
    if len(lines) < 2:
        return None
    record = _parse_record_line(lines[0])
    signals = _parse_signal_lines(lines[1:])
    if record is None or signals is None:
        return None
    return WfdbHeader(**record, **signals, comments=tuple(comments))


def _parse_record_line(line: str) -> dict | None:
    tokens = line.split()
    if not 2 <= len(tokens) <= 6 or not _NAME.fullmatch(tokens[0]):
        return None
    if not _UNSIGNED.fullmatch(tokens[1]):
        return None
    fs: float | None = _DEFAULT_FS
    sig_len = base_time = base_date = None
    try:
        if len(tokens) > 2:
            match = _FS.fullmatch(tokens[2])
            if match is None:
                return None
            fs = float(match.group(1))
            if round(fs, 8) == float(int(fs)):  # wfdb keeps an integral rate as int
                fs = int(fs)
        if len(tokens) > 3:
            if not _UNSIGNED.fullmatch(tokens[3]):
                return None
            sig_len = int(tokens[3])
        if len(tokens) > 4:
            if not _TIME.fullmatch(tokens[4]):
                return None
            base_time = _parse_time(tokens[4])
        if len(tokens) > 5:
            if not _DATE.fullmatch(tokens[5]):
                return None
            base_date = _parse_date(tokens[5])
    except ValueError:  # e.g. 25:00:00 or 31/02/2180: let wfdb produce its error
        return None
    return {
        "record_name": tokens[0],
        "fs": fs,
        "sig_len": sig_len,
        "base_time": base_time,
        "base_date": base_date,
    }


def _parse_time(text: str) -> time:
    """WFDB base time: ``SS``, ``MM:SS`` or ``HH:MM:SS``, each with optional ``.ffffff``.

    Digits already checked by ``_TIME``; out-of-range fields raise ValueError (as strptime would).
    """
    clock, _, fraction = text.partition(".")
    fields = [int(field) for field in clock.split(":")]
    hour, minute, second = [0] * (3 - len(fields)) + fields
    return time(hour, minute, second, int(fraction.ljust(6, "0")) if fraction else 0)


def _parse_date(text: str) -> date:
    """WFDB base date ``DD/MM/YYYY`` (digits checked by ``_DATE``); invalid dates raise ValueError."""
    day, month, year = (int(field) for field in text.split("/"))
    return date(year, month, day)


@lru_cache(maxsize=65536)
def valid_base_time_and_date(time_text: str, date_text: str) -> bool:
    """Whether the plain parser accepts a base time and date (cached: a release repeats them)."""
    if not (_TIME.fullmatch(time_text) and _DATE.fullmatch(date_text)):
        return False
    try:
        _parse_time(time_text), _parse_date(date_text)
    except ValueError:
        return False
    return True


_SIGNAL_FIELDS = (
    "file_name", "fmt", "samps_per_frame", "skew", "byte_offset", "adc_gain", "baseline",
    "units", "adc_res", "adc_zero", "init_value", "checksum", "block_size", "sig_name",
)  # fmt: skip


def _parse_signal_lines(lines: list[str]) -> dict[str, tuple] | None:
    """The signal lines as one tuple per :data:`_SIGNAL_FIELDS` name, or ``None`` if one is not
    plain.  One regex pass over all lines (a field the line lacks comes back as ``""``)."""
    rows = _SIGNAL_LINES.findall("\n".join(lines))
    if len(rows) != len(lines):  # a match is a whole line, so some line did not match
        return None
    file_name, fmt, gain, baseline, units, res, zero, init, checksum, block, description = zip(
        *rows
    )
    if any("\t" in text for text in description):
        return None  # wfdb cuts a description at a tab; leave that corner to wfdb
    adc_zero = _optional_ints(zero)
    none = (None,) * len(rows)
    return {
        "file_name": file_name,
        "fmt": fmt,
        "samps_per_frame": (1,) * len(rows),
        "skew": none,
        "byte_offset": none,
        # no gain, or a gain of 0, means 200 (uncalibrated)
        "adc_gain": tuple((float(g) if g else 0.0) or _DEFAULT_GAIN for g in gain),
        # WFDB: a missing baseline equals the ADC zero (or 0)
        "baseline": tuple(
            int(b) if b else (z if z is not None else 0)
            for b, z in zip(baseline, adc_zero, strict=True)
        ),
        "units": tuple(unit or "mV" for unit in units),
        "adc_res": _optional_ints(res),
        "adc_zero": adc_zero,
        "init_value": _optional_ints(init),
        "checksum": _optional_ints(checksum),
        "block_size": _optional_ints(block),
        "sig_name": tuple(text or None for text in description),
    }


def _optional_ints(column: tuple[str, ...]) -> tuple[int | None, ...]:
    if all(column):
        return tuple(map(int, column))
    return tuple(int(text) if text else None for text in column)


def _read_with_wfdb(stem: str, header_file: str) -> WfdbHeader:
    import wfdb

    try:
        record = wfdb.rdheader(str(stem), rd_segments=False)
    except Exception as exc:  # wfdb raises ValueError, HeaderSyntaxError, IndexError, ...
        raise UnreadableRecord(
            header_file, f"cannot parse WFDB header ({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(record, wfdb.MultiRecord) or not getattr(record, "file_name", None):
        raise UnreadableRecord(
            header_file,
            "WFDB header has no signal lines (or is a multi-segment record)",
        )
    return WfdbHeader(
        record_name=record.record_name,
        fs=record.fs,
        sig_len=record.sig_len,
        base_time=record.base_time,
        base_date=record.base_date,
        **{name: tuple(getattr(record, name)) for name in _SIGNAL_FIELDS},
        comments=tuple(record.comments or ()),
    )
