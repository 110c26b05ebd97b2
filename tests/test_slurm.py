"""The workflow on a real SLURM cluster, through snakemake-executor-plugin-slurm.

The cluster is a single node started by tests/slurm/setup.sh (CI: `.ci/run`, as root), with two
stand-in GPUs so that `gpu: 1` rules are really scheduled with --gpus=1. The run uses the CI copy
of the cluster profile (tests/slurm/profile) and a small config: the MIMIC data stages and one
XOR cell (synth -> misalign -> train -> evaluate), next to the same targets run locally.
Asserted: every non-local job went through the scheduler (its SLURM job id is known to
slurmctld, COMPLETED, under this run's name), the GPU rules asked SLURM for a GPU and the data
stages did not, and the outputs equal the local run's (data byte for byte, metrics exactly).

Without a reachable cluster the tests skip, unless GATED_SYMILE_SLURM=required (set by .ci/run
once setup.sh has started one), where they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.workflow_helpers import BIN, REPO

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

PROFILE = REPO / "tests" / "slurm" / "profile"
CONFIG = REPO / "tests" / "configs" / "slurm.yaml"
XOR_RUN = "results/runs/xor/symile/p1.0/seed0"
TARGETS = ("results/tensors/mimic", f"{XOR_RUN}/metrics.json")
# Rules that must run as SLURM jobs for these targets (track_* are localrules).
REMOTE_RULES = {
    "synth_mimic", "cohort_mimic", "splits_mimic", "tensors_mimic",
    "synth_xor", "misalign", "train", "evaluate",
}
GPU_RULES = {"train", "evaluate"}
# Deterministic data outputs, compared byte for byte with the local run.
DATA_DIRS = ("resources/raw/mimic", "results/mimic", "results/tensors", "results/misalign")
# Seconds before the run is killed: the plugin can wait forever on a broken status command.
RUN_TIMEOUT = 420

SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def _cluster_problem() -> str | None:
    """Why no usable SLURM cluster is reachable, or None if one is."""
    tools = ("sbatch", "squeue", "sinfo", "scontrol")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"SLURM client tools not on PATH ({', '.join(missing)})"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=15)
        if ping.returncode != 0 or "UP" not in ping.stdout:
            return "slurmctld is not running"
        states = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=15
        ).stdout.split()
        config = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=15
        ).stdout
    except subprocess.TimeoutExpired:
        return "slurmctld does not answer within 15 s"
    if not re.search(r"^ClusterName\s*=\s*gated-symile-ci$", config, re.MULTILINE):
        return "the reachable SLURM cluster is not the test cluster (ClusterName gated-symile-ci)"
    if not set(states) & {"idle", "mix", "alloc"}:
        return f"no usable SLURM node (sinfo states: {states or 'none'})"
    min_job_age = re.search(r"^MinJobAge\s*=\s*(\d+)", config, re.MULTILINE)
    init_s = yaml.safe_load((PROFILE / "profile.yaml").read_text())[
        "slurm-init-seconds-before-status-checks"
    ]
    if min_job_age is None or int(min_job_age.group(1)) < 3 * init_s:
        return f"MinJobAge must be >= {3 * init_s} s for squeue status checks"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = _cluster_problem()
    if problem is None:
        return
    hint = "; start one as root with tests/slurm/setup.sh"
    if os.environ.get("GATED_SYMILE_SLURM") == "required":
        pytest.fail(problem + hint)
    pytest.skip(problem + hint)


def _snakemake_cmd(workdir: Path, *options: str) -> list[str]:
    return [
        str(BIN / "snakemake"), *TARGETS, "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(CONFIG), "--workflow-profile", "none",
        *options,
    ]


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """(local workdir, SLURM workdir, SLURM run stdout): the same targets run both ways."""
    local_dir = tmp_path_factory.mktemp("local")
    slurm_dir = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    # The local reference uses the CI profile's thread counts, so both runs do the same work.
    threads = yaml.safe_load((PROFILE / "profile.yaml").read_text()).get("set-threads", {})
    local_cmd = _snakemake_cmd(local_dir, "--cores", "1")
    if threads:
        local_cmd += ["--set-threads", *(f"{rule}={n}" for rule, n in threads.items())]
    # The local run overlaps the SLURM run, which mostly waits on the scheduler's polling.
    local_log = local_dir.parent / f"{local_dir.name}.log"
    with local_log.open("w") as log, subprocess.Popen(
        ["timeout", "-k", "30", str(RUN_TIMEOUT), *local_cmd],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    ) as local:
        slurm = subprocess.run(
            ["timeout", "-k", "30", str(RUN_TIMEOUT),
             *_snakemake_cmd(slurm_dir, "--profile", str(PROFILE))],
            env=env, capture_output=True, text=True,
        )
        local.wait()
    slurm_out = slurm.stdout + slurm.stderr
    assert slurm.returncode == 0, f"SLURM run failed (rc {slurm.returncode}):\n{slurm_out[-6000:]}"
    assert local.returncode == 0, f"local run failed:\n{local_log.read_text()[-4000:]}"
    return local_dir, slurm_dir, slurm_out


def _scontrol_job(job_id: str) -> dict[str, str]:
    """`scontrol show job` as key=value pairs (finished jobs stay visible for MinJobAge)."""
    text = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=15
    ).stdout
    return dict(re.findall(r"(\S+?)=(\S*)", text))


@pytest.fixture(scope="module")
def slurm_jobs(runs) -> dict[str, dict[str, str]]:
    """SLURM job id -> what slurmctld knows about it, for every job the run submitted."""
    _, _, out = runs
    ids = [job_id for job_id, _ in SUBMITTED.findall(out)]
    return {job_id: _scontrol_job(job_id) for job_id in ids}


def _rule_of(job: dict[str, str]) -> str:
    """The plugin files each job under `--comment rule_<name>[_wildcards_<values>]`."""
    return job["Comment"].removeprefix("rule_").split("_wildcards_")[0]


def test_every_remote_job_went_through_the_scheduler(slurm_jobs, capsys):
    with capsys.disabled():
        print("\nSLURM jobs of the run (slurmctld's view):")
        print(f"  {'job id':>7}  {'state':<10} {'gpus':<12} {'cpus':>4}  rule")
        for job_id, job in slurm_jobs.items():
            print(
                f"  {job_id:>7}  {job.get('JobState', '?'):<10} {job.get('TresPerJob', '-'):<12}"
                f" {job.get('NumCPUs', '?'):>4}  {job.get('Comment', '?')}"
            )
    assert slurm_jobs, "no 'submitted with SLURM jobid' line in the Snakemake output"
    assert {_rule_of(job) for job in slurm_jobs.values()} == REMOTE_RULES
    assert len(slurm_jobs) == len(REMOTE_RULES)
    assert all(job["JobState"] == "COMPLETED" for job in slurm_jobs.values())
    # All under one Snakemake run: the plugin names every job after the run's UUID.
    assert len({job["JobName"] for job in slurm_jobs.values()}) == 1


def test_gpu_rules_asked_slurm_for_one_gpu(slurm_jobs):
    for job in slurm_jobs.values():
        if _rule_of(job) in GPU_RULES:
            assert job.get("TresPerJob") == "gres:gpu:1", job
            assert job.get("CpusPerTres") == "gres:gpu:1", job  # cpus_per_gpu: 1
        else:
            assert "TresPerJob" not in job, job


def test_profile_resources_reached_the_scheduler(slurm_jobs):
    profile = yaml.safe_load((PROFILE / "profile.yaml").read_text())
    for job in slurm_jobs.values():
        rule = _rule_of(job)
        resources = {**profile["default-resources"], **profile["set-resources"].get(rule, {})}
        assert job["Partition"] == resources["slurm_partition"]
        assert job["MinMemoryNode"] == f"{resources['mem_mb']}M"
        assert job["TimeLimit"] == f"00:{resources['runtime']:02d}:00"
        if rule in profile.get("set-threads", {}):
            assert job["NumCPUs"] == str(profile["set-threads"][rule])


def _files(root: Path) -> dict[str, bytes]:
    """Data outputs by path; provenance records (times, paths, job ids) are checked apart."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for base in DATA_DIRS
        for path in sorted((root / base).rglob("*"))
        if path.is_file() and not path.name.endswith("provenance.json")
    }


