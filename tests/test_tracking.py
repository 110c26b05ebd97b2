"""MLflow tracking against a real SQLite store: init, parent + child runs, tags, params, metrics,
artifacts, final metrics from the evaluate stage, and 16 training processes in parallel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gated_symile.cli import main
from gated_symile.config import config_hash
from gated_symile.provenance.track import (
    TrainingRun,
    _is_unique_violation,
    dataset_fingerprint,
    init_store,
    log_final_metrics,
    resolve_tracking_uri,
)
from tests.train_helpers import inline, tiny_run_config, write_tiny_xnor

EXPERIMENT = "unit"


@pytest.fixture(scope="module")
def xnor_dir(tmp_path_factory):
    return write_tiny_xnor(tmp_path_factory.mktemp("data") / "xnor", n_samples=320)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, str]:
    """One SQLite store for the module (creating its schema costs seconds)."""
    root = tmp_path_factory.mktemp("store")
    return root, f"sqlite:///{root}/mlflow/mlflow.db"


def _init(store: tuple[Path, str], experiment: str) -> tuple[str, dict]:
    root, uri = store
    flag = root / f"{experiment}.json"
    args = ["track", "init", "--uri", uri, "--experiment", experiment, "--out", str(flag)]
    assert main(args) == 0
    return uri, json.loads(flag.read_text())


def test_resolve_tracking_uri(tmp_path):
    assert (
        resolve_tracking_uri("sqlite:///results/m.db", tmp_path)
        == f"sqlite:///{tmp_path}/results/m.db"
    )
    assert resolve_tracking_uri("results/m.db", tmp_path) == f"sqlite:///{tmp_path}/results/m.db"
    assert resolve_tracking_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert resolve_tracking_uri("http://host:5000") == "http://host:5000"


@pytest.mark.slow
def test_parent_and_child_runs(xnor_dir, store, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    uri, flag = _init(store, EXPERIMENT)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment(flag["experiment_id"])
    assert experiment.name == EXPERIMENT
    assert experiment.artifact_location == f"{store[0]}/mlflow/artifacts"
    assert _init(store, EXPERIMENT)[1] == flag  # idempotent
    parent_file = tmp_path / "parent.txt"
    assert (
        main(
            [
                "track",
                "parent",
                "--uri",
                uri,
                "--experiment",
                EXPERIMENT,
                "--name",
                "xnor/clip/p0.5",
                "--tags",
                "dataset=xnor",
                "method=clip",
                "--out",
                str(parent_file),
            ]
        )
        == 0
    )
    parent_id = parent_file.read_text().strip()

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    runs = {}
    for seed in (0, 1):
        out = tmp_path / f"seed{seed}"
        cfg = tiny_run_config("clip", seed=seed, epochs=2)
        args = [
            "train",
            "--tensors",
            str(xnor_dir),
            "--run-config",
            inline(cfg),
            "--out",
            str(out),
            "--tracking-uri",
            uri,
            "--experiment",
            EXPERIMENT,
            "--parent-run-id-file",
            str(parent_file),
            "--tag",
            "snakemake.rule=train",
        ]
        assert main(args) == 0
        runs[seed] = (out, cfg, (out / "mlflow_run_id.txt").read_text().strip())

    children = client.search_runs(
        [flag["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert sorted(r.info.run_id for r in children) == sorted(r[2] for r in runs.values())
    assert client.get_run(parent_id).data.tags["dataset"] == "xnor"

    data_sha, _ = dataset_fingerprint(xnor_dir)
    for seed, (out, cfg, run_id) in runs.items():
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        tags = run.data.tags
        assert tags["config.sha256"] == config_hash(cfg)
        assert tags["data.sha256"] == data_sha and "train/a.npy" in tags["data.files"]
        assert tags["snakemake.rule"] == "train" and tags["slurm.job_id"] == "4242"
        assert (
            tags["pipeline.version"]
            and tags["git.commit"]
            and tags["git.dirty"] in ("true", "false", "unknown")
        )
        assert run.data.params["train.lr"] == json.dumps(cfg.train.lr)
        assert run.data.params["seed"] == str(seed)
        history = client.get_metric_history(run_id, "val_top1")
        assert sorted(m.step for m in history) == [1, 2]
        assert "best_val_top1" in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        assert {
            "best.pt",
            "resolved_config.yaml",
            "history.jsonl",
            "train_summary.json",
        } <= artifacts
        inputs = run.inputs.dataset_inputs
        assert len(inputs) == 1 and inputs[0].dataset.digest == data_sha[:36]

    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text(json.dumps({"top1": 0.5}))
    log_final_metrics(
        uri, runs[0][2], {"test": {"top1": 0.5, "n_queries": 16, "note": "x"}}, [metrics_file]
    )
    run = client.get_run(runs[0][2])
    assert run.data.metrics["test.top1"] == 0.5 and "test.note" not in run.data.metrics
    assert "metrics.json" in {a.path for a in client.list_artifacts(runs[0][2])}


PARALLEL_JOBS = 16


@pytest.mark.slow
def test_sixteen_training_processes_share_an_initialised_store(xnor_dir, store, tmp_path):
    """16 seed jobs of one dataset at once on one SQLite store: every run is there and finished,
    and the dataset is one row, linked once to each run (the insert race of ``_log_dataset``)."""
    import sqlite3

    from mlflow import MlflowClient

    uri, flag = _init(store, "parallel")
    env = {**os.environ, "SNAKEMAKE_RULE": "train", "OMP_NUM_THREADS": "1"}
    procs = []
    for seed in range(PARALLEL_JOBS):
        cfg = tiny_run_config("symile", seed=seed, epochs=1)
        cmd = [
            sys.executable,
            "-m",
            "gated_symile.cli",
            "train",
            "--tensors",
            str(xnor_dir),
            "--run-config",
            inline(cfg),
            "--out",
            str(tmp_path / f"s{seed}"),
            "--tracking-uri",
            uri,
            "--experiment",
            "parallel",
        ]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        )
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err.decode()[-2000:]
    runs = MlflowClient(tracking_uri=uri).search_runs([flag["experiment_id"]], max_results=100)
    ids = {(tmp_path / f"s{seed}" / "mlflow_run_id.txt").read_text().strip() for seed in range(PARALLEL_JOBS)}
    assert {r.info.run_id for r in runs} == ids and len(ids) == PARALLEL_JOBS
    assert all(r.info.status == "FINISHED" and r.data.tags["snakemake.rule"] == "train" for r in runs)
    assert sorted(int(r.data.params["seed"]) for r in runs) == list(range(PARALLEL_JOBS))
    with sqlite3.connect(uri[len("sqlite:///"):]) as db:
        datasets = db.execute(
            "SELECT name, digest, count(*) FROM datasets WHERE experiment_id = ? GROUP BY name, digest",
            (int(flag["experiment_id"]),),
        ).fetchall()
        links = db.execute(
            "SELECT destination_id, count(*) FROM inputs WHERE source_type = 'DATASET' GROUP BY destination_id"
        ).fetchall()
    assert [count for _, _, count in datasets] == [1]
    assert {run: count for run, count in links if run in ids} == dict.fromkeys(ids, 1)


def _duplicate_dataset_error(client, experiment_id: str, name: str, digest: str) -> Exception:
    """The error MLflow's SQL store raises when a second (experiment, name, digest) row is inserted:
    what the later of two seed jobs gets when both log one dataset at the same moment."""
    from mlflow.store.tracking.dbmodels.models import SqlDataset

    store = client._tracking_client.store
    with pytest.raises(Exception) as caught:
        with store.ManagedSessionMaker(read_only=False) as session:
            session.add(
                SqlDataset(
                    dataset_uuid="f" * 32,
                    experiment_id=int(experiment_id),
                    name=name,
                    digest=digest,
                    dataset_source_type="local",
                    dataset_source="{}",
                )
            )
    return caught.value


@pytest.mark.slow
def test_a_lost_dataset_insert_race_is_retried_and_other_errors_are_not(
    xnor_dir, store, tmp_path, monkeypatch
):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri, flag = _init(store, "race")
    client = MlflowClient(tracking_uri=uri)
    first = TrainingRun(uri, "race", tmp_path / "a", tiny_run_config("clip", seed=0), xnor_dir)
    logged = client.get_run(first.run_id).inputs.dataset_inputs[0].dataset
    race = _duplicate_dataset_error(client, flag["experiment_id"], logged.name, logged.digest)
    assert _is_unique_violation(race)
    with pytest.raises(MlflowException) as missing:
        client.get_run("0" * 32)
    assert not _is_unique_violation(missing.value)

    real_log_inputs = MlflowClient.log_inputs
    calls = []

    def log_inputs_losing_once(self, run_id, datasets=None, models=None):
        calls.append(run_id)
        if len(calls) == 1:
            raise race
        return real_log_inputs(self, run_id, datasets=datasets, models=models)

    monkeypatch.setattr(MlflowClient, "log_inputs", log_inputs_losing_once)
    second = TrainingRun(uri, "race", tmp_path / "b", tiny_run_config("clip", seed=1), xnor_dir)
    assert calls == [second.run_id, second.run_id]
    inputs = client.get_run(second.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [(logged.name, logged.digest)]

    def log_inputs_failing(self, run_id, datasets=None, models=None):
        calls.append(run_id)
        raise missing.value

    calls.clear()
    monkeypatch.setattr(MlflowClient, "log_inputs", log_inputs_failing)
    with pytest.raises(MlflowException):
        TrainingRun(uri, "race", tmp_path / "c", tiny_run_config("clip", seed=2), xnor_dir)
    assert len(calls) == 1


def test_init_store_that_loses_the_create_race_returns_the_winners_experiment(
    store, monkeypatch
):
    from mlflow import MlflowClient

    uri, flag = _init(store, "created-elsewhere")
    real_get = MlflowClient.get_experiment_by_name
    lookups = []

    def not_there_yet_on_first_lookup(self, name):
        lookups.append(name)
        return None if len(lookups) == 1 else real_get(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", not_there_yet_on_first_lookup)
    assert init_store(uri, "created-elsewhere") == flag["experiment_id"]
    assert lookups == ["created-elsewhere", "created-elsewhere"]
