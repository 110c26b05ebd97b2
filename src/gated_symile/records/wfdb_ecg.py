"""WFDB reader for MIMIC-IV-ECG style 12-lead resting ECGs (docs/data.md §2).

Why not just ``wfdb.rdrecord``: the cohort needs every unusable record turned into a typed
:class:`~gated_symile.errors.RecordError` that names the file and the problem (wrong fs, wrong
length, other leads, missing or truncated ``.dat``), needs leads in the canonical MIMIC order
whatever their spelling, and must stay fast on ~800 000 records.  The header is parsed once
(:func:`~gated_symile.records.wfdb_header.read_wfdb_header`: a direct parser for plain headers,
``wfdb.rdheader`` otherwise) and checked *before* any signal is read (cheap rejections); format-16 signal
files -- every MIMIC-IV-ECG record -- are then read directly with numpy, which is faster than
``wfdb.rdrecord`` and lets us detect a truncated file from its size.  Any other WFDB storage
format falls back to ``wfdb.rdrecord`` once.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gated_symile.records.ecg_record import EcgRecord
from gated_symile.records.errors import (
    MissingRecord,
    UnreadableRecord,
    WrongLeads,
    WrongLength,
    WrongSamplingRate,
)
from gated_symile.records.lead_names import MIMIC_LEAD_ORDER, canonical_order_index
from gated_symile.records.wfdb_header import WfdbHeader, read_wfdb_header

__all__ = ["WFDB_MISSING_VALUE", "read_wfdb_ecg", "record_stem"]

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
    stem = record_stem(record_path)
    header_file = stem.with_name(stem.name + ".hea")
    header = _read_header(stem, header_file)

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
    gain, baseline, unit_scale = _calibration(header, header_file)
    data_files = _data_files(stem, header, header_file)

    if _is_plain_format16(header):
        signal = _read_format16(data_files[0], header, order, gain, baseline)
    else:
        signal = _read_with_wfdb(stem, header_file, order)
    if np.any(unit_scale != 1.0):
        signal *= unit_scale[order]

    return EcgRecord(
        path=str(stem),
        signal=signal,
        fs=fs,
        lead_names=MIMIC_LEAD_ORDER,
        source_lead_names=tuple(names),
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


def _read_header(stem: Path, header_file: Path) -> WfdbHeader:
    header = read_wfdb_header(stem)
    if header.fs is None or header.sig_len is None:
        raise UnreadableRecord(header_file, "WFDB header lacks the sampling rate or length")
    return header


def _calibration(header, header_file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-lead ADC gain, baseline and factor to mV (source order)."""
    gain = np.asarray(header.adc_gain, dtype=np.float64)
    baseline = np.asarray(header.baseline, dtype=np.float64)
    units = list(header.units or ["mV"] * len(gain))
    scale = np.ones(len(gain))
    for lead, (g, unit) in enumerate(zip(gain, units, strict=True)):
        name = header.sig_name[lead]
        if not g > 0:
            raise UnreadableRecord(header_file, f"lead {name} has ADC gain {g:g} (uncalibrated)")
        factor = _UNIT_TO_MV.get(str(unit).strip().lower())
        if factor is None:
            raise UnreadableRecord(header_file, f"lead {name} has units {unit!r}, expected mV")
        scale[lead] = factor
    return gain, baseline, scale


def _data_files(stem: Path, header, header_file: Path) -> list[Path]:
    files = [stem.parent / name for name in dict.fromkeys(header.file_name)]
    for data_file in files:
        if not data_file.is_file():
            raise MissingRecord(
                data_file, f"signal file does not exist (named in {header_file.name})"
            )
    return files


def _is_plain_format16(header) -> bool:
    """One interleaved little-endian int16 file, no offsets, skew or multiple samples per frame."""
    return (
        len(set(header.file_name)) == 1
        and all(str(f) == "16" for f in header.fmt)
        and all(not offset for offset in (header.byte_offset or [None]))
        and all(not skew for skew in (header.skew or [None]))
        and all(spf in (None, 1) for spf in (header.samps_per_frame or [None]))
    )


def _read_format16(
    data_file: Path, header, order: np.ndarray, gain: np.ndarray, baseline: np.ndarray
) -> np.ndarray:
    n_leads, n_samples = len(header.sig_name), int(header.sig_len)
    expected_bytes = 2 * n_leads * n_samples
    size = data_file.stat().st_size
    if size < expected_bytes:
        raise WrongLength(
            data_file,
            f"signal file truncated: {size} bytes, expected {expected_bytes} "
            f"({n_leads} leads x {n_samples} samples x 2 bytes)",
        )
    try:
        raw = np.fromfile(data_file, dtype="<i2", count=n_leads * n_samples)
    except OSError as exc:
        raise UnreadableRecord(data_file, f"cannot read signal file ({exc})") from exc
    digital = raw.reshape(n_samples, n_leads)[:, order]
    signal = digital.astype(np.float64)
    signal -= baseline[order]
    signal /= gain[order]
    missing = digital == WFDB_MISSING_VALUE
    if missing.any():
        signal[missing] = np.nan
    return signal


def _read_with_wfdb(stem: Path, header_file: Path, order: np.ndarray) -> np.ndarray:
    import wfdb

    n_samples = None
    try:
        record = wfdb.rdrecord(str(stem), physical=True, return_res=64)
        signal = record.p_signal
        n_samples = record.sig_len
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
