"""Contrastive objectives and ungated candidate scorers (docs/method.md §1, §4, §5, §7, §9).

Pure tensor maths: no I/O, no module state. Every function takes the embeddings of the M
modalities as a sequence of (N, D) tensors in modality-index order.

Scale convention: ``scale`` is always the *full* multiplicative logit scale, already
exponentiated (s = exp(θ)). For ``embedding_norm: l2_dvs`` the CALLER multiplies it by the
DVS factor κ = D^((M−1)/2) for the Symile-family objectives (never for CLIP, §2), so that
κ stays one fixed constant and is never re-derived per tuple.

Missing modalities (§9): ``present`` is a sequence with one entry per modality, each a bool
(N,) tensor (True = observed) or None (all observed). A Symile/gated term for anchor or
target t keeps only the samples whose t is present, both as rows and as candidates; a term
with fewer than two such samples is skipped and the loss averages the remaining terms.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

Present = Sequence[Tensor | None] | None
# score_fn(queries, candidates, target, query_present) -> unscaled (B, N) scores
ScoreFn = Callable[[list[Tensor], Tensor, int, list[Tensor | None] | None], Tensor]

#: Default working-set budget (elements) of one ``n_squared`` chunk: the broadcast products and
#: the logits of a group of anchors (2^24 fp32 elements = 64 MiB).
N_SQUARED_CHUNK_BUDGET = 2**24


def mip(*embeddings: Tensor) -> Tensor:
    """Row-wise multilinear inner product Σ_k Π_m x_m[k] (§1); shape (N,)."""
    if len(embeddings) < 2:
        raise ValueError("mip needs at least two embeddings")
    product = embeddings[0]
    for e in embeddings[1:]:
        product = product * e
    return product.sum(dim=-1)


def symile_candidate_scores(queries: Sequence[Tensor], candidates: Tensor) -> Tensor:
    """Unscaled Symile scores MIP(c_j, e_u,i, e_v,i, ...) as (Π queries) @ Cᵀ; shape (B, N)."""
    product = queries[0]
    for q in queries[1:]:
        product = product * q
    return product @ candidates.T


def clip_candidate_scores(
    queries: Sequence[Tensor], candidates: Tensor, present: Present = None
) -> Tensor:
    """Unscaled CLIP retrieval scores Σ_m ⟨c_j, e_m,i⟩ over present query modalities; (B, N).

    The full CLIP score also contains the query-only term ⟨e_u, e_v⟩ (§5); it is the same
    for every candidate of a query, so it cannot change a ranking and is omitted. A missing
    query modality (present False) contributes nothing (§5, §9).
    """
    total = torch.zeros_like(queries[0])
    for m, q in enumerate(queries):
        mask = None if present is None else present[m]
        total = total + (q if mask is None else q * mask.to(q.dtype)[:, None])
    return total @ candidates.T


def _subset(embeddings: Sequence[Tensor], keep: Tensor | None) -> list[Tensor]:
    return list(embeddings) if keep is None else [e[keep] for e in embeddings]


def _count(keep: Tensor | None, n: int) -> int:
    return n if keep is None else int(keep.sum())


def _average_terms(terms: list[Tensor], embeddings: Sequence[Tensor]) -> Tensor:
    """Mean of the computed terms; a graph-connected zero when every term was skipped."""
    if not terms:
        return sum(e.sum() for e in embeddings) * 0.0
    return torch.stack(terms).mean()


def clip_loss(
    embeddings: Sequence[Tensor],
    scale: float | Tensor,
    reduction: str = "sum",
    present: Present = None,
) -> Tensor:
    """Symmetric InfoNCE over every modality pair (§5); no κ.

    reduction ``sum`` adds the pair terms ([ref-S], ≈3x a Symile loss); ``mean`` averages
    the pair terms that were computed ([ref-G]). A pair term uses only the rows where both
    modalities are present and is skipped when fewer than two remain (§9).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"clip reduction must be 'sum' or 'mean', got {reduction!r}")
    if len(embeddings) < 2:
        raise ValueError("clip_loss needs at least two modalities")
    n = embeddings[0].shape[0]
    terms = []
    for a, b in itertools.combinations(range(len(embeddings)), 2):
        keep = _pair_mask(present, a, b)
        if _count(keep, n) < 2:
            continue
        u, v = _subset([embeddings[a], embeddings[b]], keep)
        logits = scale * (u @ v.T)
        labels = torch.arange(u.shape[0], device=u.device)
        terms.append(0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)))
    if not terms:
        return _average_terms(terms, embeddings)
    stacked = torch.stack(terms)
    return stacked.sum() if reduction == "sum" else stacked.mean()


