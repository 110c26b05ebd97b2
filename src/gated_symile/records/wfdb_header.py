"""WFDB header (``.hea``) reading: a direct parser for plain single-segment headers, else wfdb.

Why not always ``wfdb.rdheader``: it looks every field up in pandas tables and costs 4-40 ms per
header, i.e. hours over the ~800 000 MIMIC-IV-ECG records, several times the cost of reading the
signal itself.  The headers MIMIC writes follow the plain grammar of the WFDB header spec
(https://wfdb.io/spec/header.html)::

    record_name n_sig [fs[/counter_freq[(base_counter)]] [n_samples [base_time [base_date]]]]
    file_name format [adc_gain[(baseline)][/units] [adc_res [adc_zero [init_value [checksum
        [block_size [description]]]]]]]
    # comment

:func:`_parse_plain_header` reads exactly that grammar, with wfdb's read defaults for missing
fields (fs 250, gain 200 -- also for a gain of 0 --, baseline = adc_zero or 0, units mV).  Anything
outside it -- multi-segment records, ``format x spf : skew + offset``, tabs inside a description,
a token that does not parse -- returns ``None`` and the header goes through ``wfdb.rdheader``, whose
result and errors are the reference; the tests check both ways agree on every real sample header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

from gated_symile.records.errors import MissingRecord, UnreadableRecord

__all__ = ["WfdbHeader", "read_wfdb_header"]

_NAME = re.compile(r"[-\w]+")
_FS = re.compile(r"(\d+\.?\d*|\.\d+)(?:/(-?\d*\.?\d*)(?:\((-?\d*\.?\d*)\))?)?")
_TIME = re.compile(r"\d{1,2}(?::\d{1,2}){0,2}(?:\.\d{1,6})?")
_DATE = re.compile(r"\d{1,2}/\d{1,2}/\d{4}")
_FILE = re.compile(r"~?[-\w]*\.?\w*")
_GAIN = re.compile(
    r"(?P<gain>-?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)(?:\((?P<baseline>-?\d+)\))?"
    r"(?:/(?P<units>[\w^?%/-]+))?"
)
_UNSIGNED = re.compile(r"\d+")
_SIGNED = re.compile(r"-?\d+")
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
    stem = Path(stem)
    header_file = stem.with_name(stem.name + ".hea")
    try:
        content = header_file.read_bytes()
    except FileNotFoundError as exc:
        raise MissingRecord(header_file, "header file does not exist") from exc
    except OSError as exc:
        raise UnreadableRecord(header_file, f"cannot read header file ({exc})") from exc
    header = _parse_plain_header(content.decode("ascii", errors="ignore")) if fast else None
    return header if header is not None else _read_with_wfdb(stem, header_file)


def _parse_plain_header(text: str) -> WfdbHeader | None:
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
    signals = [_parse_signal_line(line) for line in lines[1:]]
    if record is None or any(signal is None for signal in signals):
        return None
    columns = list(zip(*signals, strict=True))
    return WfdbHeader(
        **record,
        **{name: tuple(column) for name, column in zip(_SIGNAL_FIELDS, columns, strict=True)},
        comments=tuple(comments),
    )


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
            base_date = datetime.strptime(tokens[5], "%d/%m/%Y").date()
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
    """WFDB base time: ``SS``, ``MM:SS`` or ``HH:MM:SS``, each with optional ``.ffffff``."""
    pattern = ("%S", "%M:%S", "%H:%M:%S")[text.count(":")]
    if "." in text:
        pattern += ".%f"
    return datetime.strptime(text, pattern).time()


_SIGNAL_FIELDS = (
    "file_name", "fmt", "samps_per_frame", "skew", "byte_offset", "adc_gain", "baseline",
    "units", "adc_res", "adc_zero", "init_value", "checksum", "block_size", "sig_name",
)  # fmt: skip


def _parse_signal_line(line: str) -> tuple | None:
    """One signal line as a tuple in :data:`_SIGNAL_FIELDS` order, or ``None`` if not plain."""
    tokens = line.split(None, 8)
    if len(tokens) < 2 or not _FILE.fullmatch(tokens[0]) or not _UNSIGNED.fullmatch(tokens[1]):
        return None
    description = tokens[8] if len(tokens) > 8 else None
    if description is not None and "\t" in description:
        return None  # wfdb cuts a description at a tab; leave that corner to wfdb
    gain, baseline, units = _DEFAULT_GAIN, None, "mV"
    if len(tokens) > 2:
        match = _GAIN.fullmatch(tokens[2])
        if match is None:
            return None
        gain = float(match["gain"]) or _DEFAULT_GAIN  # a gain of 0 means 200 (uncalibrated)
        baseline = None if match["baseline"] is None else int(match["baseline"])
        units = match["units"] or "mV"
    numbers: list[int | None] = []
    for position, pattern in zip(range(3, 8), (_UNSIGNED, _SIGNED, _SIGNED, _SIGNED, _UNSIGNED)):
        if len(tokens) <= position:
            numbers.append(None)
        elif pattern.fullmatch(tokens[position]):
            numbers.append(int(tokens[position]))
        else:
            return None
    adc_res, adc_zero, init_value, checksum, block_size = numbers
    if baseline is None:  # WFDB: a missing baseline equals the ADC zero
        baseline = adc_zero if adc_zero is not None else 0
    return (
        tokens[0], tokens[1], 1, None, None, gain, baseline, units,
        adc_res, adc_zero, init_value, checksum, block_size, description,
    )  # fmt: skip


def _read_with_wfdb(stem: Path, header_file: Path) -> WfdbHeader:
    import wfdb

    try:
        record = wfdb.rdheader(str(stem), rd_segments=False)
    except Exception as exc:  # wfdb raises ValueError, HeaderSyntaxError, IndexError, ...
        raise UnreadableRecord(
            header_file, f"cannot parse WFDB header ({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(record, wfdb.MultiRecord) or not getattr(record, "file_name", None):
        raise UnreadableRecord(
            header_file, "WFDB header has no signal lines (or is a multi-segment record)"
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
