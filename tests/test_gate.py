"""Gated Symile gate: the factorised scores (§8) against the per-tuple definition (§6)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gated_symile.method.gate import GatedSymileScorer, gated_symile_loss
from gated_symile.method.losses import sample_pair_candidates, symile_candidate_scores
from tests.naive_gate import naive_candidate_scores, naive_gated_cosines

OPTIONS = list(
    itertools.product(
        ("sigmoid", "softmax"),
        ("attention", "matrix"),
        (True, False),  # use_null
        ("random_trainable", "random_frozen", "ones", "mean", "none"),
        (True, False),  # renormalize
        (False, True),  # missing query rows
    )
)
F64 = torch.float64


def make_scorer(gate_type="sigmoid", gate_mode="attention", use_null=True, neutral="random_trainable",
                renormalize=True, dim=5, d_k=3, m=3, seed=0, dtype=F64, **kwargs):
    """A scorer with every parameter moved off its init (so no weight is trivially 0.5)."""
    scorer = GatedSymileScorer(dim, m, d_k, gate_type, gate_mode, use_null, neutral,
                               gate_strength_init=0.3, gate_temp=0.7, renormalize=renormalize,
                               seed=seed, **kwargs).to(dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in scorer.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=dtype))
        if neutral == "random_trainable":
            scorer.neutral.mul_(3.0)  # non-unit raw parameter: the forward must normalise it
    if neutral == "mean":
        scorer.train()
        scorer.update_neutral_means([torch.randn(7, dim, generator=gen, dtype=dtype) for _ in range(m)])
    return scorer


def unit_rows(n, d, gen, dtype=F64):
    return F.normalize(torch.randn(n, d, generator=gen, dtype=dtype), dim=1)


def split(embeddings, t):
    return [e for m, e in enumerate(embeddings) if m != t]


def query_masks(b, m, gen):
    masks = [torch.rand(b, generator=gen) > 0.4 for _ in range(m - 1)]
    masks[0][0] = False  # at least one missing row
    return masks


@pytest.mark.parametrize("gate_type,gate_mode,use_null,neutral,renormalize,missing", OPTIONS)
def test_factorised_equals_per_tuple_gating_for_every_option(gate_type, gate_mode, use_null, neutral,
                                                             renormalize, missing):
    scorer = make_scorer(gate_type, gate_mode, use_null, neutral, renormalize)
    gen = torch.Generator().manual_seed(3)
    b, n = 2, 3
    embeddings = [unit_rows(3, 5, gen) for _ in range(3)]
    for t in range(3):
        queries, cands = [q[:b] for q in split(embeddings, t)], embeddings[t][:n]
        present = query_masks(b, 3, gen) if missing else None
        fast = scorer.candidate_scores(queries, cands, t, present)
        slow, slow_weights = naive_candidate_scores(scorer, queries, cands, t, present)
        assert fast.shape == (b, n)
        assert (fast - slow).abs().max() <= 1e-10
        weights = scorer.gate_weights(queries, cands, t, present)
        for w_fast, w_slow in zip(weights.weights, slow_weights, strict=True):
            assert (w_fast - w_slow).abs().max() <= 1e-10


@settings(max_examples=15, deadline=None)
@given(
    option=st.sampled_from(OPTIONS), m=st.sampled_from([2, 3, 4]), b=st.integers(1, 4),
    n=st.integers(1, 4), dim=st.integers(2, 6), d_k=st.integers(1, 4), seed=st.integers(0, 10**6),
    float32=st.booleans(),
)
def test_factorised_equals_per_tuple_random_shapes(option, m, b, n, dim, d_k, seed, float32):
    gate_type, gate_mode, use_null, neutral, renormalize, missing = option
    dtype = torch.float32 if float32 else F64
    scorer = make_scorer(gate_type, gate_mode, use_null, neutral, renormalize, dim=dim, d_k=d_k, m=m,
                         seed=seed % 1000, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    embeddings = [unit_rows(max(b, n), dim, gen, dtype) for _ in range(m)]
    t = seed % m
    queries, cands = [q[:b] for q in split(embeddings, t)], embeddings[t][:n]
    present = query_masks(b, m, gen) if missing else None
    fast = scorer.candidate_scores(queries, cands, t, present)
    slow, _ = naive_candidate_scores(scorer, queries, cands, t, present)
    assert (fast - slow).abs().max() <= (1e-4 if float32 else 1e-10)


def test_gradients_equal_per_tuple_gradients():
    scorer = make_scorer("softmax", "attention", True, "random_trainable", True)
    gen = torch.Generator().manual_seed(5)
    embeddings = [unit_rows(3, 5, gen).requires_grad_() for _ in range(3)]
    probe = torch.randn(3, 3, generator=gen, dtype=F64)
    inputs = [*embeddings, *scorer.parameters()]
    fast = scorer.candidate_scores(split(embeddings, 1), embeddings[1], 1)
    g_fast = torch.autograd.grad((fast * probe).sum(), inputs, allow_unused=True)
    slow, _ = naive_candidate_scores(scorer, split(embeddings, 1), embeddings[1], 1)
    g_slow = torch.autograd.grad((slow * probe).sum(), inputs, allow_unused=True)
    used = 0
    for a, b in zip(g_fast, g_slow, strict=True):
        assert (a is None) == (b is None)  # e.g. the projections of other targets are unused
        if a is not None:
            used += 1
            assert (a - b).abs().max() <= 1e-10
    assert used >= 3 + 8  # embeddings, W_Q^t, W_K^u, W_K^v, NULL head (4), b, ρ, λ, neutral


def test_zero_gate_strength_gives_plain_symile_scores():
    scorer = make_scorer("sigmoid", "attention", True, "random_trainable", True)
    with torch.no_grad():
        scorer.strength_logit.fill_(-60.0)
    gen = torch.Generator().manual_seed(2)
    embeddings = [unit_rows(6, 5, gen) for _ in range(3)]
    for t in range(3):
        gated = scorer.candidate_scores(split(embeddings, t), embeddings[t], t)
        plain = symile_candidate_scores(split(embeddings, t), embeddings[t])
        assert (gated - plain).abs().max() <= 1e-12


def test_ones_neutral_drop_out_identity():
    """Fully gated u (alpha = 1, w_u = 0) turns the triple score into ⟨c, e_v⟩/√D (§6.4)."""
    dim = 6
    scorer = GatedSymileScorer(dim, 3, 4, "sigmoid", "matrix", use_null=False, neutral="ones").double()
    with torch.no_grad():
        scorer.strength_logit.fill_(60.0)
        scorer.matrix_logits[0, 1] = -60.0  # target 0: modality 1 fully gated
        scorer.matrix_logits[0, 2] = 60.0  # modality 2 kept
    gen = torch.Generator().manual_seed(4)
    c, e_u, e_v = (unit_rows(5, dim, gen) for _ in range(3))
    scores = scorer.candidate_scores([e_u, e_v], c, 0)
    assert (scores - (e_v @ c.T) / math.sqrt(dim)).abs().max() <= 1e-12
    # the hard neutral of a missing query modality gives the same drop-out
    scorer_open = GatedSymileScorer(dim, 3, 4, neutral="ones", gate_strength_init=-60.0).double()
    missing = [torch.zeros(5, dtype=torch.bool), None]
    dropped = scorer_open.candidate_scores([e_u, e_v], c, 0, missing)
    assert (dropped - (e_v @ c.T) / math.sqrt(dim)).abs().max() <= 1e-12


def test_missing_query_is_independent_of_its_embedding_and_none_scores_zero():
    gen = torch.Generator().manual_seed(6)
    embeddings = [unit_rows(4, 5, gen) for _ in range(3)]
    present = [torch.tensor([True, False, True, True]), None]
    scorer = make_scorer("sigmoid", "attention", True, "random_trainable", True)
    base = scorer.candidate_scores(split(embeddings, 0), embeddings[0], 0, present)
    changed = [q.clone() for q in split(embeddings, 0)]
    changed[0][1] = unit_rows(1, 5, gen)[0]
    assert torch.equal(scorer.candidate_scores(changed, embeddings[0], 0, present)[1], base[1])
    changed[0][2] = unit_rows(1, 5, gen)[0]  # a present row does move its scores
    assert not torch.allclose(scorer.candidate_scores(changed, embeddings[0], 0, present)[2], base[2])
    none = make_scorer("sigmoid", "attention", True, "none", True)
    assert torch.all(none.candidate_scores(split(embeddings, 0), embeddings[0], 0, present)[1] == 0)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10**6), option=st.sampled_from(OPTIONS))
def test_batching_invariance(seed, option):
    gate_type, gate_mode, use_null, neutral, renormalize, missing = option
    scorer = make_scorer(gate_type, gate_mode, use_null, neutral, renormalize, seed=seed % 97)
    gen = torch.Generator().manual_seed(seed)
    embeddings = [unit_rows(5, 5, gen) for _ in range(3)]
    queries, cands = split(embeddings, 2), embeddings[2]
    present = query_masks(5, 3, gen) if missing else None
    full = scorer.candidate_scores(queries, cands, 2, present)
    one_by_one = torch.cat([scorer.candidate_scores(queries, cands[j:j + 1], 2, present) for j in range(5)], 1)
    assert (full - one_by_one).abs().max() <= 1e-12
    halves = [scorer.candidate_scores([q[s] for q in queries], cands, 2,
                                      None if present is None else [p[s] for p in present])
              for s in (slice(0, 2), slice(2, 5))]
    assert (full - torch.cat(halves, 0)).abs().max() <= 1e-12
    scorer.score_chunk_elements = 5  # one query row per internal chunk
    assert (full - scorer.candidate_scores(queries, cands, 2, present)).abs().max() <= 1e-12


@pytest.mark.parametrize("option", OPTIONS[::7])
def test_positive_pair_diagnostics_match_per_tuple(option):
    gate_type, gate_mode, use_null, neutral, renormalize, missing = option
    scorer = make_scorer(gate_type, gate_mode, use_null, neutral, renormalize)
    gen = torch.Generator().manual_seed(8)
    embeddings = [unit_rows(4, 5, gen) for _ in range(3)]
    present = query_masks(4, 3, gen) if missing else None
    for t in range(3):
        queries = split(embeddings, t)
        fast = scorer.gated_cosines(queries, embeddings[t], t, present)
        slow = naive_gated_cosines(scorer, queries, embeddings[t], t, present)
        for a, b in zip(fast, slow, strict=True):
            assert (a - b).abs().max() <= 1e-10
        full = scorer.gate_weights(queries, embeddings[t], t, present)
        pos = scorer.positive_gate_weights(queries, embeddings[t], t, present)
        for a, b in zip(full.weights, pos.weights, strict=True):
            assert (a.diagonal() - b).abs().max() <= 1e-12
        if use_null:
            assert (full.p_null.diagonal() - pos.p_null).abs().max() <= 1e-12
        else:
            assert full.p_null is None and pos.p_null is None


def naive_gated_loss(scorer, embeddings, scale, index=None):
    terms = []
    for t in range(len(embeddings)):
        scores, _ = naive_candidate_scores(scorer, split(embeddings, t), embeddings[t], t)
        n = scores.shape[0]
        if index is None:
            terms.append(F.cross_entropy(scale * scores, torch.arange(n)))
        else:
            terms.append(F.cross_entropy(scale * scores.gather(1, index[t]), torch.zeros(n, dtype=torch.long)))
    return torch.stack(terms).mean()


def test_gated_full_loss_equals_cross_entropy_over_per_tuple_scores():
    scorer = make_scorer("sigmoid", "attention", True, "random_trainable", True)
    gen = torch.Generator().manual_seed(9)
    embeddings = [unit_rows(5, 5, gen) for _ in range(3)]
    loss = gated_symile_loss(scorer, embeddings, 3.5, "full")
    assert abs(float(loss.detach() - naive_gated_loss(scorer, embeddings, 3.5).detach())) <= 1e-10


def test_gated_pair_loss_equals_cross_entropy_over_sampled_per_tuple_scores():
    scorer = make_scorer("softmax", "attention", True, "ones", True)
    gen = torch.Generator().manual_seed(10)
    embeddings = [unit_rows(5, 5, gen) for _ in range(3)]
    loss = gated_symile_loss(scorer, embeddings, 2.0, "pair", k=3, generator=torch.Generator().manual_seed(1))
    replay = torch.Generator().manual_seed(1)
    index = [sample_pair_candidates(5, 3, replay) for _ in range(3)]
    assert abs(float(loss.detach() - naive_gated_loss(scorer, embeddings, 2.0, index).detach())) <= 1e-10


@pytest.mark.parametrize("negatives", ["full", "pair"])
def test_gated_loss_masks_missing_targets(negatives):
    """With t missing for row 1, e_{t,1} touches neither term t (masked) nor the others (hard neutral)."""
    scorer = make_scorer("sigmoid", "attention", True, "random_trainable", True)
    gen = torch.Generator().manual_seed(11)
    embeddings = [unit_rows(6, 5, gen) for _ in range(3)]
    present = [torch.ones(6, dtype=torch.bool), torch.tensor([True, False, True, True, True, True]), None]

    def loss(embs):
        return gated_symile_loss(scorer, embs, 4.0, negatives, k=4,
                                 generator=torch.Generator().manual_seed(0), present=present)

    base = loss(embeddings)
    moved = [e.clone() for e in embeddings]
    moved[1][1] = unit_rows(1, 5, gen)[0]
    assert torch.equal(loss(moved), base)
    moved[1][2] = unit_rows(1, 5, gen)[0]  # a present entry does change the loss
    assert not torch.isclose(loss(moved), base)


def test_mean_neutral_is_an_ema_updated_in_training_only():
    scorer = GatedSymileScorer(4, 3, 2, neutral="mean", mean_momentum=0.9).double()
    first = [torch.randn(5, 4, dtype=F64) for _ in range(3)]
    second = [torch.randn(5, 4, dtype=F64) for _ in range(3)]
    scorer.eval()
    scorer.update_neutral_means(first)
    assert torch.all(scorer.neutral == 0)
    scorer.train()
    scorer.update_neutral_means(first)
    scorer.update_neutral_means(second, present=[torch.tensor([True, True, False, False, False]), None, None])
    expected = 0.9 * first[0].mean(0) + 0.1 * second[0][:2].mean(0)
    assert (scorer.neutral[0] - expected).abs().max() <= 1e-12
    assert (scorer.neutral_directions()[0] - F.normalize(expected, dim=0)).abs().max() <= 1e-12
    assert not any(p is scorer.neutral for p in scorer.parameters())


def test_gate_math_stays_fp32_under_bf16_autocast():
    scorer = make_scorer(dtype=torch.float32)
    gen = torch.Generator().manual_seed(12)
    embeddings = [unit_rows(4, 5, gen, torch.float32) for _ in range(3)]
    reference = scorer.candidate_scores(split(embeddings, 0), embeddings[0], 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = [e.bfloat16() for e in embeddings]
        scores = scorer.candidate_scores(split(low, 0), low[0], 0)
        weights = scorer.gate_weights(split(low, 0), low[0], 0)
    assert scores.dtype == torch.float32 and weights.weights[0].dtype == torch.float32
    assert (scores - reference).abs().max() <= 2e-2  # only the bf16 rounding of the inputs


def test_temperature_parametrisations():
    soft = GatedSymileScorer(4, gate_temp=0.7, temp_param="softplus")
    assert abs(float(soft.temperature().detach()) - (math.log1p(0.7) + 0.1)) <= 1e-6
    exact = GatedSymileScorer(4, gate_temp=0.7, temp_param="exp")
    assert abs(float(exact.temperature().detach()) - 0.7) <= 1e-6
    assert abs(float(soft.gate_strength().detach()) - 1 / (1 + math.exp(6.0))) <= 1e-9
    with pytest.raises(ValueError):
        GatedSymileScorer(4, gate_temp=0.1, temp_param="exp")


def test_construction_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = GatedSymileScorer(8, neutral="random_frozen", gate_mode="attention", seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = GatedSymileScorer(8, neutral="random_frozen", gate_mode="attention", seed=5)
    c = GatedSymileScorer(8, neutral="random_frozen", gate_mode="attention", seed=6)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    assert not torch.equal(a.neutral, c.neutral)
    assert abs(float(a.neutral.norm(dim=1).max()) - 1) <= 1e-6


def test_matrix_mode_initial_weights():
    sig = GatedSymileScorer(4, gate_mode="matrix", gate_type="sigmoid", use_null=False, gate_strength_init=0.0)
    e = F.normalize(torch.randn(3, 4), dim=1)
    w = sig.gate_weights([e, e], e, 0).weights
    assert all(torch.allclose(x, torch.full_like(x, 0.5)) for x in w)
    soft = GatedSymileScorer(4, gate_mode="matrix", gate_type="softmax", use_null=True)
    w = soft.gate_weights([e, e], e, 0)
    total = w.weights[0] + w.weights[1] + w.p_null
    assert torch.allclose(total, torch.ones_like(total))


@pytest.mark.parametrize("kwargs", [{"gate_type": "relu"}, {"gate_mode": "dense"}, {"neutral": "zero"},
                                    {"temp_param": "linear"}, {"n_modalities": 1}])
def test_invalid_options_raise(kwargs):
    with pytest.raises(ValueError):
        GatedSymileScorer(4, **kwargs)


def test_wrong_number_of_queries_or_target_raise():
    scorer = GatedSymileScorer(4)
    e = torch.randn(2, 4)
    with pytest.raises(ValueError):
        scorer.candidate_scores([e], e, 0)
    with pytest.raises(ValueError):
        scorer.candidate_scores([e, e], e, 3)
