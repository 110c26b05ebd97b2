"""`gated-symile train` as several processes (real gloo groups on CPU, started as torchrun or srun
start them): the weights of one process, resume after a killed rank, one-line errors for bad
launches (docs/distributed.md)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from gated_symile.cli import main
from gated_symile.config import RunConfig
from gated_symile.errors import ConfigError
from gated_symile.training.distributed import first_host, launch_environment
from tests.distributed_helpers import (
    free_port,
    rank_env,
    relative_error,
    start_ranks,
    wait_ranks,
)
from tests.train_helpers import inline, read_history, tiny_run_config, write_tiny_xnor

posix_only = pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")


def _train_argv(xnor_dir, cfg, out, *extra):
    return ["train", "--tensors", str(xnor_dir), "--run-config", inline(cfg), "--out", str(out), *extra]


def _weights(run_dir, which="last"):
    return torch.load(run_dir / "checkpoints" / f"{which}.pt", weights_only=True)["model"]


def _assert_same_weights(actual_dir, expected_dir, rel=1e-8):
    actual, expected = _weights(actual_dir), _weights(expected_dir)
    assert actual.keys() == expected.keys()
    errors = {k: relative_error(actual[k], expected[k]) for k in expected if expected[k].is_floating_point()}
    assert max(errors.values()) <= rel, sorted(errors.items(), key=lambda kv: -kv[1])[:3]


def _log(logs, rank):
    return (logs / f"rank{rank}.log").read_text(errors="replace")


def test_two_processes_train_the_weights_of_one_and_only_rank0_logs(tmp_path):
    from mlflow import MlflowClient

    xnor = write_tiny_xnor(tmp_path / "xnor")
    one = tiny_run_config("gated_symile", epochs=2, precision="fp64")
    two = tiny_run_config("gated_symile", epochs=2, precision="fp64", devices=2, launcher="torchrun")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ranks = start_ranks(
        _train_argv(xnor, two, tmp_path / "two", "--tracking-uri", uri), 2, "torchrun", tmp_path / "logs"
    )
    assert wait_ranks(ranks) == [0, 0], _log(tmp_path / "logs", 0) + _log(tmp_path / "logs", 1)
    assert main(_train_argv(xnor, one, tmp_path / "one")) == 0

    _assert_same_weights(tmp_path / "two", tmp_path / "one")
    summary = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    reference = json.loads((tmp_path / "one" / "train_summary.json").read_text())
    assert summary["config_sha256"] == reference["config_sha256"]  # launch keys are not hashed
    assert summary["best_val"] == pytest.approx(reference["best_val"], rel=1e-9)
    assert "epoch 2" in _log(tmp_path / "logs", 0) and "epoch" not in _log(tmp_path / "logs", 1)

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1  # rank 1 never touched the store
    tags = runs[0].data.tags
    assert tags["distributed.world_size"] == "2"
    assert tags["distributed.backend"] == "gloo"
    assert tags["distributed.devices"].count("cpu") == 2
    assert runs[0].data.params["train.devices"] == "2"


@posix_only
def test_a_killed_rank_ends_the_job_and_resume_gives_the_weights_of_one_process(tmp_path):
    xnor = write_tiny_xnor(tmp_path / "xnor")
    epochs = 6
    one = tiny_run_config("symile", epochs=epochs, precision="fp64", batch_size=30)
    two = tiny_run_config(
        "symile", epochs=epochs, precision="fp64", batch_size=30, devices=2, launcher="srun",
        collective_timeout_s=60,
    )
    killed = tmp_path / "killed"
    logs = tmp_path / "logs"
    ranks = start_ranks(_train_argv(xnor, two, killed), 2, "srun", logs)
    try:
        deadline = time.monotonic() + 300
        history = killed / "history.jsonl"
        while time.monotonic() < deadline and ranks[1].poll() is None:
            if history.is_file() and history.read_text().count("\n") >= 1:
                break
            time.sleep(0.01)
        ranks[1].send_signal(signal.SIGKILL)
    finally:
        codes = wait_ranks(ranks)
    assert codes[1] == -signal.SIGKILL, "training finished before rank 1 could be killed"
    assert codes[0] == 2  # the survivor stops with a one-line error, no hang
    error = [line for line in _log(logs, 0).splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "rank 0 of 2" in error[0] and "train.collective_timeout_s" in error[0]
    assert not (killed / "train_summary.json").exists()
    done = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)
    assert 1 <= done["state"]["epoch"] < epochs and len(done["rank_rng"]) == 2

    resumed = start_ranks(_train_argv(xnor, two, killed, "--resume"), 2, "srun", tmp_path / "logs2")
    assert wait_ranks(resumed) == [0, 0], _log(tmp_path / "logs2", 0)
    assert main(_train_argv(xnor, one, tmp_path / "one")) == 0
    _assert_same_weights(killed, tmp_path / "one")
    assert [r["epoch"] for r in read_history(killed)] == list(range(1, epochs + 1))


@pytest.mark.slow
def test_torchrun_starts_the_job(tmp_path):
    """The real launcher: torchrun --standalone (c10d rendezvous) with two processes."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun not installed next to this python")
    xnor = write_tiny_xnor(tmp_path / "xnor")
    two = tiny_run_config("clip", epochs=1, precision="fp64", devices=2, launcher="torchrun")
    one = tiny_run_config("clip", epochs=1, precision="fp64")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "gated_symile.cli",
           *_train_argv(xnor, two, tmp_path / "two")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(_train_argv(xnor, one, tmp_path / "one")) == 0
    _assert_same_weights(tmp_path / "two", tmp_path / "one")


