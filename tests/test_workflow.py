"""Workflow hygiene: formatting, lint, config validation and the planned DAG (dry runs)."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from gated_symile.run_grid import dataset_ps, dataset_seeds
from tests.workflow_helpers import BIN, REPO, snakemake

TINY = REPO / "tests" / "configs" / "tiny.yaml"


def test_snakefmt_check_passes():
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow/rules").glob("*.smk"))]
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", *files], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_snakemake_lint_passes():
    result = snakemake("--lint", "--workflow-profile", "none")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("configfile", [None, TINY], ids=["default", "tiny"])
def test_dry_run_plans_every_stage(configfile, tmp_path):
    args = ["-n", "--cores", "2", "--workflow-profile", "none", "--directory", tmp_path]
    if configfile:
        args += ["--configfile", configfile]
    result = snakemake(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    for rule in (
        "synth_mimic",
        "cohort_mimic",
        "splits_mimic",
        "tensors_mimic",
        "synth_xnor",
        "synth_xor",
        "track_init",
        "track_parent",
        "train",
        "evaluate",
    ):
        assert rule in result.stdout, f"{rule} missing from the plan"


def test_real_data_paths_replace_the_generator(tmp_path):
    """With raw.mimic.source external the cohort reads the user's directories, no synth job."""
    for part in ("mimic-iv", "ecg", "cxr"):
        (tmp_path / part).mkdir()
    cfg = tmp_path / "real.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "experiment": {"datasets": ["mimic"], "methods": ["clip"], "seeds": [0], "p": [0.0]},
                "raw": {
                    "mimic": {
                        "source": "external",
                        "mimic_iv": str(tmp_path / "mimic-iv"),
                        "ecg": str(tmp_path / "ecg"),
                        "cxr": str(tmp_path / "cxr"),
                    }
                },
            }
        )
    )
    result = snakemake(
        "-n", "--cores", "1", "--workflow-profile", "none", "--directory", tmp_path,
        "--configfile", cfg,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "synth_mimic" not in result.stdout
    assert "cohort_mimic" in result.stdout


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"train": {"lrr": 0.1}}, "lrr"),
        ({"synth": {"mimic": {"admissions": "many"}}}, "admissions"),
        ({"experiment": {"datasets": ["imagenet"]}}, "imagenet"),
        # the grid moved to experiment.seeds / experiment.p (gated_symile.run_grid)
        ({"datasets": {"mimic": {"seeds": [0]}}}, "'seeds' was unexpected"),
    ],
)
def test_bad_config_fails_at_start_naming_the_key(override, key, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(override))
    result = snakemake(
        "-n", "--cores", "1", "--workflow-profile", "none", "--directory", tmp_path,
        "--configfile", cfg,
    )
    assert result.returncode != 0
    assert key in result.stderr + result.stdout


@pytest.mark.parametrize("name", ["paper-xnor", "paper-mimic", "paper-ukb"])
def test_paper_scale_configs_validate_and_resolve(name):
    """Each shipped config, merged over config.yaml as --configfile does, passes the schema and
    resolves a RunConfig for every cell."""
    import jsonschema

    from gated_symile.schemas import config_schema
    from snakemake.utils import update_config

    from gated_symile.config import resolve_run_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text()))
    schema = config_schema()
    jsonschema.Draft202012Validator(schema).validate(config)
    for dataset in config["experiment"]["datasets"]:
        for method in config["experiment"]["methods"]:
            assert resolve_run_config(config, dataset, method, 0).method == method
        # the paper's three seeds and misalignment grid, not config.yaml's CPU-sized lists
        assert dataset_seeds(config, dataset) == [0, 1, 2], f"{name}: {dataset} seeds"
        assert dataset_ps(config, dataset) == config["experiment"]["p"], f"{name}: {dataset} p"


def test_default_config_passes_schema_and_dataclasses():
    import jsonschema

    from gated_symile.schemas import config_schema

    from gated_symile.config import resolve_run_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    schema = config_schema()
    jsonschema.Draft202012Validator(schema).validate(config)
    for dataset in config["datasets"]:
        for method in config["methods"]:
            resolve_run_config(config, dataset, method, 0)
