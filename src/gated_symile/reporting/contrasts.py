"""Paired comparisons of methods on the same test queries: top-1 difference with a bootstrap CI.

Why paired: two methods evaluated on the same queries share each query's difficulty. Resampling
the queries jointly for both methods (bootstrapping the per-query difference in correctness)
removes that shared variance, which is what lets a test set of a hundred queries tell methods
apart when their unpaired mean ± SE intervals overlap.

- **Seeds.** A run is one (fold, seed). Per query, correctness (rank 1) is averaged over the seeds
  both methods ran, then queries are resampled: the interval is over test queries with the model
  seeds held fixed. How much the difference moves between seeds is reported beside it
  (``seed_sd``: standard deviation of the per-seed differences, undefined (NA) for one seed).
- **Folds** (UK Biobank-style cohorts). Each fold has its own test participants, so queries are
  resampled within each fold and the fold differences averaged with equal weight, exactly as
  the summary averages fold means (:func:`gated_symile.reporting.aggregate.estimate`).
- **Bootstrap.** The mean of n values drawn with replacement depends only on how often each
  distinct value is drawn, and those counts are multinomial. Per-query differences take few
  distinct values (multiples of 1/seeds in [-1, 1]), so each replicate is one multinomial draw
  over the distinct values: the ordinary bootstrap distribution at O(replicates x distinct
  values) cost. Every contrast draws from a fresh generator of the same seed, so a contrast does
  not change when other cells are added. The interval is the percentile interval.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

from gated_symile.errors import RecordError

if TYPE_CHECKING:  # numpy loads lazily: the CLI imports this module for its defaults
    import numpy as np

    from gated_symile.reporting.aggregate import Run

BOOTSTRAP_N = 10_000
"""Bootstrap replicates per contrast (cheap: see the module doc); the percentile CI's Monte Carlo
error is then well below the third decimal that the tables show."""
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
COLUMNS: tuple[str, ...] = (
    "dataset", "p", "method_a", "method_b", "diff", "ci_low", "ci_high", "n_queries", "n_seeds", "seed_sd",
)

RunKey = tuple[int | None, int]  # (fold or None, seed)


@dataclass(frozen=True)
class Contrast:
    """top-1(a) - top-1(b) over the shared queries; ``None`` where undefined."""

    diff: float
    ci_low: float | None
    ci_high: float | None
    n_queries: int
    n_seeds: int
    seed_sd: float | None


def bootstrap_ci(
    strata: Sequence[np.ndarray], n_boot: int, rng: np.random.Generator, level: float = CI_LEVEL
) -> tuple[float, float]:
    """Percentile interval of the equal-weight mean of stratum means, resampling within strata."""
    import numpy as np

    if n_boot < 1 or not strata or any(np.asarray(s).size == 0 for s in strata):
        raise ValueError("bootstrap_ci needs n_boot >= 1 and non-empty strata")
    replicates = np.zeros(n_boot)
    for values in strata:
        distinct, counts = np.unique(np.asarray(values, dtype=np.float64), return_counts=True)
        draws = rng.multinomial(counts.sum(), counts / counts.sum(), size=n_boot)  # (B, distinct)
        replicates += draws @ distinct / counts.sum()
    replicates /= len(strata)
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(replicates, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_contrast(
    a: Mapping[RunKey, np.ndarray],
    b: Mapping[RunKey, np.ndarray],
    *,
    n_boot: int = BOOTSTRAP_N,
    seed: int = BOOTSTRAP_SEED,
) -> Contrast | None:
    """Contrast of two methods from per-run correctness (1.0 = rank 1) aligned by query per fold.

    ``a[(fold, seed)]`` and ``b[(fold, seed)]`` must list the same queries in the same order for
    every fold. Runs present for only one method are left out; None when no run pairs up.
    """
    import numpy as np

    pairs = sorted(set(a) & set(b), key=lambda k: (-1 if k[0] is None else k[0], k[1]))
    if not pairs:
        return None
    strata, by_seed = [], defaultdict(list)
    for fold in dict.fromkeys(f for f, _ in pairs):
        seeds = [s for f, s in pairs if f == fold]
        diffs = np.stack([np.asarray(a[(fold, s)], float) - np.asarray(b[(fold, s)], float) for s in seeds])
        strata.append(diffs.mean(axis=0))
        for s, row in zip(seeds, diffs, strict=True):
            by_seed[s].append(float(row.mean()))
    diff = math.fsum(float(s.mean()) for s in strata) / len(strata)
    ci = bootstrap_ci(strata, n_boot, np.random.default_rng(seed)) if n_boot > 0 else (None, None)
    seed_diffs = [math.fsum(v) / len(v) for _, v in sorted(by_seed.items())]
    return Contrast(diff, *ci, sum(s.size for s in strata), len(seed_diffs), _sample_sd(seed_diffs))


def _sample_sd(values: Sequence[float]) -> float | None:
    """Standard deviation with ddof 1; undefined (None) for fewer than two values."""
    if len(values) < 2:
        return None
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def contrast_rows(runs: Sequence[Run], *, n_boot: int = BOOTSTRAP_N, seed: int = BOOTSTRAP_SEED) -> list[dict[str, Any]]:
    """Every method pair of every (dataset, p) whose runs carry per-query ranks.

    ``method_a`` is the later method in the table order (clip, symile, gated_symile, ablations),
    so ``diff`` reads "a gains over b". Runs of one (dataset, p, fold) must have evaluated the same
    test queries (same tensors and misalignment); a run that did not is an error naming its file.
    """
    import numpy as np

    from gated_symile.reporting.aggregate import method_key

    cells: dict[tuple[str, float], dict[str, dict[RunKey, np.ndarray]]] = {}
    reference: dict[tuple[str, float, int | None], Run] = {}
    for run in runs:
        if run.ranks is None:
            continue
        first = reference.setdefault((run.dataset, run.p, run.fold), run)
        if not np.array_equal(first.ranks.rows, run.ranks.rows):
            raise RecordError(run.ranks_path, f"test queries differ from those of {first.ranks_path} "
                              "(runs of one dataset and p must be evaluated on the same tensors)")
        methods = cells.setdefault((run.dataset, run.p), {})
        methods.setdefault(run.method, {})[(run.fold, run.seed)] = (run.ranks.ranks == 1).astype(np.float64)
    rows = []
    for (dataset, p), methods in sorted(cells.items()):
        for method_b, method_a in combinations(sorted(methods, key=method_key), 2):
            result = paired_contrast(methods[method_a], methods[method_b], n_boot=n_boot, seed=seed)
            if result is not None:
                rows.append({"dataset": dataset, "p": p, "method_a": method_a, "method_b": method_b,
                             **vars(result)})
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """``| dataset | p | a − b | +0.080 [+0.020, +0.140] | queries | seeds | seed sd |``."""
    lines = ["| dataset | p | contrast | top-1 difference [95 % CI] | queries | seeds | sd over seeds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = "" if r["ci_low"] is None else f" [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        sd = "NA" if r["seed_sd"] is None else f"{r['seed_sd']:.3f}"
        lines.append(f"| {r['dataset']} | {r['p']!r} | {r['method_a']} − {r['method_b']} | {r['diff']:+.3f}{ci} "
                     f"| {r['n_queries']} | {r['n_seeds']} | {sd} |")
    return "\n".join(lines) + "\n"
