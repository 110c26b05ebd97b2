"""WFDB reader for MIMIC-IV-ECG style 12-lead resting ECGs (docs/data.md §2).

Why not just ``wfdb.rdrecord``: the cohort needs every unusable record turned into a typed
:class:`~gated_symile.errors.RecordError` that names the file and the problem (wrong fs, wrong
length, other leads, missing or truncated ``.dat``), needs leads in the canonical MIMIC order
whatever their spelling, and must stay fast on ~800 000 records.  The header is parsed once
(:func:`~gated_symile.records.wfdb_header.read_wfdb_header`: a direct parser for plain headers,
``wfdb.rdheader`` otherwise) and checked *before* any signal is read (cheap rejections); format-16 signal
files -- every MIMIC-IV-ECG record -- are then read directly with numpy, which is faster than
``wfdb.rdrecord``.  Any other WFDB storage format falls back to ``wfdb.rdrecord`` once.  Either way
every signal file must have exactly the size its header implies and every signal the header's
checksum (:mod:`gated_symile.records.wfdb_integrity`), so a file that does not match its header
is rejected instead of being read as a scrambled ECG.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from gated_symile.records.ecg_qc import EcgQC, qc_ecg, qc_stored
from gated_symile.records.ecg_record import EcgRecord
from gated_symile.records.errors import (
    RecordError,
    UnreadableRecord,
    WrongLeads,
    WrongLength,
    WrongSamplingRate,
)
from gated_symile.records.lead_names import MIMIC_LEAD_ORDER, canonical_order_index
from gated_symile.records.wfdb_header import WfdbHeader, read_wfdb_header
from gated_symile.records.wfdb_integrity import (
    check_checksums,
    check_signal_file_sizes,
    signal_file_sizes,
)

__all__ = [
    "WFDB_MISSING_VALUE",
    "WfdbSamples",
    "check_header",
    "is_plain_format16",
    "read_wfdb_ecg",
    "read_wfdb_samples",
    "record_stem",
    "stored_to_mv",
]

WFDB_MISSING_VALUE = -32768
"""Format-16 sample value that WFDB reserves for "no sample" (reads back as NaN)."""

_SUBJECT_COMMENT = re.compile(r"^\s*<?\s*subject_id\s*>?\s*:\s*(\d+)\s*$", re.IGNORECASE)
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3}


def record_stem(path: str | Path) -> Path:
    """The WFDB record path without extension: ``x/40689238.hea`` / ``.dat`` / stem -> ``x/40689238``."""
    path = Path(path)
    if path.suffix.lower() in (".hea", ".dat"):
        return path.with_suffix("")
    return path


@dataclass(frozen=True, eq=False)
class WfdbSamples:
    """One record's samples after every header and integrity check, before conversion to mV.

    ``stored`` holds a plain format-16 record's int16 samples as read, ``(n_samples, n_leads)`` in
    the file's lead order; other formats, read by wfdb, come as ``signal`` (mV, canonical order)
    instead.  Why keep the integers: QC on them (:meth:`qc`) needs no float copy of the record.
    ``order`` puts source columns in canonical order; ``gain``/``baseline``/``unit_scale`` are per
    source lead.
    """

    stem: str
    header: WfdbHeader
    order: np.ndarray
    gain: np.ndarray
    baseline: np.ndarray
    unit_scale: np.ndarray
    stored: np.ndarray | None = None
    signal: np.ndarray | None = None

    def to_mv(self, stored: np.ndarray) -> np.ndarray:
        """Rows of stored samples -> float64 mV in canonical lead order (missing -> NaN)."""
        return stored_to_mv(stored, self.order, self.gain, self.baseline, self.unit_scale)

    def signal_mv(self) -> np.ndarray:
        """The whole record in mV, canonical lead order."""
        return self.signal if self.stored is None else self.to_mv(self.stored)

    def qc(self) -> EcgQC:
        """:func:`~gated_symile.records.ecg_qc.qc_ecg` of :meth:`signal_mv`, from the integers."""
        if self.stored is None:
            return qc_ecg(self.signal)
        return qc_stored(self.stored, WFDB_MISSING_VALUE, self.to_mv)

    def record(self) -> EcgRecord:
        header = self.header
        return EcgRecord(
            path=self.stem,
            signal=self.signal_mv(),
            fs=float(header.fs),
            lead_names=MIMIC_LEAD_ORDER,
            source_lead_names=tuple(str(name) for name in header.sig_name),
            base_datetime=header.base_datetime,
            comments=tuple(header.comments or ()),
            subject_id=_subject_id(header.comments or ()),
            source_format="wfdb",
            details={
                "record_name": header.record_name,
                "fmt": tuple(header.fmt),
                "adc_gain": tuple(float(g) for g in header.adc_gain),
                "baseline": tuple(int(b) for b in header.baseline),
                "units": tuple(header.units or ()),
                "adc_res": tuple(header.adc_res or ()),
                "file_name": tuple(header.file_name),
            },
        )


def read_wfdb_ecg(
    record_path: str | Path,
    *,
    expected_fs: float = 500,
    expected_samples: int = 5000,
) -> EcgRecord:
    """Read one 12-lead WFDB record and return it in mV, canonical lead order.

    ``record_path`` is the record without extension (the MIMIC ``path`` column joined to the
    root); a ``.hea`` or ``.dat`` suffix is tolerated.  Raises :class:`MissingRecord`,
    :class:`UnreadableRecord`, :class:`WrongSamplingRate`, :class:`WrongLeads` or
    :class:`WrongLength`; the message names the offending file.
    """
    return read_wfdb_samples(
        record_path, expected_fs=expected_fs, expected_samples=expected_samples
    ).record()


def read_wfdb_samples(
    record_path: str | Path,
    *,
    expected_fs: float = 500,
    expected_samples: int = 5000,
) -> WfdbSamples:
    """:func:`read_wfdb_ecg` up to (not including) the conversion to mV; same checks, same errors."""
    stem = str(record_stem(record_path))
    header_file = stem + ".hea"
    header = read_wfdb_header(stem)
    order, gain, baseline, unit_scale = check_header(
        header, header_file, expected_fs=expected_fs, expected_samples=expected_samples
    )
    sizes = signal_file_sizes(stem, header, header_file)
    check_signal_file_sizes(stem, header, header_file, sizes)

    stored = signal = None
    if is_plain_format16(header):
        stored = _read_format16(
            os.path.join(os.path.dirname(stem), header.file_name[0]),
            len(order),
            int(header.sig_len),
        )
        check_checksums(stored, header, stem)
    else:
        signal = _read_with_wfdb(stem, header, header_file, order)
        _scale_to_mv(signal, unit_scale, order)
    return WfdbSamples(stem, header, order, gain, baseline, unit_scale, stored, signal)


def check_header(
    header: WfdbHeader, header_file: str, *, expected_fs: float, expected_samples: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The checks that need only the header: sampling rate, leads, length, calibration.

    Returns the canonical lead order and the per-lead gain, baseline and factor to mV (source
    order); raises the reader's typed errors naming ``header_file``.
    """
    if header.fs is None or header.sig_len is None:
        raise UnreadableRecord(header_file, "WFDB header lacks the sampling rate or length")
    fs = float(header.fs)
    if abs(fs - float(expected_fs)) > 1e-9:
        raise WrongSamplingRate(header_file, f"fs is {fs:g} Hz, expected {float(expected_fs):g}")
    names = [str(name) for name in (header.sig_name or [])]
    order = canonical_order_index(names)
    if isinstance(order, str):
        raise WrongLeads(header_file, order)
    n_samples = int(header.sig_len or 0)
    if n_samples != expected_samples:
        raise WrongLength(
            header_file,
            f"{n_samples} samples ({n_samples / fs:g} s), expected {expected_samples}",
        )
    return (order, *_calibration(header, header_file))


