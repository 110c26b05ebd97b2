"""Reading ahead: files opened early, with the kernel asked to start reading them at once.

Why: a cohort reads tens of thousands of small record files.  Read one after another, each read
from a cold disk waits for the previous one, so a worker idles for the device's latency per file
and the disk sees one request at a time.  Opening the next block's files with
``posix_fadvise(WILLNEED)`` queues all their reads together; by the time the worker gets to them,
the bytes are in the page cache.  With the release already cached, the advice costs about a
microsecond per file.  :func:`blocks_read_ahead` hands over the descriptors it opened: a reader
that takes descriptors (the ECG batch check) reads those; one that opens files by path (the DICOM
header scan) opens them a second time (a few microseconds).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

__all__ = ["blocks_read_ahead", "close_all", "open_advised"]


def open_advised(path: str, advice: int = os.POSIX_FADV_WILLNEED, length: int = 0) -> int | None:
    """``path`` opened read-only with ``advice`` given for its first ``length`` bytes (0: the
    whole file; ``WILLNEED``: start reading them now; ``DONTNEED``: drop them from the page
    cache); ``None`` if it cannot be opened.

    The advice is only a hint: where it cannot be given (a file system without it), the file is
    still returned open and is read as usual."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        os.posix_fadvise(fd, 0, length, advice)
    except OSError:
        pass
    return fd


def close_all(fds: Iterable[int | None]) -> None:
    """Close each open descriptor of ``fds`` (``None``: a file that could not be opened)."""
    for fd in fds:
        if fd is not None:
            os.close(fd)


def blocks_read_ahead(
    files: Sequence[Sequence[str]], block: int, length: int = 0
) -> Iterator[tuple[range, list[tuple[int | None, ...]]]]:
    """The items ``files`` (each item's file paths) in blocks of ``block`` items: each block's
    indices and its items' descriptors (``None``: could not be opened).  A block's files are
    opened, and their first ``length`` bytes (0: whole files) being read, while the block before
    is handed over; its descriptors are closed when the next block is asked for, or when the
    generator is closed (use it in ``contextlib.closing`` where the loop may stop early)."""
    ahead = _open_block(files[:block], length)
    try:
        for start in range(0, len(files), block):
            current, ahead = ahead, []
            try:
                ahead = _open_block(files[start + block : start + 2 * block], length)
                yield range(start, start + len(current)), current
            finally:
                close_all(fd for item in current for fd in item)
    finally:
        close_all(fd for item in ahead for fd in item)


def _open_block(files: Sequence[Sequence[str]], length: int) -> list[tuple[int | None, ...]]:
    """Each item's files opened with ``WILLNEED`` on their first ``length`` bytes; if an open
    raises (a path ``os.open`` refuses outright), the ones already opened are closed."""
    every: list[int | None] = []
    try:
        for item in files:
            every += [open_advised(path, os.POSIX_FADV_WILLNEED, length) for path in item]
    except BaseException:
        close_all(every)
        raise
    fds = iter(every)
    return [tuple(next(fds) for _ in item) for item in files]
