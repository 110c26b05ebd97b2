"""``gated-symile inspect`` exit statuses, through the real command line (a subprocess).

0: every record usable; 1: some record readable but failing the ECG QC rule in force (one
``PATH: reason`` line each on stderr); 2: some record unreadable or unusable (2 wins over 1).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.test_records_wfdb import write_mimic_record


def inspect(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gated_symile.cli", "inspect", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("inspect")
    rng = np.random.default_rng(0)
    flat = rng.integers(-300, 300, size=(5000, 12)).astype(np.int32)
    flat[:, 7] = 11  # lead V1 constant: kept by symile, rejected by strict
    nan = rng.integers(-300, 300, size=(5000, 12)).astype(np.int32)
    nan[:, 2] = -32768  # lead III all missing
    short = np.zeros((2500, 12), dtype=np.int32)
    return {
        "good": write_mimic_record(root, "40000001"),
        "zeros": write_mimic_record(root, "40000002", digital=np.zeros((5000, 12), np.int32)),
        "nan": write_mimic_record(root, "40000003", digital=nan),
        "flat": write_mimic_record(root, "40000004", digital=flat),
        "short": write_mimic_record(root, "40000005", digital=short),
        "absent": root / "40000009",
    }


def test_every_record_usable_exits_0(records):
    result = inspect(records["good"], records["flat"])
    assert (result.returncode, result.stderr) == (0, "")
    assert "symile: keep; strict: reject (flat leads" in result.stdout


def test_records_failing_qc_exit_1_with_one_line_each(records):
    result = inspect(records["good"], records["zeros"], records["nan"])
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{records['zeros']}: fails ECG QC rule symile: ECG is all zeros",
        f"{records['nan']}: fails ECG QC rule symile: ECG has 5000 NaN samples",
    ]
    assert result.stdout.count("WFDB record") == 3  # the summaries are still printed


def test_the_qc_rule_in_force_decides(records):
    result = inspect("--qc-rule", "strict", records["good"], records["flat"])
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{records['flat']}: fails ECG QC rule strict: flat leads (zero variance) at columns [7]"
    ]


def test_an_unreadable_record_exits_2_even_with_qc_failures(records):
    result = inspect(records["zeros"], records["short"], records["absent"], records["good"])
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 3
    assert lines[0] == f"{records['zeros']}: fails ECG QC rule symile: ECG is all zeros"
    assert lines[1].startswith(f"{records['short']}: ") and "2500 samples" in lines[1]
    assert lines[2].startswith(f"{records['absent']}: file does not exist")
    assert "Traceback" not in result.stderr


def test_an_unknown_qc_rule_is_a_one_line_error(records):
    result = inspect("--qc-rule", "lenient", records["good"])
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --qc-rule must be one of symile, strict, got 'lenient'"


def test_help_documents_the_exit_statuses():
    text = subprocess.run(
        [sys.executable, "-m", "gated_symile.cli", "inspect", "--help"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    flat = " ".join(text.split())
    assert "exit status: 0 when every record is usable; 1 when some record is readable" in flat
    assert "2 when some record cannot be read" in flat
