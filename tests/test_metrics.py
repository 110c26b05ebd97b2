"""Properties of the rank-based retrieval metrics (gated_symile.evaluation.metrics)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gated_symile.evaluation import metrics


def ranks_of(scores: np.ndarray, positive: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    true = scores[np.arange(len(scores)), positive][:, None]
    return metrics.tie_broken_ranks((scores > true).sum(1), (scores == true).sum(1) - 1, rng)


score_matrices = st.integers(1, 30).flatmap(
    lambda n: st.integers(1, 12).flatmap(
        lambda k: st.tuples(
            arrays(np.int8, (n, k), elements=st.integers(-3, 3)),  # small ints: many ties
            arrays(np.int64, (n,), elements=st.integers(0, k - 1)),
        )
    )
)


@given(score_matrices, st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_ranks_respect_strict_order_and_top1_is_fraction_of_rank_one(data, seed):
    scores, positive = data
    ranks = ranks_of(scores.astype(np.float64), positive, np.random.default_rng(seed))
    true = scores[np.arange(len(scores)), positive][:, None]
    lo = 1 + (scores > true).sum(1)
    hi = (scores >= true).sum(1)
    assert np.all((lo <= ranks) & (ranks <= hi))
    values = metrics.per_query_values(ranks, np.full(len(ranks), scores.shape[1]))
    summary = metrics.summarise(values)
    assert summary["top1"] == pytest.approx(np.mean(ranks == 1))
    assert summary["top1"] <= summary["top3"] <= summary["top5"] <= 1.0
    assert summary["mrr"] == pytest.approx(np.mean(1.0 / ranks))
    unique_max = (scores == scores.max(1, keepdims=True)).sum(1) == 1
    argmax_hit = scores.argmax(1) == positive
    assert np.all((ranks == 1)[unique_max] == argmax_hit[unique_max])


@pytest.mark.parametrize("k", [2, 10, 128])
def test_all_equal_scores_give_chance_top1_and_uniform_ranks(k):
    n = 20000
    rng = np.random.default_rng(k)
    for positive_column in (0, k - 1):  # the positive's position must not matter
        ranks = ranks_of(np.zeros((n, k)), np.full(n, positive_column), rng)
        top1 = np.mean(ranks == 1)
        assert abs(top1 - 1 / k) < 5 * np.sqrt(1 / k * (1 - 1 / k) / n)
        counts = np.bincount(ranks, minlength=k + 1)[1:]
        expected = n / k
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < k - 1 + 6 * np.sqrt(2 * (k - 1))  # mean k-1, sd sqrt(2(k-1))


def test_tie_break_is_seeded():
    greater, ties = np.zeros(100, np.int64), np.full(100, 9)
    a = metrics.tie_broken_ranks(greater, ties, np.random.default_rng(1))
    b = metrics.tie_broken_ranks(greater, ties, np.random.default_rng(1))
    c = metrics.tie_broken_ranks(greater, ties, np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@given(st.lists(st.integers(1, 10), min_size=20, max_size=300), st.integers(0, 1000))
@settings(max_examples=50, deadline=None)
def test_bootstrap_mean_is_near_point_estimate(rank_list, seed):
    ranks = np.array(rank_list)
    values = metrics.per_query_values(ranks, np.full(ranks.size, 10))
    boot = metrics.bootstrap(values, 400, np.random.default_rng(seed))
    for key in ("top1", "mrr"):
        point = values[key].mean()
        se = values[key].std() / np.sqrt(ranks.size)
        assert abs(boot[key]["mean"] - point) <= 5 * se / np.sqrt(400) + 1e-12
        assert boot[key]["p2_5"] <= boot[key]["mean"] <= boot[key]["p97_5"]
        assert boot[key]["std"] == pytest.approx(se, rel=0.35, abs=1e-12)


def test_bootstrap_of_constant_values_has_no_spread_and_is_seeded():
    values = metrics.per_query_values(np.ones(50), np.full(50, 4))
    boot = metrics.bootstrap(values, 10, np.random.default_rng(0))
    assert boot["top1"] == {"mean": 1.0, "std": 0.0, "p2_5": 1.0, "p97_5": 1.0}
    ranks = np.random.default_rng(3).integers(1, 5, 50)
    values = metrics.per_query_values(ranks, np.full(50, 4))
    first = metrics.bootstrap(values, 100, np.random.default_rng(5))
    assert first == metrics.bootstrap(values, 100, np.random.default_rng(5))
    assert first != metrics.bootstrap(values, 100, np.random.default_rng(6))


@given(
    st.lists(
        st.tuples(st.integers(1, 8), st.sampled_from(["clean", "b_corrupted", "c_corrupted"])),
        min_size=1,
        max_size=200,
    )
)
@settings(max_examples=100, deadline=None)
def test_stratification_counts_and_weights_are_consistent(rows):
    ranks = np.array([r for r, _ in rows])
    labels = np.array([g for _, g in rows])
    values = metrics.per_query_values(ranks, np.full(ranks.size, 8))
    overall = metrics.summarise(values)
    groups = metrics.stratify(values, labels, order=["clean", "b_corrupted", "c_corrupted", "several"])
    assert list(groups) == ["clean", "b_corrupted", "c_corrupted", "several"]
    assert sum(g["n_queries"] for g in groups.values()) == overall["n_queries"]
    assert sum(g["weight"] for g in groups.values()) == pytest.approx(1.0)
    assert groups["several"]["n_queries"] == 0 and groups["several"]["top1"] is None
    for key in ("top1", "top5", "mrr", "mean_rank", "chance"):
        combined = sum(g["weight"] * g[key] for g in groups.values() if g["n_queries"])
        assert combined == pytest.approx(overall[key])


def test_stratify_rejects_labels_outside_the_order():
    values = metrics.per_query_values(np.ones(3), np.full(3, 2))
    with pytest.raises(ValueError, match="not in the group order"):
        metrics.stratify(values, np.array(["a", "b", "c"]), order=["a", "b"])


def test_top_k_is_clipped_by_small_pools_and_ranks_are_validated():
    values = metrics.per_query_values(np.array([2, 2]), np.array([2, 2]))
    assert metrics.summarise(values)["top3"] == 1.0 and metrics.summarise(values)["top1"] == 0.0
    with pytest.raises(ValueError, match="pool size"):
        metrics.per_query_values(np.array([3]), np.array([2]))
    assert metrics.summarise(metrics.per_query_values(np.zeros(0), np.zeros(0)))["top1"] is None
