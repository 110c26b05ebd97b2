"""Real gloo process groups for the multi-process tests: spawn ranks, one training step per case.

``run_ranks`` starts ``world_size`` processes (torch.multiprocessing spawn, file:// rendezvous in a
test folder) that each run a module-level function; ``one_step`` is such a function: for every
case it builds the same seeded model, embeds this rank's rows of the global batch through the
DDP-wrapped ``ShardedObjective`` and saves the summed loss and every parameter gradient.
``reference_step`` computes the same on the concatenated batch in one process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gated_symile.config import RunConfig

MODALITIES = ("a", "b", "c")
FEATURES = {"a": 5, "b": 4, "c": 6}


@dataclass(frozen=True)
class Case:
    """One objective / negatives setting of the one-step gradient comparison."""

    name: str
    objective: str
    negatives: str = "n"
    reduction: str = "mean"
    masks: bool = False
    sparse: bool = False  # modality "a" observed in one row only: every term with it is skipped
    batch: int = 12
    dtype: torch.dtype = torch.float64
    gate: dict[str, Any] = field(default_factory=dict)

    def run_config(self) -> RunConfig:
        return RunConfig.from_dict(
            {
                "dataset": "toy",
                "method": self.objective,
                "objective": self.objective,
                "seed": 3,
                "model": {
                    "embed_dim": 8,
                    "embedding_norm": "l2_dvs",
                    "logit_scale": {"init": 0.5},
                    "encoders": {m: {"arch": "mlp_relu", "hidden": [12]} for m in MODALITIES},
                },
                "loss": {"negatives": self.negatives, "clip_reduction": self.reduction, "pair_k": 4},
                "gate": {"d_k": 6, **self.gate},
            }
        )


def metadata() -> dict[str, Any]:
    return {
        "modalities": list(MODALITIES),
        "target": "c",
        "inputs": {m: {"kind": "float32", "shape": [f]} for m, f in FEATURES.items()},
    }


def build_model(case: Case, device: torch.device | str = "cpu"):
    from gated_symile.method.model import ContrastiveModel

    return ContrastiveModel(metadata(), case.run_config()).to(device, case.dtype).train()


def global_batch(case: Case) -> dict[str, torch.Tensor]:
    """The concatenated batch, the same on every rank (seeded); masks keep >= 2 rows per modality
    unless ``sparse``."""
    gen = torch.Generator().manual_seed(1000 + case.batch)
    batch = {
        m: torch.randn(case.batch, f, generator=gen, dtype=torch.float64).to(case.dtype)
        for m, f in FEATURES.items()
    }
    if case.masks:
        for m in MODALITIES:
            present = torch.rand(case.batch, generator=gen) > 0.35
            present[:2] = True
            batch[f"{m}_present"] = present
        if case.sparse:
            batch["a_present"] = torch.arange(case.batch) == case.batch - 1
    return batch


def loss_generator() -> torch.Generator:
    return torch.Generator().manual_seed(11)


def gradients(model) -> dict[str, torch.Tensor | None]:
    return {
        name: None if p.grad is None else p.grad.detach().cpu().clone()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def reference_step(
    case: Case, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
    """Loss and gradients of one process on the concatenated batch (today's training step)."""
    model = build_model(case, device)
    batch = {k: v.to(device) for k, v in global_batch(case).items()}
    loss = model.loss(model.embed(batch), model.present_masks(batch), loss_generator())
    loss.backward()
    return loss.detach().cpu(), gradients(model)


def one_step(rank: int, world_size: int, cases: list[Case], out_dir: str) -> None:
    """Per rank: the DDP step on this rank's rows; saves {case: (summed loss, gradients)}.

    On CPU with gloo, on ``cuda:rank`` with NCCL (the backend of the process group decides).
    """
    from gated_symile.training.global_batch import (
        ShardedObjective,
        shard_batch,
        wrap_ddp,
    )

    nccl = dist.get_backend() == "nccl"
    device = torch.device("cuda", rank) if nccl else torch.device("cpu")
    gather_group = dist.new_group()
    results = {}
    for case in cases:
        model = build_model(case, device)
        shard = shard_batch(case.batch, world_size, rank)
        local = {k: v[shard.rows].to(device) for k, v in global_batch(case).items()}
        ddp = wrap_ddp(ShardedObjective(model, gather_group), device, find_unused_parameters=case.masks)
        share = ddp(local, shard, loss_generator())
        share.backward()
        total = share.detach().clone()
        dist.all_reduce(total)
        results[case.name] = (total.cpu(), gradients(model))
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")


def run_ranks(
    fn: Callable[..., None], world_size: int, folder: Path, *args: Any, backend: str = "gloo"
) -> None:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` spawned processes with a process
    group (gloo on CPU; nccl: rank r on cuda:r, TF32 off so that GPU matmuls stay fp32)."""
    folder.mkdir(parents=True, exist_ok=True)
    init = folder / f"rendezvous-{world_size}"
    init.unlink(missing_ok=True)
    mp.spawn(_entry, args=(world_size, str(init), backend, fn, args), nprocs=world_size, join=True)


def no_tf32() -> None:
    """Full fp32 matmuls and convolutions on GPU (TF32 would round inputs to 10 mantissa bits)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _entry(
    rank: int, world_size: int, init: str, backend: str, fn: Callable[..., None], args: tuple
) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    if backend == "nccl":
        torch.cuda.set_device(rank)
        no_tf32()
    dist.init_process_group(backend, init_method=f"file://{init}", rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖ / ‖expected‖ (absolute when the reference is zero)."""
    diff = float((actual.double() - expected.double()).norm())
    scale = float(expected.double().norm())
    return diff / scale if scale > 0 else diff


# ----------------------------------------------------------------------------- whole training jobs


def free_port() -> int:
    """A TCP port nobody listens on right now (for a rendezvous or an unreachable master)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(launcher: str, rank: int, world_size: int, port: int) -> dict[str, str]:
    """The environment torchrun or srun gives rank ``rank`` of a one-node job."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    if launcher == "torchrun":
        env.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    else:
        env.update(SLURM_PROCID=str(rank), SLURM_NTASKS=str(world_size), SLURM_LOCALID=str(rank),
                   SLURM_STEP_NODELIST="localhost", SLURM_JOB_ID="1", MASTER_PORT=str(port))
    return env


def start_ranks(argv: list[str], world_size: int, launcher: str, logs: Path) -> list[subprocess.Popen]:
    """``gated-symile <argv>`` as ``world_size`` processes, as ``launcher`` would start them."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank in range(world_size):
        with (logs / f"rank{rank}.log").open("wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "gated_symile.cli", *argv],
                env=rank_env(launcher, rank, world_size, port), stdout=log, stderr=subprocess.STDOUT,
            ))
    return procs


def wait_ranks(procs: list[subprocess.Popen], timeout: float = 300) -> list[int]:
    return [p.wait(timeout=timeout) for p in procs]
