"""The processes of one training job: who they are, how they meet, how they agree (docs/distributed.md).

``train.launcher`` names what started the processes and therefore where rank, world size,
local rank and the rendezvous address come from:

* ``none``: one process; started by torchrun with several it is an error (N copies would
  each train alone into the same folder).
* ``torchrun``: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``.
* ``srun`` (one task per GPU): ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``; the master
  is the first host of the step's node list (``MASTER_ADDR`` wins when set, then
  ``SLURM_LAUNCH_NODE_IPADDR``), the port ``MASTER_PORT`` or one derived from the job id.

The world size must equal ``train.devices × train.nodes``. Every process gets its CUDA
device from its local rank (NCCL), or the CPU (gloo). ``collective_timeout_s`` bounds the
rendezvous and every collective: a rank that died or never came turns into a one-line error
on the others instead of a hang.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gated_symile.config import RunConfig
from gated_symile.errors import ConfigError, GatedSymileError
from gated_symile.training.device import select_device
from gated_symile.training.global_batch import (
    Shard,
    ShardedObjective,
    shard_batch,
    wrap_ddp,
)

_RANK_SEED_STRIDE = 1_000_003  # rank r > 0 seeds its own RNG streams with seed + r * stride
_SLURM_PORT_BASE = 20_000


@dataclass(frozen=True)
class Launch:
    """What the launcher says about this process."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


