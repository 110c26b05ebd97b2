"""Paired method contrasts (gated_symile.reporting.contrasts): bootstrap properties, seeds, folds, coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gated_symile.reporting.aggregate import estimate
from gated_symile.reporting.contrasts import bootstrap_ci, paired_contrast

correctness = st.integers(1, 60).flatmap(
    lambda n: st.lists(arrays(np.float64, (n,), elements=st.sampled_from([0.0, 1.0])), min_size=1, max_size=4)
)


@given(correctness)
@settings(max_examples=100, deadline=None)
def test_a_method_against_itself_differs_by_exactly_zero(seeds):
    runs = {(None, s): c for s, c in enumerate(seeds)}
    result = paired_contrast(runs, runs, n_boot=500)
    assert (result.diff, result.ci_low, result.ci_high) == (0.0, 0.0, 0.0)
    assert result.n_queries == seeds[0].size and result.n_seeds == len(seeds)
    assert result.seed_sd == (None if len(seeds) == 1 else 0.0)


@given(correctness, st.integers(0, 2**16))
@settings(max_examples=100, deadline=None)
def test_difference_is_the_mean_paired_difference_and_the_ci_is_ordered(seeds, shift):
    a = {(None, s): c for s, c in enumerate(seeds)}
    b = {(None, s): np.roll(c, shift % c.size + 1) for s, c in enumerate(seeds)}
    result = paired_contrast(a, b, n_boot=300, seed=shift)
    expected = np.mean([a[k] - b[k] for k in a])
    assert result.diff == pytest.approx(expected, abs=1e-12)
    assert -1.0 <= result.ci_low <= result.ci_high <= 1.0
    per_seed = [float(np.mean(a[k] - b[k])) for k in sorted(a)]
    if len(per_seed) > 1:
        assert result.seed_sd == pytest.approx(np.std(per_seed, ddof=1), abs=1e-12)
    else:
        assert result.seed_sd is None  # a single seed has no spread, never 0.000


def test_the_multinomial_bootstrap_matches_index_resampling():
    """Same distribution as drawing query indices with replacement (the textbook bootstrap)."""
    rng = np.random.default_rng(0)
    d = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=150, p=[0.1, 0.1, 0.5, 0.2, 0.1])
    low, high = bootstrap_ci([d], 20000, np.random.default_rng(1))
    means = d[np.random.default_rng(2).integers(0, d.size, size=(20000, d.size))].mean(axis=1)
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), abs=0.01)


def test_the_interval_covers_the_true_difference_at_its_level():
    """300 simulated test sets of 200 queries: correlated methods, true gain 0.08."""
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(300):
        u = rng.random(200)  # per-query difficulty shared by both methods (what pairing removes)
        a = (u < 0.6) ^ (rng.random(200) < 0.1)  # P(correct) = 0.6 * 0.9 + 0.4 * 0.1 = 0.58
        b = (u < 0.5) ^ (rng.random(200) < 0.1)  # 0.5
        result = paired_contrast({(None, 0): a}, {(None, 0): b}, n_boot=2000, seed=int(rng.integers(1 << 30)))
        covered += result.ci_low <= 0.08 <= result.ci_high
    assert 0.90 <= covered / 300 <= 0.99


def test_pairing_separates_methods_that_unpaired_intervals_cannot():
    """Symile right on every query CLIP gets right, plus 10 %: the paired CI excludes 0."""
    rng = np.random.default_rng(3)
    clip = rng.random(121) < 0.3
    symile = clip | (rng.random(121) < 0.12)
    result = paired_contrast({(None, 0): symile}, {(None, 0): clip})
    assert result.ci_low > 0.0
    se = [math.sqrt(m.mean() * (1 - m.mean()) / m.size) for m in (symile, clip)]
    assert symile.mean() - 1.96 * se[0] < clip.mean() + 1.96 * se[1]  # unpaired intervals overlap


def test_folds_weigh_equally_like_the_summary_and_unpaired_runs_are_left_out():
    a = {(0, 0): np.ones(4), (0, 1): np.ones(4), (1, 0): np.zeros(10), (2, 5): np.ones(3)}
    b = {(0, 0): np.zeros(4), (0, 1): np.ones(4), (1, 0): np.zeros(10)}
    result = paired_contrast(a, b, n_boot=100)
    fold_means = estimate([(0, 1.0), (0, 0.0), (1, 0.0)])  # per-seed differences by fold
    assert result.diff == pytest.approx(fold_means.mean) == pytest.approx(0.25)
    assert (result.n_queries, result.n_seeds) == (14, 2)
    assert result.seed_sd == pytest.approx(np.std([0.5, 0.0], ddof=1))  # seed 0: folds 1 and 0; seed 1: 0
    assert paired_contrast(a, {(3, 0): np.ones(2)}) is None


def test_no_replicates_means_no_interval():
    result = paired_contrast({(None, 0): np.ones(5)}, {(None, 0): np.zeros(5)}, n_boot=0)
    assert (result.diff, result.ci_low, result.ci_high) == (1.0, None, None)
