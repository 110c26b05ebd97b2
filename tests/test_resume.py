"""Kill a training process with SIGKILL, resume it, and get exactly the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gated_symile.cli import main
from gated_symile.errors import GatedSymileError
from gated_symile.training.checkpoint import atomic_torch_save, capture_rng, restore_rng
from gated_symile.training.loop import strip_timing
from tests.train_helpers import inline, read_history, tiny_run_config, write_tiny_xnor

_VOLATILE = ("wall_s_this_invocation",)


def _train(xnor_dir, cfg, out, *extra):
    return [
        "train",
        "--tensors",
        str(xnor_dir),
        "--run-config",
        inline(cfg),
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    xnor_dir = write_tiny_xnor(tmp_path / "xnor")
    cfg = tiny_run_config("symile", epochs=8)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gated_symile.cli", *_train(xnor_dir, cfg, killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            history = killed / "history.jsonl"
            if history.is_file() and history.read_text().count("\n") >= 1:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (killed / "train_summary.json").exists()
    epochs_done = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["state"][
        "epoch"
    ]
    assert 1 <= epochs_done < 8

    assert main(_train(xnor_dir, cfg, killed, "--resume")) == 0
    straight = tmp_path / "straight"
    assert main(_train(xnor_dir, cfg, straight)) == 0

    def summary(run_dir):
        data = json.loads((run_dir / "train_summary.json").read_text())
        return {k: v for k, v in data.items() if k not in _VOLATILE}

    assert summary(killed) == summary(straight)
    assert [strip_timing(r) for r in read_history(killed)] == [
        strip_timing(r) for r in read_history(straight)
    ]
    for which in ("best", "last"):
        a = torch.load(killed / "checkpoints" / f"{which}.pt", weights_only=True)
        b = torch.load(straight / "checkpoints" / f"{which}.pt", weights_only=True)
        assert a["model"].keys() == b["model"].keys()
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), (which, key)


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    xnor_dir = write_tiny_xnor(tmp_path / "xnor", n_samples=320)
    cfg = tiny_run_config("clip", epochs=2)
    assert main(_train(xnor_dir, cfg, tmp_path / "r")) == 0
    before = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    assert main(_train(xnor_dir, cfg, tmp_path / "r", "--resume")) == 0
    after = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    assert before["state"] == after["state"]
    assert len(read_history(tmp_path / "r")) == 2


def test_max_epochs_then_resume_continues(tmp_path):
    xnor_dir = write_tiny_xnor(tmp_path / "xnor", n_samples=320)
    cfg = tiny_run_config("clip", epochs=3)
    assert main(_train(xnor_dir, cfg, tmp_path / "r", "--max-epochs", "1")) == 0
    assert len(read_history(tmp_path / "r")) == 1
    assert main(_train(xnor_dir, cfg, tmp_path / "r", "--resume")) == 0
    assert [r["epoch"] for r in read_history(tmp_path / "r")] == [1, 2, 3]


def test_atomic_save_never_leaves_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    atomic_torch_save({"v": torch.tensor(1)}, target)

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(GatedSymileError, match="last.pt: cannot write \\(disk full\\)"):
        atomic_torch_save({"v": torch.tensor(2)}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["v"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_rng_state_round_trip():
    import random

    import numpy as np

    gen = torch.Generator().manual_seed(3)
    state = capture_rng({"data": gen})
    expected = (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=gen).item(),
    )
    restore_rng(state, {"data": gen})
    again = (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=gen).item(),
    )
    assert again == expected
