"""The train rule as one SLURM job with two tasks (srun launcher, gloo on CPU, two stand-in GPUs).

Runs on the single-node test cluster of tests/slurm/setup.sh (skips without it, like
tests/test_slurm.py): the XOR cell is trained by `snakemake --profile tests/slurm/profile` with
`train: {devices: 2, launcher: srun}` and `--set-resources train:gpu=2`, and locally as one
process; the job must be visible to slurmctld with two tasks and two GPUs, and the weights must
equal the single-process run's (float64, same global batches).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
import yaml

from tests.distributed_helpers import relative_error
from tests.test_slurm import (  # noqa: F401
    CONFIG,
    PROFILE,
    RUN_TIMEOUT,
    SUBMITTED,
    _scontrol_job,
    cluster,
)
from tests.workflow_helpers import BIN, REPO

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

XOR_SUMMARY = "results/runs/xor/symile/p1.0/seed0/train_summary.json"


def _snakemake(workdir, extra_config, *options):
    return [
        str(BIN / "snakemake"), XOR_SUMMARY, "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(CONFIG), str(extra_config),
        "--workflow-profile", "none", *options,
    ]


def test_two_task_training_job_equals_one_local_process(cluster, tmp_path):  # noqa: F811
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump({"train": {"precision": "fp64"}}))
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump({"train": {"precision": "fp64", "devices": 2, "launcher": "srun"}}))

    local = subprocess.run(
        _snakemake(tmp_path / "local", one, "--cores", "1"),
        env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )
    assert local.returncode == 0, local.stderr[-4000:]
    slurm = subprocess.run(
        ["timeout", "-k", "30", str(RUN_TIMEOUT),
         *_snakemake(tmp_path / "slurm", two, "--profile", str(PROFILE),
                     "--set-resources", "train:gpu=2")],
        env=env, capture_output=True, text=True, check=False,
    )
    out = slurm.stdout + slurm.stderr
    assert slurm.returncode == 0, out[-6000:]

    jobs = {job_id: _scontrol_job(job_id) for job_id, _ in SUBMITTED.findall(out)}
    train = [j for j in jobs.values() if j["Comment"].startswith("rule_train")]
    assert len(train) == 1 and train[0]["JobState"] == "COMPLETED"
    assert train[0]["NumTasks"] == "2" and train[0].get("TresPerJob") == "gres:gpu:2", train[0]

    run = "results/runs/xor/symile/p1.0/seed0"
    summary = json.loads((tmp_path / "slurm" / run / "train_summary.json").read_text())
    reference = json.loads((tmp_path / "local" / run / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and "world_size" not in reference
    assert summary["config_sha256"] == reference["config_sha256"]
    a = torch.load(tmp_path / "slurm" / run / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "local" / run / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert max(relative_error(a[k], b[k]) for k in b if b[k].is_floating_point()) <= 1e-8
