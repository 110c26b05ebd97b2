"""Run the Snakemake CLI of this checkout in a subprocess (what a user types, nothing mocked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake_command(*args: str | Path) -> tuple[list[str], dict[str, str]]:
    """``snakemake`` argv and environment, with the venv's console scripts (gated-symile) first on PATH."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), *map(str, args)], env


def snakemake(*args: str | Path, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd, env = snakemake_command(*args)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
