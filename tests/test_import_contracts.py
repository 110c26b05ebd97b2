"""The layering of the package, as import-linter contracts (``[tool.importlinter]`` in pyproject).

``cli`` -> ``stages`` -> library; the library never imports ``stages`` or ``cli``; the method does
no I/O; readers need no torch. The second test breaks a layer in a copy of the package and checks
that the contracts notice, so a contract that has stopped checking anything fails the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on the package under ``root/src`` with ``root/pyproject.toml``."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def tool() -> Path:
    if not LINT_IMPORTS.is_file():
        pytest.fail(f"{LINT_IMPORTS} is missing: import-linter is a test dependency (pyproject [test])")
    return LINT_IMPORTS


def test_the_package_keeps_its_layers(tool: Path) -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("method/losses.py", "import gated_symile.stages.train\n"),  # the library imports a stage
        ("method/gate.py", "import gated_symile.records\n"),  # the method imports a reader
        ("records/errors.py", "import torch\n"),  # a reader imports torch
        ("stages/train.py", "import gated_symile.cli\n"),  # a stage imports the CLI
    ],
)
def test_a_broken_layer_fails_the_contracts(tool: Path, tmp_path: Path, module: str, line: str) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "src" / "gated_symile", tmp_path / "src" / "gated_symile",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "src" / "gated_symile" / module
    target.write_text(target.read_text() + "\n" + line)
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
