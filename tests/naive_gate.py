"""Slow per-tuple reference of the Gated Symile gate, used ONLY by the tests.

Written directly from docs/method.md §6.2-§6.5 and §9 (one (query i, candidate j) tuple at a
time, explicit gated vectors), never from the factorisation of §8, so that agreement with
``GatedSymileScorer.candidate_scores`` is a real check. It reads the scorer's raw
parameters and options but none of its computation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-6


def _unit(x: Tensor) -> Tensor:
    return x / x.norm().clamp_min(EPS)


def _neutral(scorer, m: int) -> Tensor:
    kind = scorer.neutral_type
    if kind == "none":
        return torch.zeros(scorer.dim, dtype=scorer.strength_logit.dtype)
    if kind == "ones":
        return torch.ones(scorer.dim, dtype=scorer.strength_logit.dtype) / math.sqrt(scorer.dim)
    return _unit(scorer.neutral[m])  # random_* and mean: the normalised stored vector


def _temperature(scorer) -> Tensor:
    rho = scorer.temperature_raw
    if scorer.temp_param == "softplus":
        return torch.log1p(torch.exp(rho)) + 0.1
    return torch.exp(rho) + 0.1


def _null_head(scorer, c: Tensor) -> Tensor:
    ln, lin1, _, lin2 = scorer.null_head
    mean, var = c.mean(), c.var(unbiased=False)
    h = (c - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias
    h = torch.clamp(lin1.weight @ h + lin1.bias, min=0)
    return (lin2.weight @ h + lin2.bias)[0]


def tuple_weights(scorer, query_rows: list[Tensor], c: Tensor, target: int):
    """Gate weights (w per query modality, p_null or None) for one tuple (§6.2-§6.3)."""
    mods = [m for m in range(scorer.n_modalities) if m != target]
    tau = _temperature(scorer)
    if scorer.gate_mode == "attention":
        q = _unit(scorer.query_proj[target].weight @ c)
        scores = [
            torch.dot(q, _unit(scorer.key_proj[m].weight @ e)) / tau for m, e in zip(mods, query_rows)
        ]
        null = (_null_head(scorer, c) + scorer.null_bias[target]) / tau if scorer.use_null else None
    else:
        scores = [scorer.matrix_logits[target, m] for m in mods]
        null = scorer.null_bias[target] / tau if scorer.use_null else None
    if scorer.gate_type == "sigmoid":
        p_null = None if null is None else 1 / (1 + torch.exp(-null))
        weights = [1 / (1 + torch.exp(-s)) for s in scores]
        if p_null is not None:
            weights = [w * (1 - p_null) for w in weights]
    else:
        logits = scores + ([null] if null is not None else [])
        top = torch.stack(logits).max().detach()
        exps = [torch.exp(v - top) for v in logits]
        total = sum(exps)
        weights = [x / total for x in exps[: len(scores)]]
        p_null = exps[-1] / total if null is not None else None
    return weights, p_null


def gated_tuple(scorer, query_rows: list[Tensor], c: Tensor, target: int, present_rows: list[bool]):
    """The gated query vectors g_m for one (query, candidate) tuple (§6.4-§6.5, §9)."""
    mods = [m for m in range(scorer.n_modalities) if m != target]
    weights, _ = tuple_weights(scorer, query_rows, c, target)
    alpha = 1 / (1 + torch.exp(-scorer.strength_logit))
    gated = []
    for m, e, w, ok in zip(mods, query_rows, weights, present_rows):
        n = _neutral(scorer, m)
        if not ok:
            gated.append(n)  # hard neutral (zero vector for `none`)
            continue
        g = w * e if scorer.neutral_type == "none" else w * e + (1 - w) * n
        g = (1 - alpha) * e + alpha * g
        if scorer.renormalize and scorer.neutral_type != "none":
            g = _unit(g)
        gated.append(g)
    return gated


def _present_row(query_present, n_query: int, i: int) -> list[bool]:
    if query_present is None:
        return [True] * n_query
    return [True if p is None else bool(p[i]) for p in query_present]


def naive_candidate_scores(scorer, queries, candidates, target, query_present=None):
    """(B, N) gated MIPs, and per query modality the (B, N) weights, built tuple by tuple."""
    b, n = queries[0].shape[0], candidates.shape[0]
    scores = torch.zeros(b, n, dtype=candidates.dtype)
    weights = [torch.zeros(b, n, dtype=candidates.dtype) for _ in queries]
    for i in range(b):
        rows = [q[i] for q in queries]
        ok = _present_row(query_present, len(queries), i)
        for j in range(n):
            c = candidates[j]
            gated = gated_tuple(scorer, rows, c, target, ok)
            product = c.clone()
            for g in gated:
                product = product * g
            scores[i, j] = product.sum()
            for m, w in enumerate(tuple_weights(scorer, rows, c, target)[0]):
                weights[m][i, j] = w
    return scores, weights


def naive_gated_cosines(scorer, queries, candidates, target, query_present=None):
    """cos(g_m(i, i), e_m,i) per query modality, tuple by tuple."""
    out = [torch.zeros(queries[0].shape[0], dtype=candidates.dtype) for _ in queries]
    for i in range(queries[0].shape[0]):
        rows = [q[i] for q in queries]
        ok = _present_row(query_present, len(queries), i)
        for m, (g, e) in enumerate(zip(gated_tuple(scorer, rows, candidates[i], target, ok), rows)):
            out[m][i] = F.cosine_similarity(g, e, dim=0, eps=EPS)
    return out