def _pair_mask(present: Present, a: int, b: int) -> Tensor | None:
    if present is None:
        return None
    pa, pb = present[a], present[b]
    if pa is None:
        return pb
    return pa if pb is None else pa & pb


def symile_n_logits(
    anchor: Tensor, others: Sequence[Tensor], generator: torch.Generator | None = None
) -> Tensor:
    """Unscaled `n`-mode logits (§4): (N, N), positives on the diagonal.

    One independent permutation per non-anchor modality (drawn in modality order from
    ``generator``); column j pairs the anchors with the same shuffled tuple, and the
    diagonal is overwritten with the true positive MIP(x_i, y_i, z_i, ...).
    """
    n = anchor.shape[0]
    shuffled = torch.ones_like(anchor)
    for other in others:
        perm = torch.randperm(
            n, generator=generator, device=generator.device if generator else "cpu"
        ).to(anchor.device)
        shuffled = shuffled * other[perm]
    logits = anchor @ shuffled.T
    eye = torch.eye(n, dtype=torch.bool, device=anchor.device)
    return torch.where(eye, mip(anchor, *others)[:, None], logits)


def symile_n_squared_logits(anchor: Tensor, others: Sequence[Tensor]) -> Tensor:
    """Unscaled `n_squared` logits (§4) in the reference column order: (N, N^(M-1)).

    Block b (columns b·N .. b·N + N-1) has digits (r_1, ..., r_{Q-1}) in base N (r_1 most
    significant, Q = M-1) that are the roll amounts of the reference recursion: others[k]
    is rolled by r_{k+1} for k < Q-2, others[Q-2] is not rolled and others[Q-1] is rolled
    by r_{Q-1}; row j of a block rolled by r reads row (j - r) mod N. For M = 3 this is
    Λ[i, r·N + j] = MIP(x_i, y_j, z_{(j-r) mod N}); for M = 2 the single block is the other
    modality itself. Positives: block 0, column i.

    The direct formula, used by tests and benchmarks as the reference for the chunked
    loss; it materialises N^(M-1)·D products, so never call it on large batches.
    """
    q, n = len(others), anchor.shape[0]
    blocks = torch.arange(n ** (q - 1), device=anchor.device)
    digits = []  # least significant first
    for _ in range(q - 1):
        digits.append(blocks % n)
        blocks = blocks // n
    digits.reverse()  # digits[0] = r_1
    unrolled = torch.zeros_like(blocks)
    shifts = [unrolled] if q == 1 else digits[: q - 2] + [unrolled, digits[q - 2]]
    rows = torch.arange(n, device=anchor.device)
    product = None
    for other, shift in zip(others, shifts):
        picked = other[((rows[None, :] - shift[:, None]) % n).reshape(-1)]
        product = picked if product is None else product * picked
    return anchor @ product.T


def _cartesian_product_rows(tensors: Sequence[Tensor], like: Tensor) -> Tensor:
    """Element-wise products of every combination of rows, (Π N_k, D); (1, D) ones if empty."""
    table = torch.ones(1, like.shape[-1], dtype=like.dtype, device=like.device)
    for t in tensors:
        table = (table[:, None, :] * t[None, :, :]).reshape(-1, like.shape[-1])
    return table


