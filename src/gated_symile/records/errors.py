"""Typed record errors raised by the raw-record readers.

They all derive from :class:`gated_symile.errors.RecordError`, so the CLI prints one line
``<file>: <problem>`` and cohort stages can put ``problem`` into an exclusion table, while code
that needs to branch (e.g. "missing file" vs "wrong sampling rate") can catch the subclass.
"""

from __future__ import annotations

from gated_symile.errors import RecordError, UnsupportedRecord

__all__ = [
    "MissingRecord",
    "NotGrayscale",
    "RecordError",
    "UnreadableRecord",
    "UnsupportedRecord",
    "WrongLeads",
    "WrongLength",
    "WrongSamplingRate",
]


class MissingRecord(RecordError):
    """A file the record needs (header, signal file, image) does not exist."""


class UnreadableRecord(RecordError):
    """The file exists but is malformed: broken header, truncated data, not the expected format."""


class WrongSamplingRate(RecordError):
    """An ECG whose sampling frequency differs from the one the cohort expects."""


class WrongLength(RecordError):
    """An ECG with a different number of samples than expected (or truncated signal data)."""


class WrongLeads(RecordError):
    """An ECG whose lead set is not exactly the 12 standard leads."""


class NotGrayscale(RecordError):
    """An image that is not a single-frame, single-channel grayscale radiograph."""
