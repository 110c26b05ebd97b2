"""Multi-process training on CPU (gloo): scaling with the number of processes, and loss memory.

Two parts, each in real process groups (torch.multiprocessing spawn, file:// rendezvous):

* **scaling**: one DDP training step (embed the rank's rows, gather with gradient, loss share,
  backward with summed gradients, AdamW) of a ContrastiveModel with MLP encoders, for 1, 2, 4
  processes (``--worlds``), at a fixed global batch (``--global-batch``: more processes, fewer
  rows each) and at a fixed local batch (``--local-batch`` rows per process: the global batch
  grows). Reports step time, samples/s and the communication share: the time of the step's
  collectives (per modality an all-gather of the rows and an all-reduce of the gathered
  gradient, and one all-reduce of all parameter gradients), timed alone with the same sizes,
  over the step time (an upper bound: DDP overlaps its all-reduce with the backward pass).
  One process runs the plain single-process step (no process group).
* **memory**: the loss share of Symile ``n_squared`` and Gated Symile ``full`` on a global
  batch of ``--memory-batch`` rows of dimension ``--memory-dim`` split over ``--memory-world``
  processes: gather with gradient, share, backward. Reports each rank's peak RSS growth (see
  _memory.py) and time; the acceptance bound is 1 GiB per rank at 1024 = 2 × 512, D = 256.

Prints tables and writes benchmarks/out/distributed.json.

    .venv/bin/python benchmarks/bench_distributed.py [--worlds 1 2 4] [--global-batch 512]
        [--local-batch 128] [--dim 256] [--memory-batch 1024 --memory-dim 256 --memory-world 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _memory import PeakRSS, pin_mmap_threshold

from gated_symile.method import losses
from gated_symile.config import RunConfig
from gated_symile.method.gate import GatedSymileScorer, gated_symile_loss
from gated_symile.method.model import ContrastiveModel
from gated_symile.training.global_batch import (
    ShardedObjective,
    embed_batch,
    gather_with_grad,
    shard_batch,
    wrap_ddp,
)

OUT = Path(__file__).parent / "out" / "distributed.json"
FEATURES = 16
MODALITIES = ("a", "b", "c")


def run_config(args: argparse.Namespace) -> RunConfig:
    negatives = {"gated_symile": "full"}.get(args.objective, args.negatives)
    return RunConfig.from_dict({
        "dataset": "bench", "method": args.objective, "objective": args.objective, "seed": 0,
        "model": {
            "embed_dim": args.dim, "embedding_norm": "l2_dvs", "logit_scale": {"init": 0.0},
            "encoders": {m: {"arch": "mlp_relu"} for m in MODALITIES},
        },
        "loss": {"negatives": negatives}, "gate": {"d_k": min(args.dim, 256)},
    })


def make_model(args: argparse.Namespace) -> ContrastiveModel:
    metadata = {
        "modalities": list(MODALITIES), "target": "c",
        "inputs": {m: {"kind": "float32", "shape": [FEATURES]} for m in MODALITIES},
    }
    return ContrastiveModel(metadata, run_config(args)).train()


def batch_rows(n: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, FEATURES, generator=gen) for m in MODALITIES}


def _timed(fn, steps: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def scaling_step(rank: int, world: int, args: argparse.Namespace, global_batch: int) -> dict:
    """Seconds per training step and per step's collectives on this rank."""
    model = make_model(args)
    shard = shard_batch(global_batch, world, rank)
    batch = batch_rows(global_batch, seed=1)
    local = {k: v[shard.rows] for k, v in batch.items()}
    gen = torch.Generator().manual_seed(2)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    if world == 1:
        def forward() -> torch.Tensor:
            return model.loss(embed_batch(model, batch, False), None, gen)
    else:
        ddp = wrap_ddp(ShardedObjective(model, dist.new_group()), torch.device("cpu"), False)

        def forward() -> torch.Tensor:
            return ddp(local, shard, gen)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward().backward()
        optimizer.step()

    step_s = _timed(step, args.steps)
    comm_s = 0.0
    if world > 1:
        rows = torch.randn(max(shard.sizes), args.dim)
        blocks = [torch.empty_like(rows) for _ in range(world)]
        grads = torch.randn(global_batch, args.dim)
        flat = torch.randn(sum(p.numel() for p in params))

        def collectives() -> None:
            for _ in MODALITIES:
                dist.all_gather(blocks, rows)
                dist.all_reduce(grads)
            dist.all_reduce(flat)

        comm_s = _timed(collectives, args.steps)
    return {"step_s": step_s, "comm_s": comm_s}