def _anchor_chunk_logsumexp(
    anchor: Tensor, scale: Tensor, table: Tensor, last: Tensor, *, start: int, stop: int
) -> Tensor:
    rows = anchor[start:stop]
    products = (rows[:, None, :] * table[None, :, :]).reshape(-1, anchor.shape[1])
    logits = scale * (products @ last.T)  # (rows·|table|, N)
    return torch.logsumexp(logits.reshape(rows.shape[0], -1), dim=1)


def _n_squared_term(
    anchor: Tensor, others: Sequence[Tensor], scale: Tensor, chunk_budget: int
) -> Tensor:
    """CE of one anchor term over all N^(M-1) tuples with a chunked log-sum-exp.

    The N^(M-1) columns of the reference (``symile_n_squared_logits``) are every
    combination of one row per non-anchor modality, each exactly once; a log-sum-exp does
    not depend on column order, so the loss enumerates them as a Cartesian product instead
    of by rolling: for a chunk of anchors, broadcast anchor x (rows of the product table
    of all but the last other modality) and multiply with the last one (one GEMM). No
    gathers, so the backward pass has no scatter. Chunks of anchors fit ``chunk_budget``
    elements (products + logits) and are recomputed in the backward pass (activation
    checkpointing): for M = 3 memory is O(c·N·(D + N)) for c anchors per chunk instead of
    N^2·D, and values and gradients equal the direct formula. (For M >= 4 the table of
    the first M-2 others is materialised once, N^(M-2)·D.)
    """
    n, d = anchor.shape
    table = _cartesian_product_rows(others[:-1], anchor)
    per_chunk = max(1, chunk_budget // (table.shape[0] * (d + n)))
    # a single chunk already fits the budget: no point recomputing it in the backward pass
    needs_checkpoint = per_chunk < n and torch.is_grad_enabled() and any(
        t.requires_grad for t in (anchor, scale, *others)
    )
    partial_lse = []
    for start in range(0, n, per_chunk):
        fn = partial(_anchor_chunk_logsumexp, start=start, stop=min(n, start + per_chunk))
        if needs_checkpoint:
            partial_lse.append(checkpoint(fn, anchor, scale, table, others[-1], use_reentrant=False))
        else:
            partial_lse.append(fn(anchor, scale, table, others[-1]))
    lse = torch.cat(partial_lse)
    return (lse - scale * mip(anchor, *others)).mean()


def symile_loss(
    embeddings: Sequence[Tensor],
    scale: float | Tensor,
    negatives: str = "n",
    generator: torch.Generator | None = None,
    present: Present = None,
    chunk_budget: int = N_SQUARED_CHUNK_BUDGET,
    k: int = 128,
) -> Tensor:
    """Symile loss for M >= 2 modalities (§4), the mean over M cross-entropy terms.

    negatives:
      ``n``         each modality is the anchor once; independent permutations per term
                    (drawn from ``generator`` in anchor order, then modality order).
      ``n_squared`` anchors against all N^(M-1) tuples, chunked over anchors (see
                    ``_n_squared_term``); ``chunk_budget`` bounds one chunk's elements;
                    with M = 2 this is symmetric CLIP InfoNCE.
      ``full``      target-indexed: query pair fixed, all in-batch candidates (§4, [proj]).
      ``pair``      target-indexed: K sampled candidates per row (§7), K = ``k``.
    ``scale`` is s (times κ for l2_dvs, applied by the caller).
    """
    if len(embeddings) < 2:
        raise ValueError("symile_loss needs at least two modalities")
    if negatives in ("full", "pair"):
        return candidate_conditioned_loss(
            _ungated_scores, embeddings, scale, negatives, k, generator, present
        )
    if negatives not in ("n", "n_squared"):
        raise ValueError(f"unknown negatives {negatives!r} (n, n_squared, full, pair)")
    n = embeddings[0].shape[0]
    scale_t = torch.as_tensor(scale, dtype=embeddings[0].dtype, device=embeddings[0].device)
    terms = []
    for a in range(len(embeddings)):
        keep = None if present is None else present[a]
        if _count(keep, n) < 2:
            continue
        subset = _subset(embeddings, keep)
        anchor, others = subset[a], [e for m, e in enumerate(subset) if m != a]
        if negatives == "n":
            logits = scale_t * symile_n_logits(anchor, others, generator)
            labels = torch.arange(anchor.shape[0], device=anchor.device)
            terms.append(F.cross_entropy(logits, labels))
        else:
            terms.append(_n_squared_term(anchor, others, scale_t, chunk_budget))
    return _average_terms(terms, embeddings)


def _ungated_scores(
    queries: list[Tensor], candidates: Tensor, target: int, query_present: object
) -> Tensor:
    # Ungated Symile embeds a missing query from its [0, mask] input (§9): nothing to mask.
    return symile_candidate_scores(queries, candidates)


def sample_pair_candidates(
    n: int, k: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> Tensor:
    """Candidate indices for the `pair` mode (§7): (n, K+1), column 0 = the positive i.

    Negatives are uniform with replacement over the other n-1 samples: draw x in [0, n-2]
    and add 1 when x >= i. K is clamped to n-1.
    """
    if n < 2:
        raise ValueError("pair sampling needs at least two samples")
    k = min(int(k), n - 1)
    gen_device = generator.device if generator is not None else "cpu"
    draws = torch.randint(0, n - 1, (n, k), generator=generator, device=gen_device).to(device)
    rows = torch.arange(n, device=device)[:, None]
    negatives = draws + (draws >= rows).long()
    return torch.cat([rows, negatives], dim=1)


def candidate_conditioned_loss(
    score_fn: ScoreFn,
    embeddings: Sequence[Tensor],
    scale: float | Tensor,
    negatives: str = "full",
    k: int = 128,
    generator: torch.Generator | None = None,
    present: Present = None,
) -> Tensor:
    """Target-indexed contrastive loss (§7), shared by ungated Symile and Gated Symile.

    For each target t (in modality order): rows and candidates are the samples with t
    present; the queries are the other modalities in increasing index order. ``full``
    scores all in-batch candidates (labels = arange); ``pair`` samples K candidates per row
    (positive in column 0) and scores the *union* of sampled candidates with ``score_fn``
    before gathering, which is exact because every (query, candidate) score is independent
    of which other candidates are scored. Loss = mean over the computed targets of the
    row-mean cross entropy.
    """
    if negatives not in ("full", "pair"):
        raise ValueError(f"candidate-conditioned negatives must be full or pair, got {negatives!r}")
    n = embeddings[0].shape[0]
    terms = []
    for t in range(len(embeddings)):
        keep = None if present is None else present[t]
        n_keep = _count(keep, n)
        if n_keep < 2:
            continue
        subset = _subset(embeddings, keep)
        queries = [e for m, e in enumerate(subset) if m != t]
        query_present = None
        if present is not None:
            query_present = [
                None if p is None else (p if keep is None else p[keep])
                for m, p in enumerate(present)
                if m != t
            ]
        candidates = subset[t]
        if negatives == "full":
            logits = scale * score_fn(queries, candidates, t, query_present)
            labels = torch.arange(n_keep, device=candidates.device)
        else:
            index = sample_pair_candidates(n_keep, k, generator, candidates.device)
            union, position = torch.unique(index, sorted=True, return_inverse=True)
            scores = score_fn(queries, candidates[union], t, query_present)
            logits = scale * scores.gather(1, position)
            labels = torch.zeros(n_keep, dtype=torch.long, device=candidates.device)
        terms.append(F.cross_entropy(logits, labels))
    return _average_terms(terms, embeddings)
