"""User-facing error types.

Every reader and stage raises one of these for bad input so that the CLI can print one line
naming the file and the problem (exit code 2) instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class GatedSymileError(Exception):
    """Base class: the message is meant for the user, not for a developer."""


class ConfigError(GatedSymileError):
    """A configuration key is missing, unknown or of the wrong type."""


class RecordError(GatedSymileError):
    """A raw record (ECG, radiograph, table, XML) cannot be used.

    ``path`` names the file; ``problem`` is a short reason that also goes into exclusion tables.
    It is kept on one line (runs of whitespace become one space): third-party parsers put line
    breaks in their messages, and both the CLI line and an exclusions cell must stay one line.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


class UnsupportedRecord(RecordError):
    """The file is valid but in a format or encoding this installation cannot decode."""
