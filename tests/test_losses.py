"""CLIP and Symile objectives and the ungated candidate scorers (docs/method.md §1, §4, §5, §7, §9)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gated_symile.method import losses as L

F64 = torch.float64


def rand(n, d, gen, grad=False):
    return torch.randn(n, d, generator=gen, dtype=F64).requires_grad_(grad)


def ce(logits, labels=None):
    labels = torch.arange(logits.shape[0]) if labels is None else labels
    return F.cross_entropy(logits, labels)


def direct_n_squared_loss(embeddings, scale):
    """§4 with the materialised N x N^(M-1) logits: the reference for the chunked loss."""
    terms = []
    for a, anchor in enumerate(embeddings):
        others = [e for m, e in enumerate(embeddings) if m != a]
        terms.append(ce(scale * L.symile_n_squared_logits(anchor, others)))
    return torch.stack(terms).mean()


@settings(max_examples=20, deadline=None)
@given(m=st.integers(2, 4), n=st.integers(1, 5), d=st.integers(1, 6), seed=st.integers(0, 10**6))
def test_mip_and_symile_candidate_scores_follow_the_definition(m, n, d, seed):
    gen = torch.Generator().manual_seed(seed)
    xs = [rand(n, d, gen) for _ in range(m)]
    expected = torch.tensor([sum(torch.prod(torch.stack([x[i, k] for x in xs])) for k in range(d))
                             for i in range(n)], dtype=F64)
    assert (L.mip(*xs) - expected).abs().max() <= 1e-12
    scores = L.symile_candidate_scores(xs[1:], xs[0])
    for i, j in itertools.product(range(n), range(n)):
        assert abs(float(scores[i, j] - L.mip(xs[0][j:j + 1], *[x[i:i + 1] for x in xs[1:]]))) <= 1e-12


def test_clip_candidate_scores_sum_present_dot_products():
    gen = torch.Generator().manual_seed(0)
    u, v, c = rand(4, 3, gen), rand(4, 3, gen), rand(5, 3, gen)
    present = [torch.tensor([True, False, True, True]), None]
    scores = L.clip_candidate_scores([u, v], c, present)
    expected = (u @ c.T) * present[0][:, None] + v @ c.T
    assert (scores - expected).abs().max() <= 1e-12


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_clip_loss_is_symmetric_infonce_over_pairs(reduction):
    gen = torch.Generator().manual_seed(1)
    es = [rand(6, 4, gen) for _ in range(3)]
    pairs = [0.5 * (ce(2.0 * a @ b.T) + ce(2.0 * b @ a.T)) for a, b in itertools.combinations(es, 2)]
    expected = sum(pairs) if reduction == "sum" else sum(pairs) / 3
    assert abs(float(L.clip_loss(es, 2.0, reduction) - expected)) <= 1e-12


def test_clip_loss_drops_rows_of_pairs_with_a_missing_modality():
    gen = torch.Generator().manual_seed(2)
    es = [rand(5, 4, gen) for _ in range(3)]
    keep = torch.tensor([True, False, True, True, True])
    present = [keep, None, None]
    got = L.clip_loss(es, 1.5, "sum", present)
    sub = [e[keep] for e in es]

    def nce(a, b):
        return 0.5 * (ce(1.5 * a @ b.T) + ce(1.5 * b @ a.T))

    expected = nce(sub[0], sub[1]) + nce(sub[0], sub[2]) + nce(es[1], es[2])
    assert abs(float(got - expected)) <= 1e-12
    moved = [e.clone() for e in es]
    moved[0][1] += 3.0
    assert torch.equal(L.clip_loss(moved, 1.5, "sum", present), got)


def test_n_logits_have_positive_diagonal_and_one_shuffled_tuple_per_column():
    gen = torch.Generator().manual_seed(3)
    x, y, z = rand(6, 4, gen), rand(6, 4, gen), rand(6, 4, gen)
    logits = L.symile_n_logits(x, [y, z], torch.Generator().manual_seed(7))
    replay = torch.Generator().manual_seed(7)
    p1, p2 = torch.randperm(6, generator=replay), torch.randperm(6, generator=replay)
    for i, j in itertools.product(range(6), range(6)):
        expected = L.mip(x[i:i + 1], y[i:i + 1], z[i:i + 1]) if i == j else \
            L.mip(x[i:i + 1], y[p1[j]:p1[j] + 1], z[p2[j]:p2[j] + 1])
        assert abs(float(logits[i, j] - expected)) <= 1e-12


def test_n_loss_is_the_mean_of_anchor_terms_with_fresh_permutations():
    gen = torch.Generator().manual_seed(4)
    es = [rand(5, 3, gen) for _ in range(3)]
    got = L.symile_loss(es, 1.7, "n", generator=torch.Generator().manual_seed(9))
    replay = torch.Generator().manual_seed(9)
    terms = [ce(1.7 * L.symile_n_logits(es[a], [e for m, e in enumerate(es) if m != a], replay))
             for a in range(3)]
    assert abs(float(got - torch.stack(terms).mean())) <= 1e-12


def test_n_squared_index_map():
    gen = torch.Generator().manual_seed(5)
    n = 3
    x, y, z, w = (rand(n, 2, gen) for _ in range(4))
    logits = L.symile_n_squared_logits(x, [y, z])
    assert logits.shape == (n, n * n)
    for i, r, j in itertools.product(range(n), repeat=3):
        expected = (x[i] * y[j] * z[(j - r) % n]).sum()
        assert abs(float(logits[i, r * n + j] - expected)) <= 1e-12
    assert torch.allclose(logits[:, :n].diagonal(), L.mip(x, y, z))  # positives: block 0
    # M = 4, the reference recursion: y rolled by r1, z fixed, w rolled by r2
    logits4 = L.symile_n_squared_logits(x, [y, z, w])
    for i, r1, r2, j in itertools.product(range(n), repeat=4):
        expected = (x[i] * y[(j - r1) % n] * z[j] * w[(j - r2) % n]).sum()
        assert abs(float(logits4[i, (r1 * n + r2) * n + j] - expected)) <= 1e-12
    # M = 2: the single block is the other modality itself
    assert torch.equal(L.symile_n_squared_logits(x, [y]), x @ y.T)


@settings(max_examples=12, deadline=None)
@given(m=st.integers(2, 4), n=st.integers(2, 4), d=st.integers(1, 5), seed=st.integers(0, 10**6),
       budget=st.sampled_from([1, 7, 40, 10**9]))
def test_chunked_n_squared_equals_direct_formula_values_and_gradients(m, n, d, seed, budget):
    gen = torch.Generator().manual_seed(seed)
    es = [rand(n, d, gen, grad=True) for _ in range(m)]
    scale = torch.tensor(1.3, dtype=F64, requires_grad=True)
    chunked = L.symile_loss(es, scale, "n_squared", chunk_budget=budget)
    direct = direct_n_squared_loss(es, scale)
    assert abs(float(chunked.detach() - direct.detach())) <= 1e-10
    for a, b in zip(torch.autograd.grad(chunked, [*es, scale]), torch.autograd.grad(direct, [*es, scale])):
        assert (a - b).abs().max() <= 1e-10
    with torch.no_grad():
        assert abs(float(L.symile_loss(es, scale, "n_squared", chunk_budget=budget) - direct)) <= 1e-10


@settings(max_examples=10, deadline=None)
@given(n=st.integers(2, 6), d=st.integers(1, 5), seed=st.integers(0, 10**6))
def test_two_modality_n_squared_is_symmetric_clip(n, d, seed):
    gen = torch.Generator().manual_seed(seed)
    a, b = rand(n, d, gen), rand(n, d, gen)
    assert abs(float(L.symile_loss([a, b], 0.9, "n_squared") - L.clip_loss([a, b], 0.9, "sum"))) <= 1e-12


@pytest.mark.parametrize("negatives", ["n", "n_squared", "full", "pair"])
def test_missing_rows_are_excluded_from_symile_terms(negatives):
    gen = torch.Generator().manual_seed(6)
    es = [rand(6, 3, gen) for _ in range(3)]
    gone = torch.tensor([True, True, False, True, True, True])
    present = [gone, gone, gone]

    def loss(embs):
        return L.symile_loss(embs, 2.0, negatives, generator=torch.Generator().manual_seed(0),
                             present=present, k=3)

    base = loss(es)
    moved = [e.clone() for e in es]
    for e in moved:
        e[2] += 5.0
    assert torch.equal(loss(moved), base)
    expected = L.symile_loss([e[gone] for e in es], 2.0, negatives,
                             generator=torch.Generator().manual_seed(0), k=3)
    assert torch.equal(base, expected)
    moved[1][3] += 1.0  # a present row does matter
    assert not torch.isclose(loss(moved), base)


def test_terms_with_fewer_than_two_present_samples_are_skipped():
    gen = torch.Generator().manual_seed(7)
    es = [rand(4, 3, gen, grad=True) for _ in range(3)]
    only_one = torch.tensor([False, False, True, False])
    got = L.symile_loss(es, 1.0, "n_squared", present=[None, only_one, None])
    terms = [ce(L.symile_n_squared_logits(es[a], [e for m, e in enumerate(es) if m != a])) for a in (0, 2)]
    assert abs(float(got.detach() - torch.stack(terms).mean().detach())) <= 1e-12
    nothing = [torch.zeros(4, dtype=torch.bool)] * 3
    zero = L.symile_loss(es, 1.0, "n", present=nothing)
    assert float(zero.detach()) == 0.0
    zero.backward()  # still connected to the graph
    assert float(L.clip_loss(es, 1.0, "mean", present=nothing).detach()) == 0.0


def test_pair_sampler_follows_the_reference_rule():
    index = L.sample_pair_candidates(5, 200, torch.Generator().manual_seed(0))
    assert index.shape == (5, 5)  # K clamped to N - 1
    index = L.sample_pair_candidates(6, 300, torch.Generator().manual_seed(0))[:, :1]
    assert torch.equal(index[:, 0], torch.arange(6))
    big = L.sample_pair_candidates(6, 5, torch.Generator().manual_seed(1))
    draws = torch.randint(0, 5, (6, 5), generator=torch.Generator().manual_seed(1))
    assert torch.equal(big[:, 1:], draws + (draws >= torch.arange(6)[:, None]).long())
    assert torch.all(big[:, 1:] != torch.arange(6)[:, None])
    with pytest.raises(ValueError):
        L.sample_pair_candidates(1, 3)


def test_ungated_full_and_pair_modes_score_the_query_pair_against_target_candidates():
    gen = torch.Generator().manual_seed(8)
    es = [rand(5, 3, gen) for _ in range(3)]
    full_terms, pair_terms = [], []
    replay = torch.Generator().manual_seed(2)
    for t in range(3):
        u, v = [e for m, e in enumerate(es) if m != t]
        scores = torch.stack([torch.stack([L.mip(es[t][j:j + 1], u[i:i + 1], v[i:i + 1])[0]
                                           for j in range(5)]) for i in range(5)])
        full_terms.append(ce(1.2 * scores))
        index = L.sample_pair_candidates(5, 2, replay)
        pair_terms.append(ce(1.2 * scores.gather(1, index), torch.zeros(5, dtype=torch.long)))
    full = L.symile_loss(es, 1.2, "full")
    pair = L.symile_loss(es, 1.2, "pair", k=2, generator=torch.Generator().manual_seed(2))
    assert abs(float(full - torch.stack(full_terms).mean())) <= 1e-12
    assert abs(float(pair - torch.stack(pair_terms).mean())) <= 1e-12


def test_invalid_arguments_raise():
    e = torch.randn(3, 2)
    with pytest.raises(ValueError):
        L.symile_loss([e, e], 1.0, "n_cubed")
    with pytest.raises(ValueError):
        L.symile_loss([e], 1.0)
    with pytest.raises(ValueError):
        L.clip_loss([e, e], 1.0, "max")
    with pytest.raises(ValueError):
        L.candidate_conditioned_loss(lambda *a: None, [e, e], 1.0, "n")


@pytest.mark.parametrize("negatives", ["n", "full", "pair"])
def test_sample_without_the_target_still_trains_the_other_terms(negatives):
    """UKB union cohorts: a participant lacking the target (here modality 2) is left out of the
    target's term but still trains the terms of the modalities it has."""
    gen = torch.Generator().manual_seed(11)
    es = [rand(6, 3, gen, grad=True) for _ in range(3)]
    target_present = torch.tensor([True, True, False, True, True, True])
    everyone = torch.ones(6, dtype=torch.bool)
    loss = L.symile_loss(es, 2.0, negatives, generator=torch.Generator().manual_seed(0),
                         present=[everyone, everyone, target_present], k=3)
    loss.backward()
    assert es[0].grad[2].abs().sum() > 0 and es[1].grad[2].abs().sum() > 0
