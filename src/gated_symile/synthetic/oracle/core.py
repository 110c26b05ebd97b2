"""Monte Carlo engine of the oracle yardsticks (docs/oracle.md): simulate, score by posterior, rank.

A *display model* (one per generator family) draws i.i.d. rows of what each modality shows of
the latents and gives the exact log density ratio ``log R_A(x_A; y) = log p(x_A, y) / (p(x_A) p(y))``
between any subset ``A`` of query modalities and a target value ``y``. The engine lays the rows
out as the evaluation protocol does (``Layout``: candidate sets and the donor pool), corrupts them
as the misalignment process does (``Corruption``), and scores every candidate ``j`` of a query by
its posterior weight of being the true partner, with the corruption state and swap donors
marginalised (docs/oracle.md, "Posterior with misalignment"):

    L_j = sum_S pi_S sum_{T subset S} s^|T| R_{(Q-S)+T}(j) prod_{m in S-T} D_m(j)
    D_m(j) = alpha sum_{k != j} R_m(k) + beta R_m(j) + gamma

(``s``: probability that a swap donor is the row itself; ``alpha``, ``beta``, ``gamma``: how likely
the donor is the partner of another candidate, of the same candidate value, or of no candidate).
Observable corruptions (``noise``, ``drop``) are scored with the known state instead.

Two scorers share everything but ``R``: the *oracle* uses the joint ratio ``R_A``; the *pairwise*
oracle replaces it by ``prod_{m in A} R_{m}``, the score an ideal pairwise (CLIP) model computes,
so it sees every pairwise dependence and none of the higher-order ones. Top-1 counts a query as
``1 / #ties`` when the positive ties for the best score (the expectation of the evaluation's
seeded random tie-break), so a constant scorer gets exactly ``1 / pool``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gated_symile.errors import ConfigError

Rows = dict[str, np.ndarray]
"""Displays of ``n`` rows per modality (leading axis = row)."""

OBSERVABLE_MODES: tuple[str, ...] = ("noise", "drop")
"""Corruptions a scorer can recognise (random pixels / values, a missing record): state known."""
MODES: tuple[str, ...] = ("swap", *OBSERVABLE_MODES)


class DisplayModel(Protocol):
    """What a generator family must provide to the engine."""

    target: str
    queries: tuple[str, ...]

    def sample(self, rng: np.random.Generator, n: int) -> Rows:
        """``n`` i.i.d. rows: one display array per modality, optional ``present_<m>`` bools."""
        ...

    def log_ratio(
        self, authentic: frozenset[str], queries: Rows, targets: np.ndarray, cands: np.ndarray
    ) -> np.ndarray:
        """(Q, K) ``log R_A``: ``queries[m]`` (Q, ...) for ``m`` in ``authentic`` against the
        target displays ``targets[cands]`` (``targets``: all target rows, ``cands``: (Q, K))."""
        ...


@dataclass(frozen=True)
class Corruption:
    """The misalignment of the evaluated split as the oracle knows it (docs/misalignment.md).

    ``weights``: with ``exclusive``, the probability of each corruptible modality given a hit
    (default uniform); otherwise each modality is hit independently with probability ``p``.
    """

    p: float = 0.0
    mode: str = "swap"
    modalities: tuple[str, ...] = ()
    exclusive: bool = True
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"oracle: misalignment p must lie in [0, 1], got {self.p}")
        if self.mode not in MODES:
            raise ConfigError(f"oracle: misalignment mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.weights is not None and (
            len(self.weights) != len(self.modalities) or not math.isclose(sum(self.weights), 1.0)
        ):
            raise ConfigError(f"oracle: exclusive weights {self.weights} must sum to 1 over {self.modalities}")

    @property
    def active(self) -> bool:
        return self.p > 0 and bool(self.modalities)

    def states(self) -> list[tuple[frozenset[str], float]]:
        """Every corrupted set with its prior probability (the empty set = clean)."""
        mods = self.modalities
        if not self.active:
            return [(frozenset(), 1.0)]
        if self.exclusive:
            weights = self.weights or tuple(1.0 / len(mods) for _ in mods)
            return [(frozenset(), 1.0 - self.p)] + [
                (frozenset([m]), self.p * w) for m, w in zip(mods, weights, strict=True)
            ]
        return [
            (frozenset(c), self.p ** len(c) * (1.0 - self.p) ** (len(mods) - len(c)))
            for r in range(len(mods) + 1)
            for c in itertools.combinations(mods, r)
        ]

    def draw(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """Bool (n,) corruption mask per corruptible modality."""
        mods = self.modalities
        out = {m: np.zeros(n, dtype=bool) for m in mods}
        if not self.active:
            return out
        if self.exclusive:
            hit = rng.random(n) < self.p
            weights = np.asarray(self.weights or [1.0 / len(mods)] * len(mods))
            choice = rng.choice(len(mods), size=n, p=weights / weights.sum())
            for k, m in enumerate(mods):
                out[m] = hit & (choice == k)
        else:
            for m in mods:
                out[m] = rng.random(n) < self.p
        return out


@dataclass(frozen=True)
class Layout:
    """One simulated evaluation: which rows are queries, their candidates and the swap donors.

    ``candidates`` (Q, K) index ``bank`` rows when an explicit bank is given, else the sampled rows;
    ``positive`` (Q,) is the column of the true partner (-1: the partner is not in the pool, the
    query is not scored). ``donor_pool``: the rows a swap donor is drawn from (a permutation).
    ``alpha``/``beta``/``gamma``/``self_weight``: the donor probabilities of the posterior.
    """

    n_rows: int
    queries: np.ndarray
    candidates: np.ndarray
    positive: np.ndarray
    donor_pool: np.ndarray
    alpha: float
    beta: float
    gamma: float
    self_weight: float
    bank: np.ndarray | None = None


LayoutFn = Callable[[np.random.Generator, Rows], Layout]


@dataclass
class Estimate:
    """Monte Carlo estimates of one cell: means and standard errors over replicate evaluations."""

    oracle_top1: float
    oracle_top1_se: float
    pairwise_oracle_top1: float
    pairwise_oracle_top1_se: float
    chance: float
    n_mc: int
    replicates: int
    extra: dict[str, float] = field(default_factory=dict)


def result_document(
    est: Estimate, protocol: str, pool: int, test_rows: int, method: str, level: str
) -> dict[str, object]:
    """The estimate of one evaluated dataset as the JSON fields of docs/oracle.md."""
    return {
        "oracle_top1": est.oracle_top1,
        "oracle_top1_se": est.oracle_top1_se,
        "pairwise_oracle_top1": est.pairwise_oracle_top1,
        "pairwise_oracle_top1_se": est.pairwise_oracle_top1_se,
        "chance": est.chance,
        "protocol": protocol,
        "pool_size": pool,
        "test_rows": test_rows,
        "n_mc": est.n_mc,
        "replicates": est.replicates,
        "method": method,
        "level": level,
    }


def simulate(
    model: DisplayModel,
    n_rows: int,
    layout: LayoutFn,
    corruption: Corruption,
    *,
    n_mc: int,
    seed: int,
) -> Estimate:
    """Repeat (sample ``n_rows`` rows, lay out, corrupt, score) until ``n_mc`` queries are scored."""
    if n_mc < 1:
        raise ConfigError(f"oracle: n_mc must be >= 1, got {n_mc}")
    rng = np.random.default_rng(seed)
    credits: dict[str, list[np.ndarray]] = {"oracle": [], "pairwise": [], "chance": []}
    while sum(c.size for c in credits["oracle"]) < n_mc:
        rows = model.sample(rng, n_rows)
        lay = layout(rng, rows)
        credit = score_replicate(model, rows, lay, corruption, rng)
        if credit["oracle"].size == 0:
            raise ConfigError("oracle: the simulated evaluation has no scorable query")
        for key, values in credits.items():
            values.append(credit[key])
    oracle, oracle_se = mean_se(credits["oracle"])
    pairwise, pairwise_se = mean_se(credits["pairwise"])
    chance = round(mean_se(credits["chance"])[0], 12)  # exact 1 / pool up to summation error
    n = sum(c.size for c in credits["oracle"])
    return Estimate(oracle, oracle_se, pairwise, pairwise_se, chance, n, len(credits["oracle"]))


MIN_REPLICATES_FOR_SE = 10
"""Below this many replicate evaluations the between-replicate spread is not trusted alone."""


def mean_se(replicates: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean per-query credit and its standard error.

    Queries of one replicate share candidates, so the SE is the larger of the i.i.d.-query SE and
    (with enough replicates) the SE of the ratio estimator over replicates.
    """
    values = np.concatenate(replicates)
    mean = float(values.mean())
    se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    if len(replicates) >= MIN_REPLICATES_FOR_SE:
        w = np.array([r.size for r in replicates], dtype=float)
        v = np.array([r.mean() for r in replicates])
        var = ((w * (v - mean)) ** 2).sum() / w.sum() ** 2 * v.size / (v.size - 1)
        se = max(se, float(np.sqrt(var)))
    return mean, se


