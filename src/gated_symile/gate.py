"""The Gated Symile gate and its exact factorised per-candidate scoring (docs/method.md §6-§9).

Why factorised: gating depends on the (query, candidate) pair, so a naive implementation
builds B·N gated D-dimensional tuples (O(B·N·D) memory, 4 GB at B = N = 2048, D = 256).
Every gated score is instead a combination of B×N matrices (§8): the gate weights come
from projections computed once per sample, the renormalisation norm from a closed-form
identity, and the multilinear product expands into 2^(M-1) GEMMs of query products against
the candidates. No (B, N, D) tensor is ever formed, autograd works directly, and the values
equal the per-tuple definition (tests/naive_gate.py) to float64 round-off.

Parameter naming: register the scorer under a parent attribute called ``gate`` (e.g.
``model.gate = GatedSymileScorer(...)``) so that every parameter name contains "gate";
the trainer puts those in their own optimiser group (lr x lr_gate_mul, weight decay 0).

Precision: every public method disables autocast and casts half-precision inputs to fp32
([proj] §6.1, pitfall §15.6); float64 inputs stay float64 (used by the exactness tests).

Scores are UNSCALED: the caller multiplies by s·κ.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gated_symile.method.losses import candidate_conditioned_loss

GATE_TYPES = ("sigmoid", "softmax")
GATE_MODES = ("attention", "matrix")
NEUTRAL_TYPES = ("random_trainable", "random_frozen", "ones", "mean", "none")
TEMP_PARAMS = ("softplus", "exp")
#: eps of every normalisation (as F.normalize: divide by max(‖x‖, eps)).
NORM_EPS = 1e-6

QueryPresent = Sequence[Tensor | None] | None


@dataclass(frozen=True)
class GateWeights:
    """Gate diagnostics for one target.

    weights: per query modality (in increasing modality order) the weight w_m, shape
        (B, N) (row = query, column = candidate), as computed by the gate (a missing query
        modality is overridden to its neutral downstream, not here).
    p_null: NULL probability, (B, N) (an expanded view where it depends on the candidate
        only); None when NULL is off.
    alpha: global gate strength σ(λ), scalar.
    """

    weights: tuple[Tensor, ...]
    p_null: Tensor | None
    alpha: Tensor


@dataclass(frozen=True)
class _CandidateSide:
    """Everything that depends only on the target and the candidates (computed once)."""

    target: int
    query_modalities: tuple[int, ...]
    q: Tensor | None  # (N, d_k) normalised query projections of the candidates
    null_logit: Tensor | None  # (N,) attention, 0-d matrix, None without NULL
    tau: Tensor
    alpha: Tensor
    neutrals: tuple[Tensor, ...]  # (D,) per query modality (zeros for `none`)
    neutral_product_scores: Tensor  # (N,) = C (Π_m n_m): the all-neutral MIP term


@dataclass(frozen=True)
class _Coefficients:
    weights: tuple[Tensor, ...]
    p_null: Tensor | None
    beta: tuple[Tensor, ...]
    gamma: tuple[Tensor, ...]


def _as_fp32(t: Tensor) -> Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


class GatedSymileScorer(nn.Module):
    """Candidate-conditioned gate of §6 with exact factorised scoring (§8).

    Keywords mirror the ``gate.*`` config keys: ``gate_type`` (sigmoid | softmax),
    ``gate_mode`` (attention | matrix), ``use_null``, ``neutral`` (random_trainable |
    random_frozen | ones | mean | none), ``gate_strength_init`` (λ₀, α = σ(λ)), ``gate_temp``
    and ``temp_param`` (softplus: τ = softplus(ρ) + 0.1 with ρ₀ = ln(gate_temp), [ref-G];
    exp: τ = exp(ρ) + 0.1 starting exactly at gate_temp), ``renormalize``,
    ``mean_momentum`` (EMA of the `mean` neutral). All random initialisation draws from a
    private RNG stream seeded with ``seed``, so construction is deterministic and leaves
    the global RNG untouched. ``score_chunk_elements`` bounds the B×N working matrices of
    ``candidate_scores`` by scoring query rows in chunks (results are identical).
    """

    def __init__(
        self,
        dim: int,
        n_modalities: int = 3,
        d_k: int = 256,
        gate_type: str = "sigmoid",
        gate_mode: str = "attention",
        use_null: bool = True,
        neutral: str = "random_trainable",
        gate_strength_init: float = -6.0,
        gate_temp: float = 0.5,
        temp_param: str = "softplus",
        renormalize: bool = True,
        mean_momentum: float = 0.99,
        seed: int = 0,
        score_chunk_elements: int = 2**18,
    ) -> None:
        super().__init__()
        _check_choice("gate_type", gate_type, GATE_TYPES)
        _check_choice("gate_mode", gate_mode, GATE_MODES)
        _check_choice("neutral", neutral, NEUTRAL_TYPES)
        _check_choice("temp_param", temp_param, TEMP_PARAMS)
        if n_modalities < 2:
            raise ValueError("the gate needs at least two modalities")
        if temp_param == "exp" and gate_temp <= 0.1:
            raise ValueError(f"gate_temp must be > 0.1 with temp_param 'exp', got {gate_temp}")
        if temp_param == "softplus" and gate_temp <= 0:
            raise ValueError(f"gate_temp must be > 0, got {gate_temp}")
        self.dim, self.n_modalities, self.d_k = int(dim), int(n_modalities), int(d_k)
        self.gate_type, self.gate_mode, self.use_null = gate_type, gate_mode, bool(use_null)
        self.neutral_type, self.temp_param = neutral, temp_param
        self.renormalize = bool(renormalize) and neutral != "none"
        self.mean_momentum = float(mean_momentum)
        self.score_chunk_elements = int(score_chunk_elements)
        m, d = self.n_modalities, self.dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if gate_mode == "attention":
                self.query_proj = nn.ModuleList(nn.Linear(d, d_k, bias=False) for _ in range(m))
                self.key_proj = nn.ModuleList(nn.Linear(d, d_k, bias=False) for _ in range(m))
                if self.use_null:
                    self.null_head = nn.Sequential(
                        nn.LayerNorm(d), nn.Linear(d, d_k), nn.ReLU(), nn.Linear(d_k, 1)
                    )
            else:
                init = torch.zeros(m, m) if gate_type == "sigmoid" else 0.01 * torch.randn(m, m)
                self.matrix_logits = nn.Parameter(init)
            if neutral == "random_trainable":
                self.neutral = nn.Parameter(F.normalize(torch.randn(m, d), dim=1, eps=NORM_EPS))
            elif neutral == "random_frozen":
                self.register_buffer("neutral", F.normalize(torch.randn(m, d), dim=1, eps=NORM_EPS))
            elif neutral == "mean":
                self.register_buffer("neutral", torch.zeros(m, d))
                self.register_buffer("neutral_updates", torch.zeros(m, dtype=torch.long))
        if self.use_null:
            self.null_bias = nn.Parameter(torch.zeros(m))
        rho0 = math.log(gate_temp) if temp_param == "softplus" else math.log(gate_temp - 0.1)
        self.temperature_raw = nn.Parameter(torch.tensor(rho0))
        self.strength_logit = nn.Parameter(torch.tensor(float(gate_strength_init)))

    # ------------------------------------------------------------------ scalars and neutrals
    def temperature(self) -> Tensor:
        """Effective gate temperature τ_g (§6.2)."""
        rho = self.temperature_raw
        return (F.softplus(rho) if self.temp_param == "softplus" else torch.exp(rho)) + 0.1

    def gate_strength(self) -> Tensor:
        """Global gate strength α = σ(λ) (§6.5)."""
        return torch.sigmoid(self.strength_logit)

    def neutral_directions(self) -> Tensor:
        """The (M, D) neutral directions n_m used in the forward (§6.4).

        Stored directions (random_*, mean) are re-normalised on every call (in the working
        dtype); `ones` is 𝟏/√D; `none` gives zeros; the `mean` neutral is the zero vector
        until ``update_neutral_means`` has seen data.
        """
        shape = (self.n_modalities, self.dim)
        if self.neutral_type == "none":
            return self.strength_logit.new_zeros(shape)
        if self.neutral_type == "ones":
            return self.strength_logit.new_full(shape, 1.0 / math.sqrt(self.dim))
        return F.normalize(self.neutral, dim=1, eps=NORM_EPS)

    @torch.no_grad()
    def update_neutral_means(self, embeddings: Sequence[Tensor], present: QueryPresent = None) -> None:
        """EMA update of the `mean` neutral from a batch (training mode only; else a no-op).

        The first update of a modality copies its batch mean (no bias toward the zero
        init); later ones use ``mean_momentum``. Only present rows count. Safe to call for
        every neutral type (no-op unless `mean`).
        """
        if self.neutral_type != "mean" or not self.training:
            return
        for m, e in enumerate(embeddings):
            mask = None if present is None else present[m]
            rows = e if mask is None else e[mask]
            if rows.shape[0] == 0:
                continue
            batch_mean = rows.detach().to(self.neutral.dtype).mean(dim=0)
            if int(self.neutral_updates[m]) == 0:
                self.neutral[m].copy_(batch_mean)
            else:
                self.neutral[m].mul_(self.mean_momentum).add_(batch_mean, alpha=1 - self.mean_momentum)
            self.neutral_updates[m] += 1

    # ------------------------------------------------------------------ weights (§6.2-§6.5)
    def _candidate_side(self, candidates: Tensor, target: int) -> _CandidateSide:
        if not 0 <= target < self.n_modalities:
            raise ValueError(f"target {target} outside 0..{self.n_modalities - 1}")
        query_modalities = tuple(m for m in range(self.n_modalities) if m != target)
        tau = self.temperature()
        q = null_logit = None
        if self.gate_mode == "attention":
            q = F.normalize(self.query_proj[target](candidates), dim=-1, eps=NORM_EPS)
            if self.use_null:
                null_logit = (self.null_head(candidates).squeeze(-1) + self.null_bias[target]) / tau
        elif self.use_null:
            null_logit = self.null_bias[target] / tau
        all_neutrals = self.neutral_directions().to(candidates.dtype)
        neutrals = tuple(all_neutrals[m] for m in query_modalities)
        neutral_product = neutrals[0]
        for n in neutrals[1:]:
            neutral_product = neutral_product * n
        return _CandidateSide(
            target, query_modalities, q, null_logit, tau, self.gate_strength(), neutrals,
            candidates @ neutral_product,
        )

    def _coefficients(
        self, side: _CandidateSide, queries: Sequence[Tensor], query_present: QueryPresent, paired: bool
    ) -> _Coefficients:
        """Weights w_m and interpolation coefficients β_m, γ_m (§6.3-§6.5, §8 step 3).

        paired=False: (B, N) for every query x candidate; paired=True: (B,) for aligned
        rows (query i with candidate i), used for positive-pair diagnostics.
        """
        b = queries[0].shape[0]
        shape = (b,) if paired else (b, side.neutral_product_scores.shape[0])
        logits = []
        for m, e in zip(side.query_modalities, queries):
            if self.gate_mode == "attention":
                k = F.normalize(self.key_proj[m](e), dim=-1, eps=NORM_EPS)
                logits.append(((k * side.q).sum(-1) if paired else k @ side.q.T) / side.tau)
            else:
                logits.append(self.matrix_logits[side.target, m])
        null = side.null_logit
        if null is not None and null.dim() == 1 and not paired:
            null = null[None, :]
        logits = [s.expand(shape) for s in logits]
        p_null = None
        if self.gate_type == "sigmoid":
            weights = [torch.sigmoid(s) for s in logits]
            if null is not None:
                p_null = torch.sigmoid(null).expand(shape)
                weights = [w * (1 - p_null) for w in weights]
        else:
            stacked = logits + ([null.expand(shape)] if null is not None else [])
            probs = torch.softmax(torch.stack(stacked, dim=-1), dim=-1).unbind(-1)
            weights = list(probs[: len(logits)])
            p_null = probs[-1] if null is not None else None
        beta, gamma = [], []
        for idx, w in enumerate(weights):
            g = side.alpha * (1 - w)
            bt = 1 - g
            if self.neutral_type == "none":
                g = torch.zeros_like(g)
            mask = None if query_present is None else query_present[idx]
            if mask is not None:  # hard neutral for a missing query modality (§9)
                mask = mask if paired else mask[:, None]
                bt = torch.where(mask, bt, torch.zeros_like(bt))
                g = torch.where(mask, g, torch.ones_like(g))
            beta.append(bt)
            gamma.append(g)
        return _Coefficients(tuple(weights), p_null, tuple(beta), tuple(gamma))

    def _norms(
        self, side: _CandidateSide, queries: Sequence[Tensor], coef: _Coefficients,
        query_present: QueryPresent, paired: bool,
    ) -> list[Tensor]:
        """‖β e + γ n‖ per query modality via the norm identity (§8 step 4), clamped at eps."""
        norms = []
        for idx, (e, n) in enumerate(zip(queries, side.neutrals)):
            e_sq, e_n = (e * e).sum(-1), e @ n
            if not paired:
                e_sq, e_n = e_sq[:, None], e_n[:, None]
            bt, g = coef.beta[idx], coef.gamma[idx]
            sq = bt * bt * e_sq + g * g * (n @ n) + 2 * bt * g * e_n
            r = torch.sqrt(sq.clamp_min(NORM_EPS**2))
            mask = None if query_present is None else query_present[idx]
            if mask is not None:  # a hard neutral is n_m itself, never re-normalised
                r = torch.where(mask if paired else mask[:, None], r, torch.ones_like(r))
            norms.append(r)
        return norms

    def _score_rows(
        self, side: _CandidateSide, queries: Sequence[Tensor], candidates: Tensor,
        query_present: QueryPresent,
    ) -> Tensor:
        """§8 steps 2-6 for one chunk of query rows: the (b, N) gated MIP matrix."""
        coef = self._coefficients(side, queries, query_present, paired=False)
        n_query = len(queries)
        patterns = (
            itertools.product((False, True), repeat=n_query)
            if self.neutral_type != "none"
            else [(False,) * n_query]
        )
        total = None
        for use_neutral in patterns:  # True at m: the neutral n_m replaces e_m in the MIP
            weight = None
            for idx, neutral_here in enumerate(use_neutral):
                c = coef.gamma[idx] if neutral_here else coef.beta[idx]
                weight = c if weight is None else weight * c
            if all(use_neutral):
                mip_matrix = side.neutral_product_scores[None, :]  # the GEMV term
            else:
                product = None
                for idx, neutral_here in enumerate(use_neutral):
                    factor = side.neutrals[idx][None, :] if neutral_here else queries[idx]
                    product = factor if product is None else product * factor
                mip_matrix = product @ candidates.T
            term = weight * mip_matrix
            total = term if total is None else total + term
        if self.renormalize:
            for r in self._norms(side, queries, coef, query_present, paired=False):
                total = total / r
        return total

    def _prepare(
        self, queries: Sequence[Tensor], candidates: Tensor, target: int
    ) -> tuple[list[Tensor], Tensor, _CandidateSide]:
        if len(queries) != self.n_modalities - 1:
            raise ValueError(f"expected {self.n_modalities - 1} query modalities, got {len(queries)}")
        queries = [_as_fp32(q) for q in queries]
        candidates = _as_fp32(candidates)
        return queries, candidates, self._candidate_side(candidates, target)

    # ------------------------------------------------------------------ public scoring API
    def candidate_scores(
        self, queries: Sequence[Tensor], candidates: Tensor, target: int,
        query_present: QueryPresent = None,
    ) -> Tensor:
        """Unscaled gated MIPs ⟨c_j, g_u(i,j) ⊙ g_v(i,j) ...⟩, shape (B, N) (§7, §8).

        queries: the non-target embeddings (B, D) in increasing modality order;
        candidates: (N, D) target embeddings; query_present: per query modality a bool (B,)
        mask (True = present) or None; a missing one becomes its hard neutral (score 0 with
        neutral `none`). Every pair is gated conditioned on its candidate; the target is
        never gated. Query rows are processed in chunks of ``score_chunk_elements / N``.
        """
        with torch.autocast(device_type=candidates.device.type, enabled=False):
            queries, candidates, side = self._prepare(queries, candidates, target)
            b, n = queries[0].shape[0], candidates.shape[0]
            rows = max(1, self.score_chunk_elements // max(n, 1))
            chunks = []
            for start in range(0, b, rows):
                sl = slice(start, start + rows)
                present = None if query_present is None else [
                    None if p is None else p[sl] for p in query_present
                ]
                chunks.append(self._score_rows(side, [q[sl] for q in queries], candidates, present))
            return torch.cat(chunks, dim=0) if len(chunks) > 1 else chunks[0]

    def gate_weights(
        self, queries: Sequence[Tensor], candidates: Tensor, target: int,
        query_present: QueryPresent = None,
    ) -> GateWeights:
        """Gate weights for every (query, candidate) pair (the ones candidate_scores uses)."""
        with torch.autocast(device_type=candidates.device.type, enabled=False):
            queries, candidates, side = self._prepare(queries, candidates, target)
            coef = self._coefficients(side, queries, query_present, paired=False)
            return GateWeights(coef.weights, coef.p_null, side.alpha)

    def positive_gate_weights(
        self, queries: Sequence[Tensor], candidates: Tensor, target: int,
        query_present: QueryPresent = None,
    ) -> GateWeights:
        """Gate weights of the positive pairs only (query i with candidate i): shapes (B,).

        Cheap (O(B·(D + d_k))); ``candidates`` must be aligned with the query rows.
        """
        with torch.autocast(device_type=candidates.device.type, enabled=False):
            queries, candidates, side = self._prepare(queries, candidates, target)
            coef = self._coefficients(side, queries, query_present, paired=True)
            return GateWeights(coef.weights, coef.p_null, side.alpha)

    def gated_cosines(
        self, queries: Sequence[Tensor], candidates: Tensor, target: int,
        query_present: QueryPresent = None,
    ) -> tuple[Tensor, ...]:
        """cos(g_m, e_m) on the positive pairs, one (B,) tensor per query modality.

        ``candidates`` must be aligned with the query rows (candidate i = positive of
        query i). Uses cos = (β‖e‖² + γ⟨e,n⟩) / (‖βe + γn‖·‖e‖); renormalisation is a positive
        rescaling and does not change it.
        """
        with torch.autocast(device_type=candidates.device.type, enabled=False):
            queries, candidates, side = self._prepare(queries, candidates, target)
            if candidates.shape[0] != queries[0].shape[0]:
                raise ValueError("gated_cosines needs candidates aligned with the queries")
            coef = self._coefficients(side, queries, query_present, paired=True)
            norms = self._norms(side, queries, coef, None, paired=True)
            cosines = []
            for idx, (e, n) in enumerate(zip(queries, side.neutrals)):
                e_norm = e.norm(dim=-1).clamp_min(NORM_EPS)
                dot = coef.beta[idx] * e_norm**2 + coef.gamma[idx] * (e @ n)
                cosines.append(dot / (norms[idx] * e_norm))
            return tuple(cosines)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def gated_symile_loss(
    scorer: GatedSymileScorer,
    embeddings: Sequence[Tensor],
    scale: float | Tensor,
    negatives: str = "full",
    k: int = 128,
    generator: torch.Generator | None = None,
    present: QueryPresent = None,
) -> Tensor:
    """Candidate-conditioned Gated Symile loss (§7): mean over the M targets of row-mean CE.

    ``full``: all in-batch candidates (exact factorised scoring, cost of ungated `n`);
    ``pair``: K negatives per row sampled as in [ref-G] (see
    ``losses.sample_pair_candidates``), scored exactly on the union of sampled candidates.
    ``scale`` = s·κ (applied to the unscaled gated MIPs). Rows whose target is missing are
    excluded from that target's term, and candidates come only from samples with it (§9);
    missing query modalities become hard neutrals.
    """
    return candidate_conditioned_loss(
        scorer.candidate_scores, embeddings, scale, negatives, k, generator, present
    )