def test_ranks_with_different_configs_refuse_to_train(tmp_path):
    xnor = write_tiny_xnor(tmp_path / "xnor", n_samples=128)
    configs = [
        tiny_run_config("clip", epochs=1, devices=2, launcher="torchrun", lr=lr) for lr in (1e-3, 2e-3)
    ]
    port = free_port()
    ranks = [
        subprocess.Popen(
            [sys.executable, "-m", "gated_symile.cli", *_train_argv(xnor, cfg, tmp_path / "run")],
            env=rank_env("torchrun", rank, 2, port), stderr=subprocess.PIPE, text=True,
        )
        for rank, cfg in enumerate(configs)
    ]
    for rank in ranks:
        _, err = rank.communicate(timeout=300)
        assert rank.returncode == 2
        assert err.strip().splitlines()[-1].startswith("error: --run-config: ranks [1] got a different")
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_an_unreachable_master_is_a_one_line_error(tmp_path):
    xnor = write_tiny_xnor(tmp_path / "xnor", n_samples=128)
    cfg = tiny_run_config("clip", devices=2, launcher="torchrun", collective_timeout_s=3)
    env = rank_env("torchrun", 1, 2, free_port())  # rank 1: the master (rank 0) never starts
    done = subprocess.run(
        [sys.executable, "-m", "gated_symile.cli", *_train_argv(xnor, cfg, tmp_path / "run")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: rank 1: cannot reach the rendezvous at MASTER_ADDR=127.0.0.1")
    assert "train.collective_timeout_s=3" in last


def test_cuda_without_a_gpu_names_the_setting(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    xnor = write_tiny_xnor(tmp_path / "xnor", n_samples=128)
    cfg = tiny_run_config("clip", device="cuda", devices=2, launcher="torchrun")
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(_train_argv(xnor, cfg, tmp_path / "run")) == 2
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert capsys.readouterr().err.strip() == (
        "error: train.device: 'cuda' requested but no CUDA device is available"
    )


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"devices": 4, "launcher": "torchrun", "batch_size": 30},
         "train.batch_size: 30 is not divisible by the world size 4 (train.devices x train.nodes)"),
        ({"devices": 2, "nodes": 2},
         ("train.launcher: 'none' runs one process, but train.devices x train.nodes = 4; "
          "set it to torchrun or srun")),
        ({"devices": 0, "launcher": "srun"}, "train.devices: must be >= 1, got 0"),
    ],
)
def test_launch_settings_are_validated(train, message):
    with pytest.raises(ConfigError) as err:
        tiny_run_config("clip", **train)
    assert str(err.value) == message


