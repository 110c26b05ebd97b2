"""Retrieval metrics from per-query ranks: top-k, MRR, bootstrap intervals, stratification.

Everything here works on plain numpy arrays of 1-based ranks (one per scored query) and the size of
each query's candidate pool, so the metrics are independent of how the ranks were produced
(docs/method.md §11). Keeping the per-query values instead of only their means is what makes the
bootstrap over queries and the stratified accuracies consistent with the headline numbers: every
reported figure is a mean of the same per-query arrays over some subset or resample of the queries.

All outputs are JSON-ready (python floats and ints; ``None`` where a group is empty).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

TOP_KS: tuple[int, ...] = (1, 3, 5)
"""The k of the reported top-k accuracies. A pool smaller than k makes top-k trivially 1 for that
query (its rank is at most the pool size), which is what "clipped to the pool size" means."""

BOOTSTRAP_KEYS: tuple[str, ...] = ("top1", "mrr")
_BOOTSTRAP_CHUNK = 64  # replicates resampled at once: bounds memory to 64 x n_queries indices


def tie_broken_ranks(greater: np.ndarray, ties: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """1-based ranks of the positives with a uniform random tie-break (docs/method.md §11).

    ``greater[i]`` counts the candidates scoring strictly above query i's positive and ``ties[i]``
    those scoring exactly the same (positive excluded). rank = 1 + greater + U{0..ties} has the
    distribution of the positive's position after shuffling the tied candidates, so equal scores
    never favour the positive (the "first index wins" bias of plain argmax). One draw per query,
    in the given order, whatever the tie counts, so the stream does not depend on the scores.
    """
    greater = np.asarray(greater, dtype=np.int64)
    ties = np.asarray(ties, dtype=np.int64)
    if greater.shape != ties.shape or np.any(greater < 0) or np.any(ties < 0):
        raise ValueError("greater and ties must be equal-shaped non-negative counts")
    return 1 + greater + rng.integers(0, ties + 1, dtype=np.int64)


def per_query_values(ranks: np.ndarray, pool_sizes: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query contributions whose means are the reported metrics.

    ``top{k}`` is 1.0 when the positive ranks within the first k, ``mrr`` the reciprocal rank,
    ``mean_rank`` the rank itself and ``chance`` the top-1 accuracy a random scorer would expect
    for that query's pool (1 / pool size).
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    pool_sizes = np.asarray(pool_sizes, dtype=np.float64)
    if ranks.shape != pool_sizes.shape or ranks.ndim != 1:
        raise ValueError(f"ranks {ranks.shape} and pool sizes {pool_sizes.shape} must be equal 1-D")
    if ranks.size and (ranks.min() < 1 or np.any(ranks > pool_sizes)):
        raise ValueError("every rank must lie in [1, pool size]")
    values = {f"top{k}": (ranks <= k).astype(np.float64) for k in TOP_KS}
    values["mrr"] = 1.0 / ranks
    values["mean_rank"] = ranks
    values["chance"] = 1.0 / pool_sizes
    return values


def summarise(values: Mapping[str, np.ndarray]) -> dict[str, float | int | None]:
    """Means of the per-query values plus the number of queries (``None`` means when empty)."""
    n = len(next(iter(values.values())))
    out: dict[str, float | int | None] = {"n_queries": int(n)}
    for key, column in values.items():
        out[key] = float(np.mean(column)) if n else None
    return out


def bootstrap(
    values: Mapping[str, np.ndarray],
    n_boot: int,
    rng: np.random.Generator,
    keys: Sequence[str] = BOOTSTRAP_KEYS,
) -> dict[str, object]:
    """Resample the queries with replacement ``n_boot`` times and summarise each metric.

    Each replicate keeps every query's fixed candidate set and its already drawn tie-break
    (docs/method.md §11: bootstrap over queries), so the spread reflects only which queries were
    evaluated. Returns ``{"n": n_boot, key: {mean, std, p2_5, p97_5}}`` (``std`` with ddof 1).
    """
    if n_boot < 1:
        raise ValueError(f"bootstrap needs at least one replicate, got {n_boot}")
    n = len(next(iter(values.values())))
    out: dict[str, object] = {"n": int(n_boot)}
    if n == 0:
        out.update({key: None for key in keys})
        return out
    columns = np.stack([np.asarray(values[key], dtype=np.float64) for key in keys])  # (K, n)
    replicates = np.empty((len(keys), n_boot))
    for start in range(0, n_boot, _BOOTSTRAP_CHUNK):
        stop = min(start + _BOOTSTRAP_CHUNK, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        replicates[:, start:stop] = columns[:, idx].mean(axis=2)
    for key, reps in zip(keys, replicates, strict=True):
        out[key] = {
            "mean": float(reps.mean()),
            "std": float(reps.std(ddof=1)) if n_boot > 1 else 0.0,
            "p2_5": float(np.percentile(reps, 2.5)),
            "p97_5": float(np.percentile(reps, 97.5)),
        }
    return out


def stratify(
    values: Mapping[str, np.ndarray],
    labels: np.ndarray,
    order: Sequence[str] | None = None,
) -> dict[str, dict[str, float | int | None]]:
    """Metrics per group of queries: ``{label: {n_queries, weight, top1, ...}}``.

    ``labels`` holds one string per query. ``weight`` is the group's share of the queries, so the
    weight-averaged group metrics equal the overall ones. ``order`` fixes the output order (groups
    listed there but absent get ``n_queries = 0``); otherwise groups are sorted by name, so the
    JSON is deterministic.
    """
    labels = np.asarray(labels).astype(str)
    n = labels.size
    names = list(order) if order is not None else sorted(set(labels.tolist()))
    unknown = set(labels.tolist()) - set(names)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)} are not in the group order {names}")
    out: dict[str, dict[str, float | int | None]] = {}
    for name in names:
        mask = labels == name
        group = summarise({key: np.asarray(column)[mask] for key, column in values.items()})
        group["weight"] = float(mask.sum() / n) if n else 0.0
        out[name] = group
    return out
