"""The SLURM profiles as Snakemake resolves them (dry runs: no cluster needed, plugin installed).

Catches the profile-merge pitfall: Snakemake merges profiles per top-level key, so a
`default-resources` or `set-resources` in the local workflow profile would silently replace the
cluster profile's and put GPU jobs on the CPU partition without a GPU.
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.workflow_helpers import REPO, snakemake

SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"
LOCAL_PROFILE = REPO / "workflow" / "profiles" / "default"
CI_PROFILE = REPO / "tests" / "slurm" / "profile"
CI_CONFIG = REPO / "tests" / "configs" / "slurm.yaml"
# Keys that decide where and how jobs run: only ever in a cluster profile.
CLUSTER_KEYS = {"executor", "jobs", "default-resources", "set-resources", "set-threads"}

# One planned job: "rule NAME:" (or "localrule"), indented details, then "Shell command: ...".
BLOCK = re.compile(r"^(?:local)?rule (\w+):\n(.*?)(?=^\[|^Job stats|\Z)", re.MULTILINE | re.DOTALL)


def _profile(path) -> dict:
    return yaml.safe_load((path / "profile.yaml").read_text())


def _planned_jobs(tmp_path, *options) -> list[tuple[str, dict[str, str], str]]:
    """(rule, resolved resources, shell command) of every job a dry run plans."""
    # --cores only lifts the dry run's 1-core cap on threads (a real SLURM run has none).
    result = snakemake("-n", "--cores", "64", "--directory", tmp_path, *options)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = []
    for rule, body in BLOCK.findall(result.stdout):
        resources = re.search(r"^\s+resources: (.*)$", body, re.MULTILINE)
        pairs = resources.group(1).split(", ") if resources else []
        shell = re.search(r"^Shell command: (.*)$", body, re.MULTILINE)
        jobs.append((rule, dict(p.split("=", 1) for p in pairs), shell.group(1) if shell else ""))
    assert jobs, result.stdout[-3000:]
    return jobs


@pytest.fixture(scope="module")
def cluster_plan(tmp_path_factory):
    return _planned_jobs(
        tmp_path_factory.mktemp("plan"), "--profile", SLURM_PROFILE, "--workflow-profile", "none"
    )


def _by_rule(jobs) -> dict[str, list[tuple[dict[str, str], str]]]:
    rules: dict[str, list] = {}
    for rule, resources, shell in jobs:
        rules.setdefault(rule, []).append((resources, shell))
    return rules


def test_gpu_stages_ask_for_one_gpu_on_the_gpu_partition(cluster_plan):
    rules = _by_rule(cluster_plan)
    expected = {"train": ("8", "480", "64000"), "evaluate": ("4", "60", "32000")}
    for rule, (cpus_per_gpu, runtime, mem_mb) in expected.items():
        assert rules[rule], rule
        for resources, _ in rules[rule]:
            assert resources["gpu"] == "1"
            assert resources["slurm_partition"] == "<gpu-partition>"
            assert (resources["cpus_per_gpu"], resources["runtime"], resources["mem_mb"]) == (
                cpus_per_gpu, runtime, mem_mb,
            )


def test_data_stages_get_cpus_and_memory_sized_to_the_stage(cluster_plan):
    profile = _profile(SLURM_PROFILE)
    rules = _by_rule(cluster_plan)
    for rule in ("synth_mimic", "cohort_mimic", "splits_mimic", "tensors_mimic", "misalign"):
        for resources, shell in rules[rule]:
            assert "gpu" not in resources, rule
            assert resources["slurm_partition"] == "<cpu-partition>"
            assert resources["mem_mb"] == str(profile["set-resources"][rule]["mem_mb"])
            if rule in profile["set-threads"]:
                # --cpus-per-task follows the threads, and the stage uses them as workers.
                assert f"--workers {profile['set-threads'][rule]}" in shell, shell
    assert rules["cohort_mimic"][0][0]["mem_mb"] == "64000"


def test_every_cluster_job_carries_the_account(cluster_plan):
    for rule, resources, _ in cluster_plan:
        if rule != "all":
            assert resources["slurm_account"] == "<account>", rule


def test_local_profile_cannot_override_the_cluster_profile(tmp_path):
    local, cluster = _profile(LOCAL_PROFILE), _profile(SLURM_PROFILE)
    assert not CLUSTER_KEYS & local.keys()
    # Keys in both (general run options) must agree, so precedence can never change a run.
    assert {key: local[key] for key in local.keys() & cluster.keys()} == {
        key: cluster[key] for key in local.keys() & cluster.keys()
    }
    # And resolved: the cluster profile with the local one as workflow profile (as make does).
    jobs = _planned_jobs(tmp_path, "--profile", SLURM_PROFILE, "--workflow-profile", LOCAL_PROFILE)
    train = [resources for rule, resources, _ in jobs if rule == "train"]
    assert train
    assert all(r["gpu"] == "1" and r["slurm_partition"] == "<gpu-partition>" for r in train)


def test_ci_profile_mirrors_the_cluster_profile(tmp_path):
    ci, cluster = _profile(CI_PROFILE), _profile(SLURM_PROFILE)

    def gpu_rules(profile):
        resources = profile["set-resources"]
        return {rule for rule, res in resources.items() if "gpu" in res or "gres" in res}

    assert gpu_rules(ci) == gpu_rules(cluster) == {"train", "evaluate"}
    assert ci["slurm-status-command"] == "squeue"  # the test cluster has no accounting
    assert "slurm_account" not in ci["default-resources"]
    jobs = _planned_jobs(
        tmp_path, "--profile", CI_PROFILE, "--workflow-profile", "none", "--configfile", CI_CONFIG
    )
    for rule, resources, _ in jobs:
        if rule == "all":
            continue
        assert resources["slurm_partition"] == "debug", rule
        assert ("gpu" in resources) == (rule in {"train", "evaluate"}), rule
