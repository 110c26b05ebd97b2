"""Killed runs: a stage killed by hand over its earlier output, and a tiny full run killed (SIGKILL,
Snakemake and its jobs) during a data stage, during training and during aggregation.

A stage killed while it rebuilds an output leaves the earlier output whole (or the new one whole),
never a mixture that a later stage would load as complete. A full run, rerun after each kill,
ends with the outputs of an undisturbed run.

After every kill no file under ``results/`` may be half written: each one at its final name must
read back whole (a stage builds folders under ``.<name>.partial`` and writes files under temporary
names, renaming them only when complete). The final outputs equal the undisturbed run's
(``tiny_workflow`` in conftest.py; wall-clock fields aside) and ``gated-symile audit`` finds every
artefact OK.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gated_symile.cli import main
from gated_symile.training.loop import strip_timing
from tests.conftest import tiny_workflow_args
from tests.pipeline_outputs import tensors_mimic_argv
from tests.workflow_helpers import BIN, snakemake, snakemake_command

pytestmark = pytest.mark.slow

RUN = "results/runs/mimic/gated_symile/p0.0/seed0"
# (what is running, a path that exists only while it runs or part-way through it)
KILL_POINTS = [
    ("tensors stage", "results/tensors/.mimic.partial"),
    ("training, between two epochs", f"{RUN}/checkpoints/last.pt"),
    ("aggregation", "logs/aggregate.log"),
]
COMPARED = [
    "results/mimic/cohort/cohort.parquet", "results/mimic/cohort/exclusions.parquet",
    "results/mimic/splits/train.parquet", "results/mimic/splits/candidates_test.npy",
    "results/tensors/mimic/metadata.json", "results/tensors/mimic/train/ecg.npy",
    "results/tensors/mimic/test/cxr.npy", "results/misalign/mimic/p1.0/manifest_train.parquet",
    f"{RUN}/metrics.json", f"{RUN}/history.jsonl", "results/runs/mimic/gated_symile/p1.0/seed0/metrics.json",
    "results/tables/summary.csv", "results/tables/gate_diagnostics.csv", "results/tables/top1_by_p.csv",
]  # fmt: skip


def run_until(workdir: Path, trigger: str) -> bool:
    """Start the workflow and SIGKILL it (the whole process group) once ``trigger`` exists.

    Returns False when the run finished before the trigger appeared.
    """
    assert not (workdir / trigger).exists()
    cmd, env = snakemake_command(*tiny_workflow_args(workdir), "--rerun-incomplete")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 1200
    while proc.poll() is None and time.monotonic() < deadline:
        if (workdir / trigger).exists():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return False


def whole_files(results: Path) -> list[str]:
    """Every file at its final name, read back; the ones that are not whole."""
    broken = []
    for path in results.rglob("*"):
        parts = set(path.relative_to(results).parts)
        if not path.is_file() or "mlflow" in parts or any(p.endswith((".partial", ".tmp")) for p in parts):
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".jsonl":
                [json.loads(line) for line in path.read_text().splitlines()]
            elif path.suffix == ".parquet":
                pq.read_table(path)
            elif path.suffix == ".npy":
                np.load(path, mmap_mode="r")
            elif path.suffix == ".pt":
                import torch

                torch.load(path, weights_only=True)
            elif path.suffix in (".csv", ".md", ".txt"):
                text = path.read_text()
                assert text == "" or text.endswith("\n")
        except Exception as exc:  # noqa: BLE001 - any failure to read back is the finding
            broken.append(f"{path}: {type(exc).__name__}")
    return broken


def content(path: Path) -> object:
    if path.suffix == ".json" and path.name != "metadata.json":
        return {k: v for k, v in json.loads(path.read_text()).items() if k != "timing"}
    if path.suffix == ".jsonl":
        return [strip_timing(json.loads(line)) for line in path.read_text().splitlines()]
    return path.read_bytes()


def test_killed_runs_resume_to_the_undisturbed_outputs(tiny_workflow, tmp_path):
    workdir = tmp_path / "killed"
    caught = []
    for what, trigger in KILL_POINTS:
        if run_until(workdir, trigger):
            caught.append(what)
        assert whole_files(workdir / "results") == [], what
        unlock = snakemake("--unlock", *tiny_workflow_args(workdir))
        assert unlock.returncode == 0, unlock.stderr[-2000:]
    assert caught == [what for what, _ in KILL_POINTS]  # each kill landed while its stage ran

    final = snakemake(*tiny_workflow_args(workdir), "--rerun-incomplete", timeout=1800)
    assert final.returncode == 0, final.stdout[-5000:] + final.stderr[-5000:]
    assert whole_files(workdir / "results") == []
    assert not list((workdir / "results").rglob("*.partial"))
    for rel in COMPARED:
        assert content(workdir / rel) == content(tiny_workflow / rel), rel
    assert main(["audit", str(workdir / "results")]) == 0


def _state(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "provenance.json"}  # fmt: skip


def _kill_once_writing(argv: list, out: Path) -> None:
    """Run a stage and SIGKILL it as soon as it touches ``out`` or creates anything beside it."""
    before, siblings = _state(out), set(out.parent.iterdir())
    proc = subprocess.Popen([str(BIN / "gated-symile"), *map(str, argv)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    while proc.poll() is None:
        if set(out.parent.iterdir()) != siblings or _state(out) != before:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the stage ended before it wrote anything"


@pytest.mark.parametrize("stage", ["splits", "tensors"])
def test_a_stage_killed_over_its_earlier_output_leaves_a_whole_one(pipeline_outputs, tmp_path, stage):
    """Rebuilding with another seed and killed at its first write: ``out`` holds the old output or
    the new one, whole, never new files beside old ones (which the next stage would load)."""
    b = pipeline_outputs
    argv = {
        "splits": lambda out: ["splits", "mimic", "--cohort", b["cohort"] / "cohort.parquet", "--out", out, "--seed", 1],
        "tensors": lambda out: [*tensors_mimic_argv(b, b["splits"], out), "--seed", 1],
    }[stage]  # fmt: skip
    out = tmp_path / "runs" / stage
    shutil.copytree(b[stage], out)
    old = _tree(out)
    assert main([str(a) for a in argv(tmp_path / "reference")]) == 0
    new = _tree(tmp_path / "reference")
    assert new != old
    _kill_once_writing(argv(out), out)
    after = _tree(out)
    rewritten = sorted(name for name in after if after[name] != old.get(name))
    assert after in (old, new), f"old and new files mixed; rewritten: {rewritten}"


SYNTH = {
    "mimic": ["synth", "mimic", "--admissions", 12, "--image-size", 32, "--workers", 1],
    "ukb": ["synth", "ukb", "--participants", 40, "--n-proteins", 5, "--workers", 1],
}


@pytest.mark.parametrize("kind", sorted(SYNTH))
def test_a_synth_killed_over_its_earlier_release_leaves_a_whole_one(tmp_path, kind):
    """A generator rerun with another seed and killed at its first write leaves the earlier release
    or the new one, whole (the cohort would read a half release as complete); the next run
    completes it."""

    def argv(out: Path, seed: int) -> list:
        return [*SYNTH[kind], "--out", out, "--seed", seed]

    out = tmp_path / "raw" / kind
    assert main([str(a) for a in argv(out, 0)]) == 0
    assert main([str(a) for a in argv(tmp_path / "reference", 1)]) == 0
    old, new = _tree(out), _tree(tmp_path / "reference")
    assert new != old
    _kill_once_writing(argv(out, 1), out)
    after = _tree(out)
    rewritten = sorted(name for name in set(after) | set(old) if after.get(name) != old.get(name))
    assert after in (old, new), f"old and new files mixed; rewritten: {rewritten[:5]}"
    assert main([str(a) for a in argv(out, 1)]) == 0
    assert _tree(out) == new