@dataclass
class Processes:
    """This process's place in the job; ``world_size`` 1 (no process group) for a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    timeout_s: int = 1800
    gather_group: Any = None  # the embedding gathers' own group (never interleaves with DDP)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, n_rows: int) -> Shard:
        """This rank's rows of a global batch of ``n_rows``."""
        return shard_batch(n_rows, self.world_size, self.rank)

    def rank_seed(self, seed: int) -> int:
        """This rank's seed of the python/numpy/torch RNGs (dropout): the run seed on rank 0."""
        return seed + self.rank * _RANK_SEED_STRIDE

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (decisions made once: validation, early stopping)."""
        if not self.distributed:
            return obj
        box = [obj]
        with self.failures("broadcast"):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        with self.failures("all_gather_object"):
            dist.all_gather_object(out, obj)
        return out

    def total(self, value: torch.Tensor) -> float:
        """Sum of a scalar over the ranks (the loss shares add up to the batch loss)."""
        if not self.distributed:
            return float(value)
        summed = value.detach().clone()
        with self.failures("all_reduce"):
            dist.all_reduce(summed)
        return float(summed)

    def barrier(self) -> None:
        if self.distributed:
            with self.failures("barrier"):
                dist.barrier()

    @contextlib.contextmanager
    def failures(self, what: str) -> Iterator[None]:
        """A collective that failed or timed out during ``what`` becomes a one-line error.

        Only communication failures (torch's DistError, gloo/NCCL runtime errors) are
        translated; any other error passes through unchanged.
        """
        try:
            yield
        except (RuntimeError, dist.DistError) as exc:
            if not self.distributed or not _is_communication_failure(exc):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise GatedSymileError(
                f"rank {self.rank} of {self.world_size}: {what} stopped, another rank died or did "
                f"not answer within train.collective_timeout_s={self.timeout_s} ({first})"
            ) from None


_COMMUNICATION = re.compile(r"gloo|nccl|timed? ?out|connection|peer|socket|collective", re.IGNORECASE)


def _is_communication_failure(exc: BaseException) -> bool:
    return isinstance(exc, dist.DistError) or bool(_COMMUNICATION.search(str(exc)))


def launch_environment(launcher: str, env: Mapping[str, str] = os.environ) -> Launch | None:
    """Rank, world size, local rank and master of this process; None for a single process."""
    if launcher == "none":
        world = env.get("WORLD_SIZE")
        if world is not None and world.isdigit() and int(world) > 1:
            raise ConfigError(
                f"train.launcher: 'none', but this process is rank {env.get('RANK', '?')} of "
                f"{world} started by torchrun; set train.launcher: torchrun"
            )
        return None
    if launcher == "torchrun":
        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
        values = _required(env, names, "torchrun")
        return Launch(*(int(values[n]) for n in names[:3]), values["MASTER_ADDR"], int(values["MASTER_PORT"]))
    if launcher == "srun":
        values = _required(env, ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"), "srun")
        return Launch(
            int(values["SLURM_PROCID"]),
            int(values["SLURM_NTASKS"]),
            int(values["SLURM_LOCALID"]),
            _slurm_master(env),
            int(env.get("MASTER_PORT") or _SLURM_PORT_BASE + int(env.get("SLURM_JOB_ID", "0")) % 10_000),
        )
    raise ConfigError(f"train.launcher: unknown launcher {launcher!r}")


def _required(env: Mapping[str, str], names: tuple[str, ...], launcher: str) -> dict[str, str]:
    missing = [n for n in names if not env.get(n)]
    if missing:
        raise ConfigError(
            f"train.launcher: {launcher!r}, but {', '.join(missing)} not set; start the job with "
            f"{launcher} (docs/distributed.md) or set train.launcher: none"
        )
    bad = [n for n in names if n not in ("MASTER_ADDR",) and not env[n].isdigit()]
    if bad:
        raise ConfigError(f"train.launcher: {launcher!r}, but {bad[0]}={env[bad[0]]!r} is not a number")
    return {n: env[n] for n in names}


def _slurm_master(env: Mapping[str, str]) -> str:
    if env.get("MASTER_ADDR"):
        return env["MASTER_ADDR"]
    for key in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        if env.get(key):
            return first_host(env[key])
    if env.get("SLURM_LAUNCH_NODE_IPADDR"):
        return env["SLURM_LAUNCH_NODE_IPADDR"]
    raise ConfigError("train.launcher: 'srun', but no SLURM node list or MASTER_ADDR is set")


def first_host(nodelist: str) -> str:
    """First host of a SLURM host list: ``gpu[003-004,7],cpu1`` -> ``gpu003`` (rank 0's host)."""
    depth, end = 0, len(nodelist)
    for i, char in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            end = i
            break
    first = nodelist[:end].strip()
    if not first or depth < 0:
        raise ConfigError(f"SLURM node list {nodelist!r}: cannot read its first host")
    return re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[-,]", m.group(1))[0], first)


@contextlib.contextmanager
def process_group(run_cfg: RunConfig) -> Iterator[Processes]:
    """The job's processes for the length of a training run (a no-op for a single process)."""
    train = run_cfg.train
    launch = launch_environment(train.launcher)
    if launch is None or launch.world_size == 1:
        yield Processes(timeout_s=train.collective_timeout_s)
        return
    if launch.world_size != train.world_size:
        raise ConfigError(
            f"train.devices: devices x nodes = {train.devices} x {train.nodes} = {train.world_size}, "
            f"but {train.launcher} started {launch.world_size} processes"
        )
    backend = "nccl" if select_device(train.device).type == "cuda" else "gloo"
    if backend == "nccl":
        _bind_cuda_device(launch.local_rank, train)
    os.environ.update(
        MASTER_ADDR=launch.master_addr,
        MASTER_PORT=str(launch.master_port),
        RANK=str(launch.rank),
        WORLD_SIZE=str(launch.world_size),
    )
    timeout = timedelta(seconds=train.collective_timeout_s)
    try:
        dist.init_process_group(backend, init_method="env://", rank=launch.rank,
                                world_size=launch.world_size, timeout=timeout)
    except (RuntimeError, dist.DistError, OSError) as exc:
        raise GatedSymileError(
            f"rank {launch.rank}: cannot reach the rendezvous at MASTER_ADDR={launch.master_addr} "
            f"MASTER_PORT={launch.master_port} within train.collective_timeout_s="
            f"{train.collective_timeout_s} ({str(exc).strip().splitlines()[0][:200]})"
        ) from None
    procs = Processes(launch.rank, launch.world_size, launch.local_rank, backend,
                      train.collective_timeout_s)
    try:
        procs.gather_group = dist.new_group(backend=backend, timeout=timeout)
        yield procs
    finally:
        dist.destroy_process_group()


def _bind_cuda_device(local_rank: int, train: Any) -> None:
    """cuda:local_rank; cuda:0 when srun showed each task its one GPU (``--gpus-per-task 1``).

    torchrun's processes share their task's GPUs, which must be at least ``train.devices``
    (on SLURM: the train rule's ``gpu`` resource, see docs/distributed.md).
    """
    visible = torch.cuda.device_count()
    index = 0 if train.launcher == "srun" and visible == 1 else local_rank
    if index >= visible:
        raise ConfigError(
            f"train.devices: {train.devices} processes per node, but local rank {local_rank} sees "
            f"only {visible} CUDA devices (request {train.devices} GPUs per node for the job)"
        )
    torch.cuda.set_device(index)


def training_device(procs: Processes, requested: str) -> torch.device:
    """The device of this process: its bound GPU under NCCL, else as ``train.device`` says."""
    if procs.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return select_device(requested)


def check_same_job(procs: Processes, run_cfg: RunConfig, n_train: int) -> None:
    """Every rank must train the same config on the same data: compare a hash at start."""
    if not procs.distributed:
        return
    text = json.dumps([run_cfg.to_dict(), n_train], sort_keys=True)
    mine = hashlib.sha256(text.encode("utf-8")).hexdigest()
    everyone = procs.gather(mine)
    if any(h != everyone[0] for h in everyone):
        differing = [r for r, h in enumerate(everyone) if h != everyone[0]]
        raise ConfigError(
            f"--run-config: ranks {differing} got a different run config or training set than "
            f"rank 0 (sha256 {everyone[0][:12]} vs {everyone[differing[0]][:12]}); every rank "
            f"must be started with the same arguments"
        )


def device_names(procs: Processes, device: torch.device) -> str:
    """``host:device`` of every rank (with the GPU model on CUDA), for the tracking tags."""
    name = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    return ",".join(procs.gather(f"{socket.gethostname()}:{device}{name}"))


def sharded_objective(
    model: nn.Module, procs: Processes, device: torch.device, bf16: bool, has_missing: bool
) -> nn.Module | None:
    """The DDP-wrapped ``ShardedObjective`` of a multi-process run; None for one process.

    BatchNorm layers become SyncBatchNorm on CUDA (statistics of the global batch); PyTorch has
    no SyncBatchNorm on CPU, where each rank normalises with its own rows (a warning says so).
    ``has_missing``: the training set has missing modalities, so a step can skip a loss term.
    """
    if not procs.distributed:
        return None
    has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_batchnorm and device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif has_batchnorm and procs.is_main:
        print(
            "warning: BatchNorm on CPU uses per-rank batch statistics; results differ from one "
            "process (docs/distributed.md)",
            file=sys.stderr,
        )
    return wrap_ddp(ShardedObjective(model, procs.gather_group, bf16), device, has_missing)
