"""Symile `n_squared` loss (docs/method.md §4): chunked streaming log-sum-exp versus the direct formula.

Forward + backward of the M = 3 Symile loss with N^2 negatives per anchor, fp32 on CPU:

* chunked: ``losses.symile_loss(negatives="n_squared")`` (groups of anchors against all N^2
  tuples, ``--chunk-budget`` elements per group, each recomputed in the backward pass);
* direct: the materialised (N, N^2) logits of ``losses.symile_n_squared_logits`` and
  ``F.cross_entropy``; its products alone are N^2·D·4 bytes per anchor (1 GiB at N = 512,
  D = 1024), so each anchor term is back-propagated before the next one is built (the
  direct path's lowest-memory schedule; the gradients are the same).

Reports time and peak memory: always the sampled RSS growth (glibc's mmap threshold pinned
so RSS follows live memory, see _memory.py), and with ``--profile-memory`` also the peak of
live tensor bytes from the torch profiler memory timeline (reruns each path under the
profiler: twice the time). Checks equal loss values and gradients. Prints a table, writes
benchmarks/out/symile_nsquared.json.

    .venv/bin/python benchmarks/bench_symile_nsquared.py [--n 512 --dim 1024 --chunk-budget 16777216]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _memory import PeakRSS, pin_mmap_threshold, profiled_peak_mib
from gated_symile.method import losses


def chunked(embeddings: list[torch.Tensor], scale: torch.Tensor, budget: int) -> tuple[float, list]:
    loss = losses.symile_loss(embeddings, scale, "n_squared", chunk_budget=budget)
    grads = torch.autograd.grad(loss, embeddings)
    return float(loss.detach()), grads


def direct(embeddings: list[torch.Tensor], scale: torch.Tensor) -> tuple[float, list]:
    n = embeddings[0].shape[0]
    grads = [torch.zeros_like(e) for e in embeddings]
    total = 0.0
    for a, anchor in enumerate(embeddings):
        others = [e for m, e in enumerate(embeddings) if m != a]
        logits = scale * losses.symile_n_squared_logits(anchor, others)
        term = F.cross_entropy(logits, torch.arange(n)) / len(embeddings)
        for g, d in zip(grads, torch.autograd.grad(term, embeddings)):
            g += d
        total += float(term.detach())
        del logits, term
    return total, grads


def measure(fn, profile: bool) -> tuple[dict, list]:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        value, grads = fn()
        seconds = time.perf_counter() - t0
    row = {"seconds": seconds, "rss_growth_mib": mem.peak_mib, "loss": value}
    if profile:
        _, row["tensor_peak_mib"] = profiled_peak_mib(fn)
    return row, grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--chunk-budget", type=int, default=losses.N_SQUARED_CHUNK_BUDGET)
    parser.add_argument("--profile-memory", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "symile_nsquared.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pin_mmap_threshold()
    args.out.parent.mkdir(parents=True, exist_ok=True)

    gen = torch.Generator().manual_seed(0)
    embeddings = [F.normalize(torch.randn(args.n, args.dim, generator=gen), dim=1).requires_grad_()
                  for _ in range(3)]
    scale = torch.tensor(float(args.dim))  # s = 1 times κ = D for l2_dvs, M = 3

    small = [e[:8].detach().clone().requires_grad_() for e in embeddings]  # warm-up (lazy init)
    chunked(small, scale, 4096)
    direct(small, scale)
    rows, grads = {}, {}
    for name, fn in (("chunked", lambda: chunked(embeddings, scale, args.chunk_budget)),
                     ("direct", lambda: direct(embeddings, scale))):
        rows[name], grads[name] = measure(fn, args.profile_memory)
        print(f"  {name}: {rows[name]}", flush=True)
    loss_diff = abs(rows["chunked"]["loss"] - rows["direct"]["loss"]) / abs(rows["direct"]["loss"])
    grad_diff = max(float((a - b).abs().max() / b.abs().max())
                    for a, b in zip(grads["chunked"], grads["direct"]))
    anchors_per_chunk = max(1, args.chunk_budget // (args.n * (args.dim + args.n)))
    result = {
        "n": args.n, "dim": args.dim, "m": 3, "dtype": "float32", "threads": torch.get_num_threads(),
        "chunk_budget": args.chunk_budget, "anchors_per_chunk": anchors_per_chunk,
        "direct_products_gib_per_anchor": args.n**2 * args.dim * 4 / 2**30,
        "rows": rows, "loss_rel_diff": loss_diff, "grad_max_rel_diff": grad_diff,
        "checks": {"equal_values_1e-5": loss_diff <= 1e-5, "equal_grads_1e-4": grad_diff <= 1e-4},
    }
    print(f"symile n_squared forward+backward, N={args.n} D={args.dim} M=3, fp32, "
          f"{torch.get_num_threads()} threads, {anchors_per_chunk} anchors per chunk")
    header = f"{'path':<10}{'time (s)':>10}{'RSS growth (MiB)':>18}"
    header += f"{'tensor peak (MiB)':>19}" if args.profile_memory else ""
    print(header + f"{'loss':>14}")
    for name, row in rows.items():
        line = f"{name:<10}{row['seconds']:>10.2f}{row['rss_growth_mib']:>18.0f}"
        line += f"{row['tensor_peak_mib']:>19.0f}" if args.profile_memory else ""
        print(line + f"{row['loss']:>14.6f}")
    print(f"loss relative difference {loss_diff:.2e}, max gradient relative difference {grad_diff:.2e}")
    for name, ok in result["checks"].items():
        print(f"  {name}: {'PASS' if ok else 'FAIL'}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
