"""Does a WFDB signal file match its header?  Exact sizes and the header's per-signal checksums.

Why: a signal file that disagrees with its header still decodes -- an extra interleaved channel,
a few missing samples or trailing bytes just shift every sample into the wrong lead or time, and
``wfdb.rdrecord`` silently pads a short file with zeros -- so the result looks like an ECG and
passes QC.  The header says exactly how many bytes each file holds (format, signals per file,
samples per frame, length, byte offset; https://wfdb.io/spec/header.html) and carries a 16-bit
checksum of every signal, so both are checked before a signal is trusted.

Compressed formats (508, 516, 524) have no fixed size; they still get the checksum check.  A
record with several samples per frame is size-checked only (its checksum covers the expanded
samples, which the ECG reader does not build).
"""

from __future__ import annotations

from math import ceil
from pathlib import Path

import numpy as np

from gated_symile.records.errors import UnreadableRecord, WrongLength
from gated_symile.records.wfdb_header import WfdbHeader

__all__ = ["check_checksums", "check_signal_file_sizes", "signal_file_bytes"]

_BYTES_PER_SAMPLE = {"8": 1, "80": 1, "16": 2, "61": 2, "160": 2, "24": 3, "32": 4}
_COMPRESSED = {"508", "516", "524"}
_CHECKSUM_MODULUS = 1 << 16


def signal_file_bytes(fmt: str, n_samples: int) -> tuple[int, ...]:
    """The sizes in bytes a file of ``n_samples`` samples in WFDB format ``fmt`` may have.

    Empty for compressed formats.  Format 212 packs two 12-bit samples in three bytes; 310 and 311
    pack three 10-bit samples in four bytes, and writers may pad the last group to four bytes,
    so both lengths are valid.  An unknown format raises :class:`ValueError`.
    """
    if fmt in _BYTES_PER_SAMPLE:
        return (n_samples * _BYTES_PER_SAMPLE[fmt],)
    if fmt == "212":
        return (ceil(n_samples * 3 / 2),)
    if fmt in ("310", "311"):
        return tuple(sorted({ceil(n_samples * 4 / 3), 4 * ceil(n_samples / 3)}))
    if fmt in _COMPRESSED:
        return ()
    raise ValueError(f"unknown WFDB storage format {fmt!r}")


def check_signal_file_sizes(stem: Path, header: WfdbHeader, header_file: Path) -> None:
    """Raise unless every signal file has exactly the size its header implies.

    Short file: :class:`WrongLength` (truncated); longer file or a format the header cannot have:
    :class:`UnreadableRecord`.  Files must exist (checked by the caller).
    """
    n_frames = int(header.sig_len or 0)
    for file_name in dict.fromkeys(header.file_name):
        signals = [i for i, name in enumerate(header.file_name) if name == file_name]
        formats = {str(header.fmt[i]) for i in signals}
        data_file = stem.parent / file_name
        if len(formats) != 1:
            raise UnreadableRecord(
                header_file, f"signals of {file_name} have different formats {sorted(formats)}"
            )
        fmt = formats.pop()
        per_frame = sum(int(header.samps_per_frame[i] or 1) for i in signals)
        try:
            sizes = signal_file_bytes(fmt, n_frames * per_frame)
        except ValueError as exc:
            raise UnreadableRecord(header_file, str(exc)) from exc
        if not sizes:
            continue
        offset = int(header.byte_offset[signals[0]] or 0)
        skewed = any(header.skew[i] for i in signals)  # skewed files may hold extra frames
        _check_size(data_file, offset, sizes, skewed, len(signals), n_frames, fmt)


def _check_size(
    data_file: Path, offset: int, sizes: tuple[int, ...], skewed: bool,
    n_signals: int, n_frames: int, fmt: str,
) -> None:  # fmt: skip
    size = data_file.stat().st_size
    expected = [offset + s for s in sizes]
    layout = f"{n_signals} signals x {n_frames} samples in format {fmt}" + (
        f" after a {offset}-byte offset" if offset else ""
    )
    if size < expected[0]:
        raise WrongLength(
            data_file, f"signal file truncated: {size} bytes, expected {expected[0]} ({layout})"
        )
    if size in expected or skewed:
        return
    extra = size - expected[-1]
    hint = ""
    per_signal = _bytes_of_one_signal(fmt, n_frames)
    if per_signal and extra % per_signal == 0:
        hint = f"; that is {extra // per_signal} more interleaved signal(s) than the header lists"
    raise UnreadableRecord(
        data_file,
        f"signal file has {size} bytes, its header implies {expected[-1]} ({layout}){hint}; "
        "the file does not match its header",
    )


def _bytes_of_one_signal(fmt: str, n_frames: int) -> int | None:
    return n_frames * _BYTES_PER_SAMPLE[fmt] if fmt in _BYTES_PER_SAMPLE else None


def check_checksums(digital: np.ndarray, header: WfdbHeader, stem: Path) -> None:
    """Raise :class:`UnreadableRecord` if a signal's 16-bit sum differs from its header checksum.

    ``digital`` is ``(n_samples, n_signals)`` in header (source) order, as stored (the WFDB
    missing-sample value included, as in the checksum).  Headers write the checksum signed or
    unsigned; both are compared modulo 2**16.  Signals without a checksum are not checked.
    """
    sums = digital.sum(axis=0, dtype=np.int64) % _CHECKSUM_MODULUS
    bad = [
        i
        for i, checksum in enumerate(header.checksum)
        if checksum is not None and (int(sums[i]) - int(checksum)) % _CHECKSUM_MODULUS
    ]
    if not bad:
        return
    names = [str(header.sig_name[i] or i) for i in bad]
    first = bad[0]
    data_file = stem.parent / header.file_name[first]
    raise UnreadableRecord(
        data_file,
        f"checksum mismatch for {len(bad)} signal(s) ({', '.join(names[:4])}"
        f"{', ...' if len(names) > 4 else ''}): header {int(header.checksum[first])}, data "
        f"{int(sums[first])} for {names[0]}; the signal file does not match its header",
    )