def test_each_stage_recorded_the_slurm_job_it_ran_in(runs, slurm_jobs):
    """The stages' own provenance names the SLURM job that slurmctld filed under their rule."""
    _, slurm_dir, _ = runs
    seen = set()
    for path in slurm_dir.rglob("*provenance.json"):
        record = json.loads(path.read_text())
        rule = record["stage"].replace(" ", "_")
        if rule in REMOTE_RULES:
            job_id = record["slurm_job_id"]
            assert job_id in slurm_jobs and _rule_of(slurm_jobs[job_id]) == rule, path
            seen.add(rule)
        else:  # localrules (MLflow store, parent runs) ran in the Snakemake process itself
            assert record["slurm_job_id"] is None, path
    assert seen == REMOTE_RULES


def test_data_outputs_equal_the_local_run_byte_for_byte(runs):
    local_dir, slurm_dir, _ = runs
    local, slurm = _files(local_dir), _files(slurm_dir)
    assert any(name.endswith("cohort.parquet") for name in local)
    assert any(name.endswith(".npy") for name in local)
    assert sorted(slurm) == sorted(local)
    differing = [name for name in local if local[name] != slurm[name]]
    assert not differing


def test_training_and_evaluation_equal_the_local_run(runs):
    local_dir, slurm_dir, _ = runs
    # Wall-clock timings and MLflow run ids legitimately differ between the two runs.
    volatile = {"timing", "mlflow_run_id", "wall_s_this_invocation"}

    def stable(path: Path) -> dict:
        return {k: v for k, v in json.loads(path.read_text()).items() if k not in volatile}

    for name in ("metrics.json", "train_summary.json"):
        local = stable(local_dir / XOR_RUN / name)
        assert stable(slurm_dir / XOR_RUN / name) == local, name
    assert "top1" in stable(local_dir / XOR_RUN / "metrics.json")["metrics"]
