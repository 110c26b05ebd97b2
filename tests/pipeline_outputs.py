"""Tiny real outputs of every stage, built once per test session by the CLI (``gated_symile.cli``).

MIMIC-style chain (synth -> cohort -> splits -> tensors), UK-Biobank-style chain (synth -> cohort
-> union tensors of fold 0), Synthetic-XNOR tensors with a noise misalignment, one trained and
evaluated Gated Symile run, a runs tree for ``aggregate`` and a results tree for ``audit``.
The hostile-input and full-disk tests damage copies of these (the session fixture
``pipeline_outputs`` in conftest.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gated_symile.cli import main
from tests.train_helpers import inline, tiny_run_config, write_tiny_xnor

RUN_ID = "0123456789abcdef0123456789abcdef"


def cli(*argv: str | Path | float) -> int:
    return main([str(a) for a in argv])


def tensors_mimic_argv(b: dict[str, Path], splits: Path, out: Path) -> list:
    return ["tensors", "mimic", "--splits", splits, "--ecg", b["raw"] / "mimic-iv-ecg",
            "--cxr", b["raw"] / "mimic-cxr-jpg", "--out", out, "--cxr-size", 32]  # fmt: skip


def tensors_ukb_argv(cohort: Path, out: Path) -> list:
    return ["tensors", "ukb", "--cohort", cohort, "--variant", "union", "--fold", 0, "--out", out,
            "--ehr-min-count", 2]  # fmt: skip


def train_argv(tensors: Path, misalignment: Path, config: Path | str, out: Path) -> list:
    return ["train", "--tensors", tensors, "--misalignment", misalignment, "--run-config", config,
            "--out", out, "--tracking-uri", "none", "--progress", "never"]  # fmt: skip


def evaluate_argv(run: Path, tensors: Path, misalignment: Path, out: Path) -> list:
    return ["evaluate", "--run", run, "--tensors", tensors, "--misalignment", misalignment,
            "--out", out, "--tracking-uri", "none", "--bootstrap-n", 5]  # fmt: skip


def build_pipeline_outputs(root: Path) -> dict[str, Path]:
    """Build every output under ``root``; returns their paths by name (about 40 s on 2 cores)."""
    b = {name: root / name for name in (
        "raw", "cohort", "splits", "tensors", "ukb_raw", "ukb_cohort", "ukb_tensors", "xnor",
        "misalign", "run", "runs", "results",
    )}  # fmt: skip
    assert cli("synth", "mimic", "--out", b["raw"], "--admissions", 60, "--image-size", 64) == 0
    assert cli("cohort", "mimic", "--mimic-iv", b["raw"] / "mimic-iv", "--ecg", b["raw"] / "mimic-iv-ecg",
               "--cxr", b["raw"] / "mimic-cxr-jpg", "--out", b["cohort"]) == 0  # fmt: skip
    assert cli("splits", "mimic", "--cohort", b["cohort"] / "cohort.parquet", "--out", b["splits"]) == 0
    assert cli(*tensors_mimic_argv(b, b["splits"], b["tensors"])) == 0
    assert cli("synth", "ukb", "--out", b["ukb_raw"], "--participants", 200, "--n-proteins", 10,
               "--olink-frac", 0.5) == 0  # fmt: skip
    assert cli("cohort", "ukb", "--raw", b["ukb_raw"], "--out", b["ukb_cohort"]) == 0
    assert cli(*tensors_ukb_argv(b["ukb_cohort"], b["ukb_tensors"])) == 0
    write_tiny_xnor(b["xnor"], n_samples=320)
    assert cli("misalign", "--tensors", b["xnor"], "--out", b["misalign"], "--p", 0.5, "--mode", "noise") == 0
    config = root / "run_config.yaml"
    config.write_text(inline(tiny_run_config("gated_symile", epochs=1)))
    b["config"] = config
    assert cli(*train_argv(b["xnor"], b["misalign"], config, b["run"])) == 0
    (b["run"] / "mlflow_run_id.txt").write_text(RUN_ID + "\n")
    assert cli(*evaluate_argv(b["run"], b["xnor"], b["misalign"], b["run"] / "metrics.json")) == 0
    for seed in (0, 1):
        cell = b["runs"] / "xnor" / "gated_symile" / "p0.5" / f"seed{seed}"
        cell.mkdir(parents=True)
        for name in ("metrics.json", "resolved_config.yaml"):
            shutil.copy(b["run"] / name, cell / name)
    shutil.copy(b["cohort"] / "attrition.csv", b["runs"] / "attrition.csv")
    shutil.copytree(b["run"], b["results"] / "run")
    return b
