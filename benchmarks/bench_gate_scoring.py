"""Exact factorised gated scoring (docs/method.md §8) versus naive per-tuple gating.

Scores B queries against N candidates with the default gate (sigmoid, attention, NULL on,
random_trainable neutral, renormalise, α₀ = 0.5), fp32 on CPU, no gradients:

* factorised: ``GatedSymileScorer.candidate_scores`` (B×N matrices only);
* naive: the [ref-G] cost model, every (query, candidate) tuple gated explicitly with the
  projections run per tuple. At B = N = 2048, D = 256 it needs B·N·D·4 bytes = 4 GiB per
  gated modality, so it runs on the first ``--naive-rows`` queries only (each row vectorised
  over all N candidates) and its time is extrapolated linearly to B rows.

Checks: equal scores on the subset (max relative difference <= 1e-4), speedup >= 20x, peak
additional memory of the factorised call < 64 MiB, measured as the peak of live tensor bytes
in the torch profiler's memory timeline (the (B, N) output included). The RSS growth of one
call (glibc mmap threshold pinned, after the timings; see _memory.py) is reported too.
Prints a table, writes benchmarks/out/gate_scoring.json.

    .venv/bin/python benchmarks/bench_gate_scoring.py [--b 2048 --n 2048 --dim 256 --d-k 256 --naive-rows 64]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _memory import PeakRSS, pin_mmap_threshold, profiled_peak_mib
from gated_symile.method.gate import GatedSymileScorer


def naive_row(scorer: GatedSymileScorer, queries: list[torch.Tensor], candidates: torch.Tensor,
              target: int, i: int) -> torch.Tensor:
    """Scores of query i against all N candidates, gating the N tuples explicitly (§6)."""
    n = candidates.shape[0]
    tau, alpha = scorer.temperature(), scorer.gate_strength()
    neutrals = scorer.neutral_directions()
    mods = [m for m in range(scorer.n_modalities) if m != target]
    q = F.normalize(scorer.query_proj[target](candidates), dim=-1, eps=1e-6)
    p_null = torch.sigmoid((scorer.null_head(candidates).squeeze(-1) + scorer.null_bias[target]) / tau)
    product = candidates
    for m, e in zip(mods, queries):
        tuples = e[i].expand(n, -1).contiguous()  # query i repeated once per candidate
        k = F.normalize(scorer.key_proj[m](tuples), dim=-1, eps=1e-6)
        w = (torch.sigmoid((q * k).sum(-1) / tau) * (1 - p_null))[:, None]
        g = w * tuples + (1 - w) * neutrals[m]
        g = F.normalize((1 - alpha) * tuples + alpha * g, dim=-1, eps=1e-6)
        product = product * g
    return product.sum(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--b", type=int, default=2048)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--d-k", type=int, default=256)
    parser.add_argument("--naive-rows", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "gate_scoring.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    scorer = GatedSymileScorer(args.dim, 3, args.d_k, gate_strength_init=0.0, seed=0).eval()
    queries = [F.normalize(torch.randn(args.b, args.dim, generator=gen), dim=1) for _ in range(2)]
    candidates = F.normalize(torch.randn(args.n, args.dim, generator=gen), dim=1)
    target = 0

    with torch.no_grad():
        t0 = time.perf_counter()
        fast = scorer.candidate_scores(queries, candidates, target)
        cold_s = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            scorer.candidate_scores(queries, candidates, target)
            times.append(time.perf_counter() - t0)
        fast_s = min(times)

        rows = min(args.naive_rows, args.b)
        naive_row(scorer, queries, candidates, target, 0)  # warm-up
        t0 = time.perf_counter()
        slow = torch.stack([naive_row(scorer, queries, candidates, target, i) for i in range(rows)])
        naive_subset_s = time.perf_counter() - t0

        # memory last: pinning glibc's mmap threshold makes RSS follow live memory but slows allocation
        pin_mmap_threshold()
        with PeakRSS() as mem:
            scorer.candidate_scores(queries, candidates, target)
        _, tensor_peak_mib = profiled_peak_mib(lambda: scorer.candidate_scores(queries, candidates, target))
    naive_full_s = naive_subset_s * args.b / rows
    rel_diff = float((fast[:rows] - slow).abs().max() / slow.abs().max())
    speedup = naive_full_s / fast_s
    naive_full_gib = args.b * args.n * args.dim * 4 / 2**30

    result = {
        "b": args.b, "n": args.n, "dim": args.dim, "d_k": args.d_k, "dtype": "float32",
        "threads": torch.get_num_threads(),
        "factorised_s": fast_s, "factorised_cold_s": cold_s,
        "factorised_peak_tensor_mib": tensor_peak_mib,
        "factorised_rss_growth_mib": mem.peak_mib,
        "memory_method": "peak live tensor bytes (torch profiler memory timeline); RSS growth of "
                         "one call sampled with psutil every 0.5 ms, mmap threshold pinned (secondary)",
        "naive_rows_timed": rows, "naive_subset_s": naive_subset_s,
        "naive_extrapolated_s": naive_full_s,
        "naive_full_tuple_tensor_gib_per_modality": naive_full_gib,
        "speedup": speedup, "max_rel_diff_subset": rel_diff,
        "checks": {"equal_1e-4": rel_diff <= 1e-4, "speedup_ge_20": speedup >= 20,
                   "memory_lt_64mib": tensor_peak_mib < 64},
    }
    print(f"gated scoring, B={args.b} N={args.n} D={args.dim} d_k={args.d_k}, fp32, "
          f"{torch.get_num_threads()} threads")
    print(f"{'path':<34}{'time (s)':>12}{'peak extra (MiB)':>20}")
    print(f"{'factorised (best of ' + str(args.repeats) + ')':<34}{fast_s:>12.3f}{tensor_peak_mib:>20.1f}"
          f"  (live tensors; RSS growth {mem.peak_mib:.1f})")
    print(f"{'naive, ' + str(rows) + ' rows measured':<34}{naive_subset_s:>12.3f}{'':>20}")
    print(f"{'naive, extrapolated to ' + str(args.b) + ' rows':<34}{naive_full_s:>12.3f}"
          f"{naive_full_gib * 1024:>20.0f}  (B·N·D·4 per gated modality)")
    print(f"speedup {speedup:.1f}x, max relative difference on the subset {rel_diff:.2e}")
    print("naive time is extrapolated linearly from the measured rows; factorised memory = peak live "
          "tensor bytes from the torch profiler memory timeline")
    for name, ok in result["checks"].items():
        print(f"  {name}: {'PASS' if ok else 'FAIL'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