def scaling_worker(rank: int, world: int, init: str, args: argparse.Namespace, out: str) -> None:
    torch.set_num_threads(args.threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    rows = []
    for mode, global_batch in (("fixed_global", args.global_batch),
                               ("fixed_local", args.local_batch * world)):
        timing = scaling_step(rank, world, args, global_batch)
        rows.append({
            "mode": mode, "world_size": world, "global_batch": global_batch,
            "local_batch": global_batch // world, **timing,
            "samples_per_s": global_batch / timing["step_s"],
            "comm_share": timing["comm_s"] / timing["step_s"],
        })
    if world > 1:
        dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps(rows))


def memory_worker(rank: int, world: int, init: str, args: argparse.Namespace, out: str) -> None:
    pin_mmap_threshold()
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    shard = shard_batch(args.memory_batch, world, rank)
    gen = torch.Generator().manual_seed(rank)
    dim = args.memory_dim
    scorer = GatedSymileScorer(dim, 3, d_k=min(dim, 256))
    scale = torch.tensor(float(dim), requires_grad=True)  # s·κ with κ = D (M = 3)
    results = {}
    for name in ("symile_n_squared", "gated_symile_full"):
        local = [torch.nn.functional.normalize(torch.randn(shard.sizes[rank], dim, generator=gen), dim=-1)
                 .requires_grad_() for _ in MODALITIES]
        dist.barrier()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            embeddings = gather_with_grad(local, shard)
            if name == "symile_n_squared":
                share = losses.symile_loss(embeddings, scale, "n_squared", rows=shard.rows)
            else:
                share = gated_symile_loss(scorer, embeddings, scale, "full", rows=shard.rows)
            share.backward()
            seconds = time.perf_counter() - t0
        results[name] = {"peak_rss_growth_mib": mem.peak_mib, "seconds": seconds}
        del embeddings, share, local
    everyone = [None] * world
    dist.all_gather_object(everyone, results)
    dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps(everyone))


def spawn(worker, world: int, args: argparse.Namespace) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        mp.spawn(worker, args=(world, str(Path(tmp) / "rendezvous"), args, str(out)), nprocs=world)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--global-batch", type=int, default=512)
    parser.add_argument("--local-batch", type=int, default=128)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--objective", choices=["clip", "symile", "gated_symile"], default="symile")
    parser.add_argument("--negatives", choices=["n", "n_squared", "full", "pair"], default="n")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--memory-batch", type=int, default=1024)
    parser.add_argument("--memory-dim", type=int, default=256)
    parser.add_argument("--memory-world", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    scaling = [row for world in args.worlds for row in spawn(scaling_worker, world, args)]
    print(f"{'mode':<13}{'procs':>6}{'global':>8}{'local':>7}{'step ms':>10}{'samples/s':>11}{'comm':>7}")
    for r in sorted(scaling, key=lambda r: (r["mode"], r["world_size"])):
        print(f"{r['mode']:<13}{r['world_size']:>6}{r['global_batch']:>8}{r['local_batch']:>7}"
              f"{1000 * r['step_s']:>10.1f}{r['samples_per_s']:>11.0f}{r['comm_share']:>7.0%}")
    memory = None
    if not args.skip_memory:
        memory = spawn(memory_worker, args.memory_world, args)
        print(f"\nloss share, global batch {args.memory_batch} = {args.memory_world} x "
              f"{args.memory_batch // args.memory_world}, D = {args.memory_dim}")
        for rank, results in enumerate(memory):
            for name, r in results.items():
                print(f"  rank {rank} {name:<18} peak RSS growth {r['peak_rss_growth_mib']:8.1f} MiB"
                      f"  {r['seconds']:7.2f} s")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"args": vars(args), "scaling": scaling, "memory": memory}, indent=2) + "\n")


if __name__ == "__main__":
    main()
