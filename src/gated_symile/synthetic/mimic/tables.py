"""CSV writers with the byte conventions of the releases (gzip with a fixed header, no index).

``gzip`` headers normally carry the current time and the file name; both are fixed here
(``mtime=0``, empty name) so that the same seed gives byte-identical files.  Large tables are
streamed chunk by chunk through one :class:`GzipCsvWriter`, so memory stays bounded.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import polars as pl

COMPRESS_LEVEL = 1
"""Fastest deflate: the 10-million-row labevents table is compression-bound; size does not matter."""


class GzipCsvWriter:
    """Append polars frames to one gzip CSV; the header is written with the first frame."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = columns
        self.rows = 0
        self._header_done = False
        self._raw = open(path, "wb")
        self._gz = gzip.GzipFile(
            filename="",
            mode="wb",
            fileobj=self._raw,
            mtime=0,
            compresslevel=COMPRESS_LEVEL,
        )

    def write(self, frame: pl.DataFrame) -> None:
        if list(frame.columns) != self.columns:
            raise ValueError(
                f"columns {frame.columns} differ from the header {self.columns}"
            )
        buffer = io.BytesIO()
        empty_as_null(frame).write_csv(buffer, include_header=not self._header_done)
        self._gz.write(buffer.getvalue())
        self.rows += frame.height
        self._header_done = True

    def close(self) -> None:
        if not self._header_done:  # an empty table still gets its header
            self._gz.write((",".join(self.columns) + "\n").encode())
        self._gz.close()
        self._raw.close()

    def __enter__(self) -> GzipCsvWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def empty_as_null(frame: pl.DataFrame) -> pl.DataFrame:
    """Empty strings become nulls: the releases have one null spelling, the empty field
    (polars would otherwise write ``""``)."""
    return frame.with_columns(pl.col(pl.String).replace("", None))


def write_csv(frame: pl.DataFrame, path: Path) -> int:
    """Write one table: gzip when ``path`` ends in ``.gz`` (fixed header), plain CSV otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with GzipCsvWriter(path, list(frame.columns)) as writer:
            writer.write(frame)
    else:
        empty_as_null(frame).write_csv(path)
    return frame.height
