"""Test-wide settings: one torch thread per test process keeps the suite fast on 2-core CI
machines (oversubscribed BLAS threads slowed model tests several-fold)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