def test_launch_environment_of_torchrun_and_srun():
    torchrun = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "29500"}
    launch = launch_environment("torchrun", torchrun)
    assert (launch.rank, launch.world_size, launch.local_rank, launch.master_addr, launch.master_port) == (
        3, 8, 1, "n1", 29500
    )
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
             "SLURM_STEP_NODELIST": "gpu[007-008]", "SLURM_JOB_ID": "123456"}
    launch = launch_environment("srun", slurm)
    assert (launch.rank, launch.world_size, launch.local_rank, launch.master_addr, launch.master_port) == (
        5, 8, 1, "gpu007", 20000 + 123456 % 10000
    )
    assert launch_environment("srun", {**slurm, "MASTER_ADDR": "10.0.0.1"}).master_addr == "10.0.0.1"
    assert launch_environment("none", {}) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "2", "RANK": "1"},
         ("train.launcher: 'none', but this process is rank 1 of 2 started by torchrun; "
          "set train.launcher: torchrun")),
        ({"RANK": "0"}, "train.launcher: 'torchrun', but WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT"),
    ],
)
def test_a_launch_that_does_not_match_train_launcher_is_an_error(env, message):
    launcher = "none" if "WORLD_SIZE" in env else "torchrun"
    with pytest.raises(ConfigError) as err:
        launch_environment(launcher, env)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    ("nodelist", "first"),
    [("node1", "node1"), ("gpu[003-004,007],cpu1", "gpu003"), ("a[1,5]", "a1"), ("x-1,x-2", "x-1"),
     ("r[01-02]n[1-2]", "r01n1")],
)
def test_first_host_of_a_slurm_node_list(nodelist, first):
    assert first_host(nodelist) == first


def test_launch_keys_do_not_change_the_config_hash():
    from gated_symile.config import config_hash

    one = tiny_run_config("clip")
    many = RunConfig.from_dict(
        {**one.to_dict(), "train": {**one.to_dict()["train"], "devices": 2, "launcher": "torchrun"}}
    )
    assert config_hash(one) == config_hash(many)


@pytest.mark.parametrize(
    ("train", "gpus", "command"),
    [
        ({}, 1, "gated-symile"),
        ({"devices": 4, "launcher": "torchrun"}, 4,
         "torchrun --standalone --nnodes 1 --nproc-per-node 4 -m gated_symile.cli"),
        ({"devices": 4, "nodes": 2, "launcher": "srun"}, 8,
         "srun --ntasks 8 --ntasks-per-node 4 --nodes 2 --kill-on-bad-exit=1 --gpus-per-task 1 gated-symile"),
        ({"devices": 2, "launcher": "srun"}, 0,
         "srun --ntasks 2 --ntasks-per-node 2 --nodes 1 --kill-on-bad-exit=1 gated-symile"),
    ],
)
def test_the_workflow_starts_a_cell_with_its_launcher(train, gpus, command):
    from gated_symile.training.launch import launch_prefix

    assert launch_prefix(tiny_run_config("clip", **train).train, gpus) == command


def test_slurm_task_layout_never_makes_a_task_per_gpu_for_one_process_launchers():
    from gated_symile.training.launch import slurm_resources

    cfg = tiny_run_config("clip", devices=4, nodes=2, launcher="srun").train
    srun = {k: f(cfg) for k, f in slurm_resources("srun").items()}
    assert srun == {"mpi": "srun", "tasks": 8, "tasks_per_gpu": 1, "nodes": 2}
    for launcher in ("none", "torchrun"):
        single = {k: f(cfg) for k, f in slurm_resources(launcher).items()}
        assert single == {"tasks": 1, "tasks_per_gpu": 0, "nodes": 1}


def test_torchrun_across_nodes_is_not_started_by_the_workflow():
    from gated_symile.training.launch import launch_prefix

    with pytest.raises(ConfigError, match="train.nodes: the workflow starts torchrun on one node"):
        launch_prefix(tiny_run_config("clip", devices=2, nodes=2, launcher="torchrun").train)


def test_the_rule_asks_for_one_gpu_per_process_unless_on_the_cpu():
    from gated_symile.training.launch import rule_resources

    def gpus(**train):
        cfg = tiny_run_config("clip", **train).train
        return rule_resources(cfg.launcher, lambda wildcards: cfg)["gpu"](None)

    assert gpus() == 1
    assert gpus(devices=4, nodes=2, launcher="srun") == 8
    assert gpus(devices=2, launcher="torchrun", device="cpu") == 0