def stored_to_mv(
    stored: np.ndarray,
    order: np.ndarray,
    gain: np.ndarray,
    baseline: np.ndarray,
    unit_scale: np.ndarray,
) -> np.ndarray:
    """Rows of stored samples -> float64 mV in canonical lead order (missing -> NaN); ``order``
    and the per-lead calibration as :func:`check_header` returns them."""
    digital = stored[:, order]
    signal = digital.astype(np.float64)
    signal -= baseline[order]
    signal /= gain[order]
    missing = digital == WFDB_MISSING_VALUE
    if missing.any():
        signal[missing] = np.nan
    _scale_to_mv(signal, unit_scale, order)
    return signal


def _scale_to_mv(signal: np.ndarray, unit_scale: np.ndarray, order: np.ndarray) -> None:
    """Leads recorded in uV (canonical order) -> mV, in place."""
    if np.any(unit_scale != 1.0):
        signal *= unit_scale[order]


def _calibration(header: WfdbHeader, header_file: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-lead ADC gain, baseline and factor to mV (source order; read-only arrays)."""
    calibration = _cached_calibration(
        header.adc_gain, header.baseline, tuple(header.units or ()), header.sig_name
    )
    if isinstance(calibration, str):
        raise UnreadableRecord(header_file, calibration)
    return calibration


@lru_cache(maxsize=1024)
def _cached_calibration(
    adc_gain: tuple[float, ...],
    baseline: tuple[int, ...],
    units: tuple[str, ...],
    sig_name: tuple[str | None, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """:func:`_calibration`, or its problem; cached because a release repeats a few calibrations."""
    gain = np.asarray(adc_gain, dtype=np.float64)
    offsets = np.asarray(baseline, dtype=np.float64)
    units = units or ("mV",) * len(gain)
    scale = np.ones(len(gain))
    for lead, (g, unit) in enumerate(zip(gain, units, strict=True)):
        name = sig_name[lead]
        if not g > 0:
            return f"lead {name} has ADC gain {g:g} (uncalibrated)"
        factor = _UNIT_TO_MV.get(str(unit).strip().lower())
        if factor is None:
            return f"lead {name} has units {unit!r}, expected mV"
        scale[lead] = factor
    for array in (gain, offsets, scale):
        array.flags.writeable = False
    return gain, offsets, scale


def is_plain_format16(header: WfdbHeader) -> bool:
    """One interleaved little-endian int16 file, no offsets, skew or multiple samples per frame."""
    return _plain_format16(
        header.file_name, header.fmt, header.byte_offset, header.skew, header.samps_per_frame
    )


@lru_cache(maxsize=1024)
def _plain_format16(file_name, fmt, byte_offset, skew, samps_per_frame) -> bool:
    return (
        len(set(file_name)) == 1
        and all(str(f) == "16" for f in fmt)
        and all(not offset for offset in (byte_offset or [None]))
        and all(not shift for shift in (skew or [None]))
        and all(spf in (None, 1) for spf in (samps_per_frame or [None]))
    )


def _read_format16(data_file: str, n_leads: int, n_samples: int) -> np.ndarray:
    """Interleaved int16 samples as ``(n_samples, n_leads)``: one read straight into the array
    (the file's size was already checked)."""
    samples = np.empty((n_samples, n_leads), dtype="<i2")
    target = memoryview(samples).cast("B")
    got = 0
    try:
        with open(data_file, "rb", buffering=0) as file:
            while got < len(target) and (count := file.readinto(target[got:])):
                got += count
    except OSError as exc:
        raise UnreadableRecord(data_file, f"cannot read signal file ({exc})") from exc
    if got != len(target):  # the file changed since its size was checked
        raise WrongLength(data_file, f"signal file truncated: {got} bytes read")
    return samples


def _read_with_wfdb(
    stem: str, header: WfdbHeader, header_file: str, order: np.ndarray
) -> np.ndarray:
    """Other storage formats through ``wfdb.rdrecord`` (digital, checksummed, then to mV)."""
    import wfdb

    try:
        record = wfdb.rdrecord(stem, physical=False, return_res=64)
        digital = record.d_signal
        n_samples = record.sig_len
        if digital is not None and all(spf in (None, 1) for spf in record.samps_per_frame):
            check_checksums(digital, header, stem)
        signal = None if digital is None else record.dac(return_res=64)
    except RecordError:
        raise
    except Exception as exc:  # truncated / corrupt signal files surface as assorted errors
        raise UnreadableRecord(
            header_file, f"cannot read WFDB signal ({type(exc).__name__}: {exc})"
        ) from exc
    if signal is None or signal.shape[0] != n_samples:
        got = 0 if signal is None else signal.shape[0]
        raise WrongLength(
            header_file, f"signal truncated: {got} samples read, expected {n_samples}"
        )
    return np.ascontiguousarray(signal[:, order], dtype=np.float64)


def _subject_id(comments) -> int | None:
    for comment in comments:
        match = _SUBJECT_COMMENT.match(comment)
        if match:
            return int(match.group(1))
    return None
