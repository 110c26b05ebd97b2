"""The whole Snakemake workflow on tiny synthetic data in a temporary directory.

Every dataset (MIMIC-style, Synthetic-XNOR, binary XOR, UKB-style intersect and union), two
methods, two misalignment levels, one seed: synth -> cohort -> splits -> tensors -> misalign ->
MLflow store -> train -> evaluate -> aggregate, then the Snakemake report, exactly as `make run`
does it, only smaller.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.test_workflow import TINY
from tests.workflow_helpers import snakemake

pytestmark = pytest.mark.slow

CONFIG = yaml.safe_load(TINY.read_text())
N_CELLS = len(CONFIG["experiment"]["datasets"]) * len(CONFIG["experiment"]["methods"]) * len(
    CONFIG["experiment"]["p"]
)


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e")
    common = ("--workflow-profile", "none", "--directory", workdir, "--configfile", TINY)
    result = snakemake("--cores", "2", *common, timeout=1800)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    report = snakemake("--report", workdir / "results/report.html", *common, timeout=600)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    return workdir


def test_data_stages_produce_a_reconciled_cohort(workflow_run):
    cohort_dir = workflow_run / "results/mimic/cohort"
    cohort = pd.read_parquet(cohort_dir / "cohort.parquet")
    exclusions = pd.read_parquet(cohort_dir / "exclusions.parquet")
    admissions = pd.read_csv(workflow_run / "resources/raw/mimic/mimic-iv/hosp/admissions.csv.gz")
    dropped = exclusions[exclusions["level"] == "admission"]["hadm_id"].nunique()
    assert len(cohort) > 0
    assert len(cohort) + dropped == len(admissions)


def test_tensor_datasets_follow_the_format(workflow_run):
    names = ["mimic", "xnor/p0.0", "xnor/p1.0", "xor", "ukb/fold0", "ukb_union/fold0"]
    for name in names:
        meta = json.loads((workflow_run / "results/tensors" / name / "metadata.json").read_text())
        assert meta["format"] == "gated-symile-tensors/1"
        for split, n in meta["splits"].items():
            for modality in meta["modalities"]:
                path = workflow_run / "results/tensors" / name / split / f"{modality}.npy"
                assert np.load(path, mmap_mode="r").shape[0] == n


def test_every_cell_has_metrics_and_an_mlflow_run(workflow_run):
    from mlflow.tracking import MlflowClient

    metrics = sorted((workflow_run / "results/runs").rglob("metrics.json"))
    assert len(metrics) == N_CELLS
    for path in metrics:
        data = json.loads(path.read_text())
        assert 0.0 <= data["metrics"]["top1"] <= 1.0
    client = MlflowClient(tracking_uri=f"sqlite:///{workflow_run / 'results/mlflow/mlflow.db'}")
    experiment = client.get_experiment_by_name("gated-symile")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == N_CELLS
    assert all("test_top1" in r.data.metrics for r in children)


def test_misaligned_cells_are_stratified_by_corruption(workflow_run):
    data = json.loads(
        (workflow_run / "results/runs/mimic/gated_symile/p1.0/seed0/metrics.json").read_text()
    )
    assert data["misalignment"].endswith("results/misalign/mimic/p1.0")
    groups = data["stratified"]["corr_mod"]
    assert groups["clean"]["n_queries"] == 0  # p = 1: every query has one misaligned modality
    assert sum(g["n_queries"] for g in groups.values()) == data["n_queries"]


def test_union_cohort_scores_only_queries_with_the_target(workflow_run):
    run = workflow_run / "results/runs/ukb_union/symile/p0.0/fold0/seed0"
    data = json.loads((run / "metrics.json").read_text())
    counts = data["query_counts"]
    assert counts["missing_target"] > 0
    assert data["n_queries"] == counts["scored"] <= counts["rows"] - counts["missing_target"]


def test_tables_figures_and_report(workflow_run):
    tables = workflow_run / "results/tables"
    summary = pd.read_csv(tables / "summary.csv", keep_default_na=False)
    assert list(summary.columns) == ["dataset", "method", "p", "top1_mean", "top1_se", "n_runs", "chance",
                                     "oracle_top1", "pairwise_oracle_top1"]
    assert len(summary) == N_CELLS
    assert (summary["top1_se"] == "").all()  # one seed (one fold): the SE is undefined, not 0
    assert (summary["chance"].astype(float) > 0).all()
    contrasts = pd.read_csv(tables / "contrasts.csv", keep_default_na=False)
    assert list(contrasts.columns) == ["dataset", "p", "method_a", "method_b", "diff", "ci_low", "ci_high",
                                       "n_queries", "n_seeds", "seed_sd"]
    n_pairs = len(CONFIG["experiment"]["methods"]) * (len(CONFIG["experiment"]["methods"]) - 1) // 2
    assert len(contrasts) == N_CELLS // len(CONFIG["experiment"]["methods"]) * n_pairs
    assert set(zip(contrasts["method_a"], contrasts["method_b"])) == {("gated_symile", "symile")}
    assert (contrasts["ci_low"].astype(float) <= contrasts["ci_high"].astype(float)).all()
    assert (contrasts["n_seeds"] == 1).all() and (contrasts["seed_sd"] == "").all()
    markdown = (tables / "summary.md").read_text()
    assert "| dataset | p | chance |" in markdown and "gated_symile − symile" in markdown
    assert "## Data artefacts" in (tables / "provenance.md").read_text()  # from the declared runs
    for figure in ("top1_vs_p", "gate_weights", "attrition"):
        assert (tables / "figures" / f"{figure}.png").stat().st_size > 0
        assert (tables / "figures" / f"{figure}.svg").stat().st_size > 0
    assert (workflow_run / "results/report.html").stat().st_size > 0
    assert "contrasts.csv" in (workflow_run / "results/report.html").read_text(errors="replace")


def test_audit_of_the_run_is_clean(workflow_run):
    from gated_symile.cli import main

    assert main(["audit", str(workflow_run / "results")]) == 0


def test_a_stale_run_folder_stays_out_of_the_summary(workflow_run):
    """A run left from an earlier grid (here a seed and p not in the config) is not aggregated."""
    runs = workflow_run / "results/runs"
    source = runs / "xor/symile/p0.0/seed0"
    stale = runs / "xor/symile/p0.5/seed3"
    stale.mkdir(parents=True)
    for name in ("metrics.json", "ranks.parquet"):
        (stale / name).write_bytes((source / name).read_bytes())
    tables = workflow_run / "results/tables"
    before = {name: (tables / name).read_bytes() for name in ("summary.csv", "contrasts.csv")}
    common = ("--workflow-profile", "none", "--directory", workflow_run, "--configfile", TINY)
    result = snakemake("--cores", "1", "--forcerun", "aggregate", *common, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert {name: (tables / name).read_bytes() for name in before} == before  # same bytes, no p 0.5