def score_replicate(
    model: DisplayModel, rows: Rows, lay: Layout, corruption: Corruption, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per-query top-1 credit of both scorers and the chance credit ``1 / pool``."""
    observed, present, states_seen = corrupt(model, rows, lay, corruption, rng)
    target = lay.bank if lay.bank is not None else rows[model.target]
    target_present = (
        np.ones(len(target), dtype=bool)
        if lay.bank is not None
        else rows.get(f"present_{model.target}", np.ones(lay.n_rows, dtype=bool))
    )
    has_query = np.logical_or.reduce([present[m] for m in model.queries])
    keep = (lay.positive >= 0) & has_query[lay.queries]
    q_rows = lay.queries[keep]
    cands = lay.candidates[keep]
    positive = lay.positive[keep]
    valid = target_present[cands]
    queries = {m: observed[m][q_rows] for m in model.queries}
    q_present = {m: present[m][q_rows] for m in model.queries}
    out = {}
    joint, pairwise = _subset_ratios(model, queries, q_present, target, cands)
    for name, ratios in (("oracle", joint), ("pairwise", pairwise)):
        if corruption.active and corruption.mode == "swap":
            log_l = _swap_posterior(ratios, corruption, lay, valid)
        else:
            seen = {m: states_seen[m][q_rows] for m in states_seen}
            log_l = _known_state_posterior(ratios, model.queries, seen)
        log_l = np.where(valid, log_l, -np.inf)
        out[name] = top1_credit(log_l, positive)
    out["chance"] = 1.0 / valid.sum(axis=1)
    return out


def corrupt(
    model: DisplayModel, rows: Rows, lay: Layout, corruption: Corruption, rng: np.random.Generator
) -> tuple[Rows, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Observed query displays and presence after corruption, and the (observable) corrupted masks.

    Swap: row i reads modality m from ``donor_pool[perm[i]]`` (presence travels with the data).
    Noise / drop: the modality is marked unusable for the scorer (its state is observable).
    """
    observed = {m: rows[m] for m in model.queries}
    present = {m: rows.get(f"present_{m}", np.ones(lay.n_rows, dtype=bool)) for m in model.queries}
    masks = corruption.draw(rng, lay.n_rows)
    seen = {}
    for m in corruption.modalities:
        hit = masks[m]
        if corruption.mode == "swap":
            source = np.arange(lay.n_rows)
            pool_pos = np.full(lay.n_rows, -1)
            pool_pos[lay.donor_pool] = np.arange(lay.donor_pool.size)
            perm = lay.donor_pool[rng.permutation(lay.donor_pool.size)]
            swapped = hit & (pool_pos >= 0)
            source[swapped] = perm[pool_pos[swapped]]
            observed[m] = rows[m][source]
            present[m] = present[m][source]
        else:
            present[m] = present[m] & ~hit
            seen[m] = hit
    return observed, present, seen


def _subset_ratios(
    model: DisplayModel,
    queries: Rows,
    present: Mapping[str, np.ndarray],
    targets: np.ndarray,
    cands: np.ndarray,
) -> tuple[dict[frozenset[str], np.ndarray], dict[frozenset[str], np.ndarray]]:
    """``log R_A`` (Q, K) for every subset A of query modalities, joint and pairwise.

    A query modality missing from a row carries no information about the candidates, so in that
    row ``R_A`` equals ``R_{A minus the missing ones}``. The pairwise ratio of A is the sum of the
    single-modality ratios; each model call is made once per (usable set, presence pattern).
    """
    mods = model.queries
    subsets = [frozenset(c) for r in range(len(mods) + 1) for c in itertools.combinations(mods, r)]
    pattern = np.stack([present[m] for m in mods], axis=1)  # (Q, M)
    joint = {subset: np.zeros(cands.shape) for subset in subsets}
    for combo in np.unique(pattern, axis=0):
        rows = np.flatnonzero((pattern == combo).all(axis=1))
        here = frozenset(m for m, ok in zip(mods, combo, strict=True) if ok)
        done: dict[frozenset[str], np.ndarray] = {}
        for subset in subsets:
            usable = subset & here
            if usable and usable not in done:
                sub_q = {m: queries[m][rows] for m in usable}
                done[usable] = model.log_ratio(usable, sub_q, targets, cands[rows])
            if usable:
                joint[subset][rows] = done[usable]
    pairwise = {
        subset: sum((joint[frozenset([m])] for m in subset), np.zeros(cands.shape)) for subset in subsets
    }
    return joint, pairwise


def _known_state_posterior(
    ratios: Mapping[frozenset[str], np.ndarray], mods: Sequence[str], seen: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Observable corruption: use the authentic (uncorrupted) modalities of each row."""
    q = next(iter(ratios.values())).shape[0]
    hit = np.stack([seen.get(m, np.zeros(q, dtype=bool)) for m in mods], axis=1)
    out = np.empty_like(next(iter(ratios.values())))
    for combo in np.unique(hit, axis=0):
        rows = np.flatnonzero((hit == combo).all(axis=1))
        authentic = frozenset(m for m, h in zip(mods, combo, strict=True) if not h)
        out[rows] = ratios[authentic][rows]
    return out


def _swap_posterior(
    ratios: Mapping[frozenset[str], np.ndarray], corruption: Corruption, lay: Layout, valid: np.ndarray
) -> np.ndarray:
    """``log L_j`` with the corrupted set and the swap donors marginalised (module docstring)."""
    full = frozenset().union(*ratios)
    donor = {m: _log_donor_term(ratios[frozenset([m])], lay, valid) for m in corruption.modalities}
    log_self = math.log(lay.self_weight) if lay.self_weight > 0 else -math.inf
    terms = []
    for state, prior in corruption.states():
        if prior <= 0:
            continue
        authentic = full - state
        for r in range(len(state) + 1):
            for own in itertools.combinations(sorted(state), r):
                term = ratios[authentic | frozenset(own)] + len(own) * log_self
                for m in state - frozenset(own):
                    term = term + donor[m]
                terms.append(math.log(prior) + term)
    return np.logaddexp.reduce(np.stack(terms), axis=0)


def _log_donor_term(log_r: np.ndarray, lay: Layout, valid: np.ndarray) -> np.ndarray:
    """``log D_m(j) = log(alpha sum_{k != j} R_m(k) + beta R_m(j) + gamma)`` per (query, candidate)."""
    masked = np.where(valid, log_r, -np.inf)
    others = _logsumexp_excluding_self(masked)
    parts = [np.full(log_r.shape, -np.inf)]
    if lay.alpha > 0:
        parts.append(math.log(lay.alpha) + others)
    if lay.beta > 0:
        parts.append(math.log(lay.beta) + masked)
    if lay.gamma > 0:
        parts.append(np.full(log_r.shape, math.log(lay.gamma)))
    return np.logaddexp.reduce(np.stack(parts), axis=0)


def _logsumexp_excluding_self(x: np.ndarray) -> np.ndarray:
    """``log sum_{k != j} exp(x[:, k])`` for every column j, exactly (prefix/suffix sums)."""
    neg = np.full((x.shape[0], 1), -np.inf)
    prefix = np.logaddexp.accumulate(np.concatenate([neg, x[:, :-1]], axis=1), axis=1)
    suffix = np.logaddexp.accumulate(np.concatenate([neg, x[:, :0:-1]], axis=1), axis=1)[:, ::-1]
    return np.logaddexp(prefix, suffix)


TIE_TOLERANCE = 1e-9
"""Relative gap below which two log scores tie: equal posteriors summed in a different order."""


def top1_credit(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """1 / #ties when no candidate scores above the positive, else 0 (per query)."""
    true = scores[np.arange(scores.shape[0]), positive][:, None]
    tol = TIE_TOLERANCE * np.maximum(1.0, np.abs(np.where(np.isfinite(true), true, 0.0)))
    gap = np.where(np.isneginf(scores) & np.isneginf(true), 0.0, scores - true)
    beaten = (gap > tol).any(axis=1)
    ties = (np.abs(gap) <= tol).sum(axis=1)
    return np.where(beaten, 0.0, 1.0 / np.maximum(ties, 1))


def candidate_layout(n_rows: int, k: int) -> LayoutFn:
    """Symile-MIMIC protocol: every row a query, itself plus ``k - 1`` distinct other rows."""
    if not 1 <= k <= n_rows:
        raise ConfigError(f"oracle: {k} candidates need at least {k} test rows, got {n_rows}")

    def lay(rng: np.random.Generator, rows: Rows) -> Layout:
        keys = rng.random((n_rows, n_rows))
        keys[np.arange(n_rows), np.arange(n_rows)] = np.inf
        negatives = np.argpartition(keys, k - 1, axis=1)[:, : k - 1] if k > 1 else np.zeros((n_rows, 0), int)
        cands = np.concatenate([np.arange(n_rows)[:, None], negatives], axis=1)
        return _row_layout(n_rows, np.arange(n_rows), cands, np.zeros(n_rows, dtype=np.int64), k)

    return lay


def bank_layout(n_rows: int, target: str) -> LayoutFn:
    """Global bank: every row whose target is present; positive = the query's own row."""

    def lay(rng: np.random.Generator, rows: Rows) -> Layout:
        present = rows.get(f"present_{target}", np.ones(n_rows, dtype=bool))
        bank = np.flatnonzero(present)
        position = np.full(n_rows, -1)
        position[bank] = np.arange(bank.size)
        cands = np.broadcast_to(bank, (n_rows, bank.size))
        return _row_layout(n_rows, np.arange(n_rows), cands, position, bank.size)

    return lay


def inbatch_layout(n_rows: int, query_rows: int, block: int) -> LayoutFn:
    """Consecutive blocks of ``block`` query rows (the trailing partial block dropped); donors are
    drawn from all ``n_rows`` rows (Synthetic-XNOR swaps signal across the whole dataset)."""
    n_blocks = query_rows // block
    if n_blocks < 1:
        raise ConfigError(f"oracle: {query_rows} test rows hold no full block of {block}")

    def lay(rng: np.random.Generator, rows: Rows) -> Layout:
        q = np.arange(n_blocks * block)
        cands = (q // block * block)[:, None] + np.arange(block)[None, :]
        return _row_layout(n_rows, q, cands, q % block, block)

    return lay


def _row_layout(n_rows: int, queries: np.ndarray, cands: np.ndarray, positive: np.ndarray, k: int) -> Layout:
    """Candidates are rows of the donor pool (all rows): a donor is a candidate's partner w.p. 1/N."""
    return Layout(
        n_rows=n_rows,
        queries=queries,
        candidates=cands,
        positive=positive,
        donor_pool=np.arange(n_rows),
        alpha=1.0 / n_rows,
        beta=0.0,
        gamma=max(n_rows - k, 0) / n_rows,
        self_weight=1.0 / n_rows,
    )


def explicit_bank_layout(n_rows: int, bank: np.ndarray, index_of: Callable[[Rows], np.ndarray]) -> LayoutFn:
    """Every query against one fixed bank (binary XOR: all 2^d vectors); ``index_of`` gives each
    row's true bank row. A swap donor's target is a uniformly random bank row (the bank is every
    value the target can take), possibly the same value as the query's own."""
    size = len(bank)

    def lay(rng: np.random.Generator, rows: Rows) -> Layout:
        cands = np.broadcast_to(np.arange(size), (n_rows, size))
        share = (n_rows - 1) / (n_rows * size)
        return Layout(
            n_rows=n_rows,
            queries=np.arange(n_rows),
            candidates=cands,
            positive=index_of(rows),
            donor_pool=np.arange(n_rows),
            alpha=share,
            beta=share,
            gamma=0.0,
            self_weight=1.0 / n_rows,
            bank=bank,
        )

    return lay
