"""The whole Snakemake workflow on tiny synthetic data in a temporary directory.

synth -> cohort -> splits -> tensors -> MLflow store -> train -> evaluate, for the MIMIC-style
dataset, Synthetic-XNOR and binary XOR, exactly as `make run` does it, only smaller.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.test_workflow import TINY
from tests.workflow_helpers import snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e")
    result = snakemake(
        "--cores", "2", "--workflow-profile", "none", "--directory", workdir,
        "--configfile", TINY, timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
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
    for name in ("tensors/mimic", "tensors/xnor/p1.0", "tensors/xor"):
        meta = json.loads((workflow_run / "results" / name / "metadata.json").read_text())
        assert meta["format"] == "gated-symile-tensors/1"
        for split, n in meta["splits"].items():
            for modality in meta["modalities"]:
                array = np.load(workflow_run / "results" / name / split / f"{modality}.npy", mmap_mode="r")
                assert array.shape[0] == n


def test_every_cell_has_metrics_and_an_mlflow_run(workflow_run):
    from mlflow.tracking import MlflowClient

    metrics = sorted((workflow_run / "results/runs").glob("*/*/p*/seed*/metrics.json"))
    # 3 datasets x 2 methods x 1 p x 1 seed
    assert len(metrics) == 6
    for path in metrics:
        data = json.loads(path.read_text())
        assert 0.0 <= data["metrics"]["top1"] <= 1.0
    client = MlflowClient(tracking_uri=f"sqlite:///{workflow_run / 'results/mlflow/mlflow.db'}")
    experiment = client.get_experiment_by_name("gated-symile")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.mlflow.parentRunId != ''")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 6
    assert all("test_top1" in r.data.metrics for r in children)
