"""End-to-end training on a tiny Synthetic-XNOR dataset: every objective, files, determinism,
early stopping, optimiser groups and the ``train`` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gated_symile.cli import main
from gated_symile.data.datasets import load_tensor_dataset
from gated_symile.method.model import ContrastiveModel
from gated_symile.training import load_model
from gated_symile.training.loop import fit, strip_timing
from gated_symile.training.optim import apply_warmup, build_optimizer, parameter_groups
from tests.train_helpers import OBJECTIVES, inline, read_history, tiny_run_config, write_tiny_xnor


@pytest.fixture(scope="module")
def xnor_dir(tmp_path_factory):
    return write_tiny_xnor(tmp_path_factory.mktemp("data") / "xnor")


@pytest.fixture(scope="module")
def dataset(xnor_dir):
    return load_tensor_dataset(xnor_dir)


@pytest.mark.parametrize("method", OBJECTIVES)
def test_cli_trains_each_objective(method, xnor_dir, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_run_config(method)
    assert (
        main(["train", "--tensors", str(xnor_dir), "--run-config", inline(cfg), "--out", str(out)])
        == 0
    )
    history = read_history(out)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for key in ("val_top1", "lr", "logit_scale", "samples_per_s", "step"):
        assert key in history[0]
    assert ("alpha" in history[0]) == (method == "gated_symile")
    for rel in (
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "resolved_config.yaml",
        "train_summary.json",
    ):
        assert (out / rel).is_file(), rel
    assert not (out / "mlflow_run_id.txt").exists()  # no tracking URI: tracking off
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["best_val_top1"] == max(r["val_top1"] for r in history)
    assert summary["epochs_completed"] == 3 and summary["objective"] == method

    model, run_cfg, metadata = load_model(out, "best")
    assert run_cfg == cfg and metadata["target"] == "a" and not model.training
    best = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, best["model"][key]), key


def test_same_seed_same_history_and_weights(dataset, tmp_path):
    cfg = tiny_run_config("gated_symile", epochs=2, num_threads=1)
    threads = torch.get_num_threads()
    runs = [fit(dataset, cfg, tmp_path / f"r{i}") for i in range(2)]
    assert torch.get_num_threads() == threads  # the caller's thread count is restored
    assert runs[0]["best_val_top1"] == runs[1]["best_val_top1"]
    h0, h1 = (list(map(strip_timing, read_history(tmp_path / f"r{i}"))) for i in range(2))
    assert h0 == h1
    s0, s1 = (
        torch.load(tmp_path / f"r{i}" / "checkpoints" / "last.pt", weights_only=True)["model"]
        for i in range(2)
    )
    assert all(torch.equal(s0[k], s1[k]) for k in s0)
    other = fit(dataset, tiny_run_config("gated_symile", seed=1, epochs=2), tmp_path / "r2")
    h2 = list(map(strip_timing, read_history(tmp_path / "r2")))
    assert h2 != h0, other


def test_early_stopping_keeps_best_checkpoint(dataset, tmp_path, monkeypatch):
    import gated_symile.evaluation.retrieval as retrieval

    scores = iter([0.5, 0.6, 0.4, 0.3, 0.9, 0.9])
    monkeypatch.setattr(retrieval, "evaluate_retrieval", lambda *a, **k: {"top1": next(scores)})
    summary = fit(dataset, tiny_run_config("clip", epochs=6, patience=2), tmp_path)
    assert summary["stopped_early"] and summary["epochs_completed"] == 4
    assert summary["best_epoch"] == 2 and summary["best_val_top1"] == 0.6
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert best["state"]["epoch"] == 2


def test_schedule_free_optimizer_trains_and_resumes(dataset, tmp_path):
    cfg = tiny_run_config("symile", optimizer="schedulefree_adamw", warmup_steps=5, epochs=2)
    first = fit(dataset, cfg, tmp_path / "a", max_epochs=1)
    assert first["epochs_completed"] == 1
    resumed = fit(dataset, cfg, tmp_path / "a", resume=True)
    straight = fit(dataset, cfg, tmp_path / "b")
    assert resumed["epochs_completed"] == 2
    assert list(map(strip_timing, read_history(tmp_path / "a"))) == list(
        map(strip_timing, read_history(tmp_path / "b"))
    )


def test_parameter_groups(dataset):
    cfg = tiny_run_config("gated_symile", lr_gate_mul=2.0, weight_decay=0.1)
    model = ContrastiveModel(dataset.metadata, cfg)
    groups = {g["name"]: g for g in parameter_groups(model, cfg)}
    gate_ids = {id(p) for p in model.gate.parameters() if p.requires_grad}
    assert {id(p) for p in groups["gate"]["params"]} == gate_ids
    assert (
        groups["gate"]["lr"] == pytest.approx(2 * cfg.train.lr)
        and groups["gate"]["weight_decay"] == 0
    )
    assert any(p is model.log_logit_scale for p in groups["decay"]["params"])
    assert "no_decay" not in groups

    raw = cfg.to_dict()
    raw["model"]["logit_scale"]["weight_decay"] = False
    from gated_symile.config import RunConfig

    groups = {g["name"]: g for g in parameter_groups(model, RunConfig.from_dict(raw))}
    assert groups["no_decay"]["params"] == [model.log_logit_scale]
    raw["model"]["logit_scale"]["learnable"] = False
    frozen_cfg = RunConfig.from_dict(raw)
    frozen = ContrastiveModel(dataset.metadata, frozen_cfg)
    assert all(
        p is not frozen.log_logit_scale
        for g in parameter_groups(frozen, frozen_cfg)
        for p in g["params"]
    )


def test_warmup_is_linear_then_constant(dataset):
    cfg = tiny_run_config("clip", warmup_steps=4)
    opt = build_optimizer(ContrastiveModel(dataset.metadata, cfg), cfg)
    factors = [apply_warmup(opt, step, 4) for step in range(6)]
    assert factors == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert opt.param_groups[0]["lr"] == pytest.approx(cfg.train.lr)


def test_model_scale_and_scores(dataset):
    cfg = tiny_run_config("symile")
    model = ContrastiveModel(dataset.metadata, cfg)
    assert model.kappa == 16.0  # D^((M-1)/2), D = 16, M = 3
    assert float(model.loss_multiplier().detach()) == pytest.approx(np.exp(-0.5525) * 16)
    clip = ContrastiveModel(dataset.metadata, tiny_run_config("clip"))
    assert float(clip.loss_multiplier().detach()) == pytest.approx(np.exp(2.659))  # no κ for CLIP
    batch = dataset.split("val").batch(np.arange(8))
    embs = model.embed(batch)
    assert all(torch.allclose(e.norm(dim=-1), torch.ones(8)) for e in embs)
    scores = model.candidate_scores([embs[1], embs[2]], embs[0])
    brute = torch.einsum("id,id,jd->ij", embs[1], embs[2], embs[0])
    assert torch.allclose(scores, brute, atol=1e-6)


def test_cli_rejects_bad_run_config_and_mismatched_resume(xnor_dir, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--tensors",
                str(xnor_dir),
                "--run-config",
                "{not json",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "inline JSON is invalid" in capsys.readouterr().err
    cfg_file = tmp_path / "cfg.yaml"
    cfg = tiny_run_config("clip", epochs=1)
    import yaml

    cfg_file.write_text(yaml.safe_dump(cfg.to_dict()))
    assert (
        main(
            [
                "train",
                "--tensors",
                str(xnor_dir),
                "--run-config",
                str(cfg_file),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    other = tiny_run_config("clip", epochs=2)
    code = main(
        [
            "train",
            "--tensors",
            str(xnor_dir),
            "--run-config",
            inline(other),
            "--out",
            str(tmp_path / "r"),
            "--resume",
        ]
    )
    assert code == 2 and "was written with config" in capsys.readouterr().err


def test_cli_applies_a_misalignment_folder(xnor_dir, tmp_path):
    mis = tmp_path / "mis"
    assert (
        main(
            [
                "misalign",
                "--tensors",
                str(xnor_dir),
                "--out",
                str(mis),
                "--p",
                "1.0",
                "--mode",
                "swap",
            ]
        )
        == 0
    )
    cfg = inline(tiny_run_config("clip", epochs=1))
    runs = {}
    for name, extra in (("clean", []), ("swapped", ["--misalignment", str(mis)])):
        out = tmp_path / name
        assert (
            main(
                [
                    "train",
                    "--tensors",
                    str(xnor_dir),
                    "--run-config",
                    cfg,
                    "--out",
                    str(out),
                    *extra,
                ]
            )
            == 0
        )
        runs[name] = json.loads((out / "train_summary.json").read_text())
    assert runs["swapped"]["misalignment"] == str(mis) and runs["clean"]["misalignment"] is None
    assert runs["swapped"]["final_train_loss"] != runs["clean"]["final_train_loss"]
