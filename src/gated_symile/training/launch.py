"""How the workflow starts one training cell: the command prefix and its SLURM resources.

Imported by the Snakemake rule; plain string logic on the resolved config. The choice per
``train.launcher`` (docs/distributed.md, "Snakemake and SLURM"):

* ``none``: ``gated-symile``, one process.
* ``torchrun``: one task that starts ``train.devices`` processes on its node
  (``torchrun --standalone``). Under snakemake-executor-plugin-slurm 2.8.0 a GPU job without
  ``tasks``/``tasks_per_gpu`` is one task holding all its GPUs and the command runs once
  (``srun -n1``); ``tasks_per_gpu: 0`` keeps it so: a positive value, or ``tasks`` on a GPU
  job, becomes ``--ntasks-per-gpu``, and plugin releases up to 2.7.0 defaulted it to 1, so that
  ``gpu: 2`` ran the command twice with one GPU each (plugin issues #316, #459).
* ``srun``: ``train.devices × train.nodes`` tasks, one per GPU. The rule becomes an MPI-style
  job (``mpi`` resource): the plugin submits ``--ntasks`` with ``--ntasks-per-gpu=1`` and runs the
  command directly in the batch step, where our ``srun`` starts the ranks (with
  ``--kill-on-bad-exit`` so a failing rank ends the step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gated_symile.config import TrainConfig
from gated_symile.errors import ConfigError

ENTRY = "gated-symile"


def launch_prefix(train: TrainConfig, gpus: int = 0) -> str:
    """The command that replaces ``gated-symile`` for one cell; ``gpus``: GPUs of the job."""
    if train.launcher == "none":
        return ENTRY
    if train.launcher == "torchrun":
        if train.nodes > 1:
            raise ConfigError(
                f"train.nodes: the workflow starts torchrun on one node, got {train.nodes}; "
                f"use train.launcher: srun for several nodes"
            )
        return f"torchrun --standalone --nnodes 1 --nproc-per-node {train.devices} -m gated_symile.cli"
    gpu_flag = " --gpus-per-task 1" if gpus > 0 else ""
    return (
        f"srun --ntasks {train.world_size} --ntasks-per-node {train.devices} --nodes {train.nodes}"
        f" --kill-on-bad-exit=1{gpu_flag} {ENTRY}"
    )


def slurm_resources(launcher: str) -> dict[str, Any]:
    """Rule resources for snakemake-executor-plugin-slurm 2.8.0 that give ``launch_prefix`` its tasks.

    Values are callables of the cell's ``TrainConfig`` (the rule wraps them per wildcards). The
    ``mpi`` key makes the plugin run the command without its own ``srun -n1``; it is present only
    for ``srun`` (the plugin refuses ``mpi`` with a single task).
    """
    if launcher == "srun":
        return {
            "mpi": lambda train: "srun",
            "tasks": lambda train: train.world_size,
            "tasks_per_gpu": lambda train: 1,
            "nodes": lambda train: train.nodes,
        }
    return {
        "tasks": lambda train: 1,
        "tasks_per_gpu": lambda train: 0,  # never --ntasks-per-gpu: one task holds the GPUs
        "nodes": lambda train: 1,
    }


def rule_resources(launcher: str, train_of: Callable[[Any], TrainConfig]) -> dict[str, Callable]:
    """The train rule's resources: ``gpu`` = devices × nodes of the cell, and the task layout.

    ``gpu`` is 0 for ``train.device: cpu`` (a CPU job on SLURM); locally it is what
    ``--resources gpu=N`` counts. ``launcher`` is the workflow's default ``train.launcher`` (the
    layout is per rule); ``train_of(wildcards)`` resolves a cell's ``TrainConfig``.
    """
    layout = slurm_resources(launcher)
    resources = {name: _per_cell(value, train_of) for name, value in layout.items()}
    resources["gpu"] = _per_cell(gpus_of, train_of)
    return resources


def gpus_of(train: TrainConfig) -> int:
    """GPUs a cell asks for: one per process, none when it trains on the CPU."""
    return 0 if train.device == "cpu" else train.world_size


def _per_cell(value: Callable[[TrainConfig], Any], train_of: Callable[[Any], TrainConfig]) -> Callable:
    return lambda wildcards: value(train_of(wildcards))


def rule_launcher(launcher: str, train_of: Callable[[Any], TrainConfig]) -> Callable[[Any, Any], str]:
    """The train rule's ``launcher`` param: the cell's command prefix for its job's GPUs.

    A cell may choose none or torchrun freely; ``srun`` changes the rule's task layout, so it
    must be the workflow default (``launcher``) and then holds for every cell.
    """

    def prefix(wildcards: Any, resources: Any) -> str:
        train = train_of(wildcards)
        if (train.launcher == "srun") != (launcher == "srun"):
            raise ConfigError(
                f"train.launcher: {train.launcher!r} for {wildcards.dataset}/{wildcards.method}, "
                f"but the train defaults say {launcher!r}; srun (the task layout of the whole "
                f"rule) must be set in the train defaults, for every cell"
            )
        return launch_prefix(train, int(resources.get("gpu", 0)))

    return prefix
