"""``gated-symile evaluate`` end to end: tiny XNOR, one training epoch, metrics JSON (and MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gated_symile.cli import main
from gated_symile.evaluation.query_ranks import read_query_ranks

TIMING_KEY = "timing"


def run_config(objective: str, dataset: str = "xnor") -> str:
    """The repository's default config resolved for ``dataset``, shrunk to one tiny epoch."""
    import yaml

    from gated_symile.config import resolve_run_config

    config = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())
    config["methods"] = {objective: {"objective": objective}}
    config["datasets"][dataset]["overrides"] = {
        "model": {"embed_dim": 16},
        "loss": {"negatives": "full"},
        "train": {"epochs": 1, "batch_size": 32, "progress": "never"},
        "evaluate": {"bootstrap_n": 20, "seed": 0, "batch_size": 64},
        "tracking": {"uri": None},
    }
    return json.dumps(resolve_run_config(config, dataset, objective, 0).to_dict())


@pytest.fixture(scope="module")
def xnor(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("xnor") / "tensors"
    rc = main(
        [
            "synth",
            "xnor",
            "--out",
            str(out),
            "--n-samples",
            "400",
            "--n-bits",
            "4",
            "--dim",
            "16",
            "--p",
            "0.5",
            "--eval-batch",
            "16",
        ]
    )
    assert rc == 0
    return out


def train(xnor: Path, run_dir: Path, objective: str, *extra: str) -> None:
    rc = main(
        [
            "train",
            "--tensors",
            str(xnor),
            "--run-config",
            run_config(objective),
            "--out",
            str(run_dir),
            "--tracking-uri",
            "none",
            *extra,
        ]
    )
    assert rc == 0


def evaluate(run_dir: Path, xnor: Path, out: Path, *extra: str) -> dict:
    rc = main(
        [
            "evaluate",
            "--run",
            str(run_dir),
            "--tensors",
            str(xnor),
            "--out",
            str(out),
            "--device",
            "cpu",
            *extra,
        ]
    )
    assert rc == 0
    return json.loads(out.read_text())


def test_gated_symile_metrics_json(xnor, tmp_path):
    run_dir = tmp_path / "run"
    train(xnor, run_dir, "gated_symile")
    first = evaluate(run_dir, xnor, tmp_path / "m1.json", "--out-ranks", str(tmp_path / "r1.parquet"))
    second = evaluate(run_dir, xnor, tmp_path / "m2.json", "--out-ranks", str(tmp_path / "r2.parquet"))
    first.pop(TIMING_KEY), second.pop(TIMING_KEY)
    assert first == second  # deterministic apart from wall times
    assert (tmp_path / "r1.parquet").read_bytes() == (tmp_path / "r2.parquet").read_bytes()

    assert first["format"] == "gated-symile-metrics/1"
    assert (first["dataset"], first["method"], first["split"], first["protocol"]) == (
        "xnor",
        "gated_symile",
        "test",
        "inbatch",
    )
    assert first["checkpoint"] == {"which": "best", "epoch": 1, "global_step": 10}
    assert len(first["config_sha256"]) == 64
    n_test = 40  # 10 % of 400
    assert first["n_queries"] == 32 and first["query_counts"]["dropped_trailing"] == n_test - 32
    assert first["metrics"]["chance"] == pytest.approx(1 / 16)
    assert 0.0 <= first["metrics"]["top1"] <= first["metrics"]["top5"] <= 1.0
    assert first["bootstrap"]["n"] == 20 and set(first["bootstrap"]["top1"]) == {
        "mean",
        "std",
        "p2_5",
        "p97_5",
    }
    by_mod = first["stratified"]["corr_mod"]
    assert sum(g["n_queries"] for g in by_mod.values()) == 32
    assert {"corr_b", "corr_c", "query_presence"} <= set(first["stratified"])
    gates = first["gate_diagnostics"]
    assert 0.0 < gates["alpha"] < 1.0 and gates["overall"]["n_pairs"] == n_test
    assert gates["by_corr_mod"]["b_corrupted"]["w_b-w_c"] is not None
    assert gates["overall"]["w_b-w_c"] == pytest.approx(gates["overall"]["w_b"] - gates["overall"]["w_c"])
    assert first["reference"]["val"]["n_queries"] == 32
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert first["reference"]["val"]["metrics"]["top1"] == history[0]["val_top1"]  # same ranking as training

    ranks = read_query_ranks(tmp_path / "r1.parquet")  # per query, keyed by test-split row
    assert ranks.ranks.size == first["n_queries"] and np.mean(ranks.ranks == 1) == first["metrics"]["top1"]
    assert np.array_equal(ranks.rows, np.arange(32)) and np.all(ranks.pool_sizes == 16)
    assert first["train_batch_size"] == 32

    other_seed = evaluate(run_dir, xnor, tmp_path / "m3.json", "--seed", "5", "--bootstrap-n", "0")
    assert other_seed["bootstrap"] is None and other_seed["seed"] == 5


@pytest.mark.slow  # MLflow import and store creation take ~10 s on 2 shared cores
def test_clip_has_no_gate_diagnostics_and_logs_to_mlflow(xnor, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    rc = main(
        [
            "train",
            "--tensors",
            str(xnor),
            "--run-config",
            run_config("clip"),
            "--out",
            str(run_dir),
            "--tracking-uri",
            uri,
        ]
    )
    assert rc == 0 and (run_dir / "mlflow_run_id.txt").is_file()
    out = tmp_path / "metrics.json"
    result = evaluate(run_dir, xnor, out, "--tracking-uri", uri)
    assert result["gate_diagnostics"] is None and result["objective"] == "clip"
    client = MlflowClient(tracking_uri=uri)
    run_id = (run_dir / "mlflow_run_id.txt").read_text().strip()
    logged = client.get_run(run_id).data.metrics
    assert logged["test_top1"] == pytest.approx(result["metrics"]["top1"])
    assert logged["test_n_queries"] == result["n_queries"]
    assert "metrics.json" in {a.path for a in client.list_artifacts(run_id)}


@pytest.fixture(scope="module")
def xor(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("xor") / "tensors"
    assert (
        main(
            [
                "synth",
                "xor",
                "--out",
                str(out),
                "--d",
                "3",
                "--n-train",
                "100",
                "--n-val",
                "30",
                "--n-test",
                "40",
            ]
        )
        == 0
    )
    return out


def test_explicit_bank_with_the_real_model(xor, tmp_path):
    run_dir = tmp_path / "run"
    rc = main(
        [
            "train",
            "--tensors",
            str(xor),
            "--run-config",
            run_config("symile", "xor"),
            "--out",
            str(run_dir),
            "--tracking-uri",
            "none",
        ]
    )
    assert rc == 0
    result = evaluate(run_dir, xor, tmp_path / "m.json")
    assert result["protocol"] == "bank" and result["target"] == "b"
    assert result["n_queries"] == 40 and result["pool_size"] == {"min": 8, "max": 8, "mean": 8.0}
    assert result["metrics"]["chance"] == pytest.approx(1 / 8)
    assert result["gate_diagnostics"] is None and result["stratified"] == {
        "query_presence": result["stratified"]["query_presence"]
    }


def test_mismatched_tensors_are_refused(xnor, xor, tmp_path):
    run_dir = tmp_path / "run"
    train(xnor, run_dir, "clip")
    rc = main(["evaluate", "--run", str(run_dir), "--tensors", str(xor), "--out", str(tmp_path / "m.json")])
    assert rc == 2 and not (tmp_path / "m.json").exists()
