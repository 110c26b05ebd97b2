"""Locate the shared real sample files (``../shared/realdata`` beside the checkout) for tests.

Conftest-free on purpose: test modules import :func:`realdata` and get a ``pytest.skip`` when the
folder or file is absent (CI without the samples, or a fresh clone).  ``GATED_SYMILE_REALDATA``
overrides the location.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REALDATA = Path(
    os.environ.get("GATED_SYMILE_REALDATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
)


def realdata(*parts: str, stem: bool = False) -> Path:
    """Path under the real-data folder; skips the test when it is absent.

    ``stem=True`` checks for ``<path>.hea`` (a WFDB record given without extension).
    """
    path = REALDATA.joinpath(*parts)
    probe = path.with_name(path.name + ".hea") if stem else path
    if not probe.exists():
        pytest.skip(f"real sample file not available: {probe}")
    return path
