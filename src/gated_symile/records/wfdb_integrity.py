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

import errno
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from math import ceil
from pathlib import Path

import numpy as np

from gated_symile.records.column_reduce import reduce_columns
from gated_symile.records.errors import MissingRecord, UnreadableRecord, WrongLength
from gated_symile.records.wfdb_header import WfdbHeader

__all__ = [
    "check_checksums",
    "check_signal_file_sizes",
    "signal_file_bytes",
    "signal_file_sizes",
]

_BYTES_PER_SAMPLE = {"8": 1, "80": 1, "16": 2, "61": 2, "160": 2, "24": 3, "32": 4}
_COMPRESSED = {"508", "516", "524"}
_CHECKSUM_MODULUS = 1 << 16
_ABSENT = (
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EBADF,
    errno.ELOOP,
)  # what Path.is_file() calls absent


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


def signal_file_sizes(
    stem: str | Path, header: WfdbHeader, header_file: str | Path
) -> dict[str, int]:
    """Size in bytes of each signal file the header names (one ``stat`` each, header order).

    Raises :class:`MissingRecord` naming the first file that is absent or not a regular file.
    """
    folder = os.path.dirname(os.fspath(stem))
    sizes = {}
    for file_name in dict.fromkeys(header.file_name):
        data_file = os.path.join(folder, file_name)
        try:
            info = os.stat(data_file)
        except OSError as exc:
            if exc.errno not in _ABSENT:
                raise
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            raise MissingRecord(
                data_file,
                f"signal file does not exist (named in {os.path.basename(header_file)})",
            )
        sizes[file_name] = info.st_size
    return sizes


def check_signal_file_sizes(
    stem: str | Path,
    header: WfdbHeader,
    header_file: str | Path,
    sizes: Mapping[str, int],
) -> None:
    """Raise unless every signal file has exactly the size its header implies.

    ``sizes`` are the files' sizes (:func:`signal_file_sizes`).  Short file: :class:`WrongLength`
    (truncated); longer file or a format the header cannot have: :class:`UnreadableRecord`.
    """
    folder = os.path.dirname(os.fspath(stem))
    layouts = _file_layouts(
        header.file_name, header.fmt, header.samps_per_frame, header.byte_offset, header.skew,
        int(header.sig_len or 0),
    )  # fmt: skip
    for layout in layouts:
        if layout.problem is not None:
            raise UnreadableRecord(header_file, layout.problem)
        if layout.sizes:
            data_file = os.path.join(folder, layout.file_name)
            _check_size(data_file, sizes[layout.file_name], layout)


@dataclass(frozen=True)
class _FileLayout:
    """What the header says one signal file holds; ``problem`` if it cannot describe a file."""

    file_name: str
    problem: str | None = None
    fmt: str = ""
    sizes: tuple[int, ...] = ()  # the sizes the file may have without the offset; () = any
    offset: int = 0
    skewed: bool = False  # skewed files may hold extra frames
    n_signals: int = 0
    n_frames: int = 0


@lru_cache(maxsize=1024)
def _file_layouts(
    file_name: tuple[str, ...], fmt: tuple[str, ...], samps_per_frame: tuple[int | None, ...],
    byte_offset: tuple[int | None, ...], skew: tuple[int | None, ...], n_frames: int,
) -> tuple[_FileLayout, ...]:  # fmt: skip
    """One layout per signal file, in header order; cached: a release repeats a few layouts."""
    layouts = []
    for name in dict.fromkeys(file_name):
        signals = [i for i, other in enumerate(file_name) if other == name]
        formats = {str(fmt[i]) for i in signals}
        if len(formats) != 1:
            problem = f"signals of {name} have different formats {sorted(formats)}"
            layouts.append(_FileLayout(name, problem))
            continue
        file_fmt = formats.pop()
        per_frame = sum(int(samps_per_frame[i] or 1) for i in signals)
        try:
            sizes = signal_file_bytes(file_fmt, n_frames * per_frame)
        except ValueError as exc:
            layouts.append(_FileLayout(name, str(exc)))
            continue
        offset = int(byte_offset[signals[0]] or 0)
        skewed = any(skew[i] for i in signals)
        layouts.append(
            _FileLayout(name, None, file_fmt, sizes, offset, skewed, len(signals), n_frames)
        )
    return tuple(layouts)


def _check_size(data_file: str, size: int, layout: _FileLayout) -> None:
    offset, fmt, n_frames = layout.offset, layout.fmt, layout.n_frames
    expected = [offset + s for s in layout.sizes]
    description = f"{layout.n_signals} signals x {n_frames} samples in format {fmt}" + (
        f" after a {offset}-byte offset" if offset else ""
    )
    if size < expected[0]:
        raise WrongLength(
            data_file,
            f"signal file truncated: {size} bytes, expected {expected[0]} ({description})",
        )
    if size in expected or layout.skewed:
        return
    extra = size - expected[-1]
    hint = ""
    per_signal = _bytes_of_one_signal(fmt, n_frames)
    if per_signal and extra % per_signal == 0:
        hint = f"; that is {extra // per_signal} more interleaved signal(s) than the header lists"
    raise UnreadableRecord(
        data_file,
        f"signal file has {size} bytes, its header implies {expected[-1]} ({description}){hint}; "
        "the file does not match its header",
    )


def _bytes_of_one_signal(fmt: str, n_frames: int) -> int | None:
    return n_frames * _BYTES_PER_SAMPLE[fmt] if fmt in _BYTES_PER_SAMPLE else None


def check_checksums(digital: np.ndarray, header: WfdbHeader, stem: str | Path) -> None:
    """Raise :class:`UnreadableRecord` if a signal's 16-bit sum differs from its header checksum.

    ``digital`` is ``(n_samples, n_signals)`` in header (source) order, as stored (the WFDB
    missing-sample value included, as in the checksum).  Headers write the checksum signed or
    unsigned; both are compared modulo 2**16.  Signals without a checksum are not checked.
    """
    if digital.dtype == np.int16:  # the 16-bit sum wraps exactly like the checksum: no widening
        sums = reduce_columns(np.add, digital.view(np.uint16), np.uint16).tolist()
    else:
        sums = (digital.sum(axis=0, dtype=np.int64) % _CHECKSUM_MODULUS).tolist()
    bad = [
        i
        for i, (checksum, total) in enumerate(zip(header.checksum, sums, strict=True))
        if checksum is not None and (total - int(checksum)) % _CHECKSUM_MODULUS
    ]
    if not bad:
        return
    names = [str(header.sig_name[i] or i) for i in bad]
    first = bad[0]
    data_file = os.path.join(os.path.dirname(os.fspath(stem)), header.file_name[first])
    raise UnreadableRecord(
        data_file,
        f"checksum mismatch for {len(bad)} signal(s) ({', '.join(names[:4])}"
        f"{', ...' if len(names) > 4 else ''}): header {int(header.checksum[first])}, data "
        f"{sums[first]} for {names[0]}; the signal file does not match its header",
    )
