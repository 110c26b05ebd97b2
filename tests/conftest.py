"""Test-wide settings, applied before any test module imports torch.

- One BLAS/OpenMP thread per process: oversubscribed threads slowed model tests several-fold on
  the 2-core CI machines.
- The provenance hash cache lives in a per-session temporary folder, never in ~/.cache (the
  variable is inherited by the Snakemake subprocesses of the workflow tests).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["GATED_SYMILE_HASH_CACHE"] = str(
    Path(tempfile.mkdtemp(prefix="gated-symile-hash-cache-")) / "sha256.sqlite"
)
