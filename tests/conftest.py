"""Test-wide settings, applied before any test module imports torch.

- One BLAS/OpenMP thread per process: oversubscribed threads slowed model tests several-fold on
  the 2-core CI machines.
- The provenance hash cache lives in a per-session temporary folder, never in ~/.cache (the
  variable is inherited by the Snakemake subprocesses of the workflow tests) and is removed when
  the session ends.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
_HASH_CACHE_FOLDER = tempfile.mkdtemp(prefix="gated-symile-hash-cache-")
os.environ["GATED_SYMILE_HASH_CACHE"] = str(Path(_HASH_CACHE_FOLDER) / "sha256.sqlite")
atexit.register(shutil.rmtree, _HASH_CACHE_FOLDER, ignore_errors=True)


@pytest.fixture(scope="session")
def pipeline_outputs(tmp_path_factory) -> dict[str, Path]:
    """Tiny real outputs of every stage (tests/pipeline_outputs.py), built once per session."""
    from tests.pipeline_outputs import build_pipeline_outputs

    return build_pipeline_outputs(tmp_path_factory.mktemp("pipeline_outputs"))


RECOVERY_CONFIG = ("tests/configs/tiny.yaml", "tests/configs/recovery.yaml")


def tiny_workflow_args(workdir: Path) -> list[str | Path]:
    """Snakemake arguments of the tiny MIMIC-style run (tests/configs/recovery.yaml) in ``workdir``."""
    from tests.workflow_helpers import REPO

    return ["--cores", "2", "--workflow-profile", "none", "--directory", workdir,
            "--configfile", *(REPO / c for c in RECOVERY_CONFIG)]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory) -> Path:
    """An undisturbed tiny run of the whole MIMIC-style chain with its report; the working folder."""
    from tests.workflow_helpers import snakemake

    workdir = tmp_path_factory.mktemp("tiny_workflow")
    result = snakemake(*tiny_workflow_args(workdir), timeout=1800)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    report = snakemake("--report", workdir / "results/report.html", *tiny_workflow_args(workdir))
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    return workdir
