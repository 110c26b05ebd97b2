"""Zero-shot retrieval evaluation: embed a split once, score queries against their candidates, rank.

The three protocols of the tensor format (docs/tensor-format.md, docs/method.md §11) differ only in
which target embeddings form each query's candidate pool and which of them is the positive:

- ``candidates``: query row i against the rows ``split.candidates[i]`` (positive in column 0);
- ``bank``: every row of the split whose target is present (positive = the query's own row), or an
  explicit ``split.bank`` with the true row ``split.bank_index[i]``;
- ``inbatch``: consecutive blocks of ``eval_batch`` rows in file order, each its own pool; the
  trailing partial block is dropped.

Scoring always goes through ``model.candidate_scores``, i.e. candidate-conditioned: the query's
gate sees each candidate, never the true target alone (docs/method.md §15 pitfall 1). Queries are
scored in blocks against a whole pool (never one Python iteration per query, pitfall 16). A query
counts only if its target and at least one query modality are present (docs/method.md §9).

Ranks use a seeded uniform tie-break (pitfall 7): rank = 1 + #{scores > s_true} + U, with U
uniform on {0, ..., #ties}. This has the distribution of the positive's position after a random
permutation of the tied candidates, so a constant scorer gets top-1 = 1/pool on average instead of
1. The draws are made once for all queries in row order, so they do not depend on the block size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gated_symile.evaluation import metrics
from gated_symile.errors import GatedSymileError

if TYPE_CHECKING:
    import torch

    from gated_symile.data.datasets import TensorSplit

PROTOCOLS: tuple[str, ...] = ("candidates", "bank", "inbatch")
_SCORE_BUDGET = 1 << 22  # max query x candidate scores per block: bounds memory for large banks
_TIE_STREAM = 0  # rng stream ids under the evaluation seed
_BOOTSTRAP_STREAM = 1


@dataclass(frozen=True)
class RetrievalTask:
    """Which modality is retrieved from which, read from ``metadata.json``."""

    modalities: tuple[str, ...]
    target: str
    protocol: str
    eval_batch: int | None = None

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], eval_batch: int | None = None) -> RetrievalTask:
        modalities = tuple(metadata["modalities"])
        target = metadata["target"]
        protocol = metadata["protocol"]
        if target not in modalities:
            raise GatedSymileError(f"metadata: target {target!r} is not one of the modalities {modalities}")
        if protocol not in PROTOCOLS:
            raise GatedSymileError(f"metadata: protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if protocol == "inbatch":
            eval_batch = eval_batch if eval_batch is not None else metadata.get("eval_batch")
            if not isinstance(eval_batch, int) or eval_batch < 2:
                raise GatedSymileError(
                    f"metadata: protocol inbatch needs eval_batch >= 2, got {eval_batch!r}"
                )
        return cls(modalities, target, protocol, eval_batch if protocol == "inbatch" else None)

    @property
    def target_index(self) -> int:
        return self.modalities.index(self.target)

    @property
    def queries(self) -> tuple[str, ...]:
        """The non-target modalities in modality order (the order ``candidate_scores`` expects)."""
        return tuple(m for m in self.modalities if m != self.target)


@dataclass
class QueryRanks:
    """Per-query outcome of one evaluation, in split-row order.

    ``counts`` accounts for every query row: ``rows = scored + missing_target + missing_queries +
    dropped_trailing``; ``nan_scores`` counts NaN scores that were ranked as -inf.
    """

    rows: np.ndarray  # (Q,) int64 split row of each scored query
    ranks: np.ndarray  # (Q,) int64, 1-based, tie-broken
    pool_sizes: np.ndarray  # (Q,) int64 candidates the query was ranked among
    counts: dict[str, int] = field(default_factory=dict)


def presence(split: TensorSplit, modalities: Sequence[str]) -> dict[str, np.ndarray]:
    """Bool (n,) presence per modality; a modality without a mask is present everywhere."""
    return {
        m: np.asarray(split.present[m], dtype=bool) if m in split.present else np.ones(split.n, bool)
        for m in modalities
    }


def embed_split(model: Any, split: TensorSplit, *, batch_size: int, device: Any) -> list[torch.Tensor]:
    """Embed every row of the split once: one fp32 (n, D) tensor per modality, on ``device``."""
    import torch

    model.eval()
    chunks: list[list[torch.Tensor]] = []
    with torch.no_grad():
        for start in range(0, split.n, batch_size):
            idx = np.arange(start, min(start + batch_size, split.n))
            chunks.append([e.float() for e in model.embed(split.batch(idx, device))])
    if not chunks:
        raise GatedSymileError("cannot evaluate an empty split")
    return [torch.cat(parts) for parts in zip(*chunks, strict=True)]


def embed_bank(model: Any, split: TensorSplit, target: str, *, batch_size: int, device: Any) -> torch.Tensor:
    """Embed the rows of an explicit bank (binary XOR) with the target encoder only."""
    import torch

    n_bank = len(split.bank)
    with torch.no_grad():
        parts = [
            model.embed_modality(
                target, split.bank_batch(np.arange(s, min(s + batch_size, n_bank)), device)
            ).float()
            for s in range(0, n_bank, batch_size)
        ]
    return torch.cat(parts)


def rank_queries(
    model: Any,
    split: TensorSplit,
    task: RetrievalTask,
    embeddings: Sequence[torch.Tensor],
    *,
    seed: int,
    batch_size: int,
    device: Any,
) -> QueryRanks:
    """Score every eligible query of the split against its pool and draw tie-broken ranks."""
    import torch

    present = presence(split, task.modalities)
    has_query = np.logical_or.reduce([present[q] for q in task.queries])
    targets = embeddings[task.target_index]
    query_embs = [embeddings[task.modalities.index(q)] for q in task.queries]
    acc = _Accumulator()

    def score(rows: np.ndarray, cand_embs: torch.Tensor) -> torch.Tensor:
        """fp32 scores of query ``rows`` against ``cand_embs`` (autocast off, no gradients)."""
        idx = torch.as_tensor(rows, device=targets.device)
        mask = [torch.as_tensor(present[q][rows], device=targets.device) for q in task.queries]
        with torch.no_grad(), torch.autocast(device_type=targets.device.type, enabled=False):
            return model.candidate_scores([e[idx] for e in query_embs], cand_embs, mask).float()

    if task.protocol == "candidates":
        _rank_candidates(split, present[task.target], has_query, targets, score, batch_size, acc)
    elif task.protocol == "bank" and split.bank is not None:
        bank = embed_bank(model, split, task.target, batch_size=batch_size, device=device)
        eligible = present[task.target] & has_query
        acc.exclude(present[task.target], has_query)
        positives = np.asarray(split.bank_index, dtype=np.int64)
        _rank_against_pool(np.flatnonzero(eligible), positives, bank, score, batch_size, acc)
    elif task.protocol == "bank":
        bank_rows = np.flatnonzero(present[task.target])
        position = np.full(split.n, -1, dtype=np.int64)
        position[bank_rows] = np.arange(bank_rows.size)
        acc.exclude(present[task.target], has_query)
        eligible = np.flatnonzero(present[task.target] & has_query)
        _rank_against_pool(
            eligible,
            position,
            targets[torch.as_tensor(bank_rows, device=targets.device)],
            score,
            batch_size,
            acc,
        )
    else:
        _rank_inbatch(split.n, task.eval_batch, present[task.target], has_query, targets, score, acc)

    rng = np.random.default_rng((seed, _TIE_STREAM))
    return acc.finish(rng)


class _Accumulator:
    """Collects (row, #greater, #ties, pool) per scored query and the exclusion counts."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.counts = {
            "rows": 0,
            "scored": 0,
            "missing_target": 0,
            "missing_queries": 0,
            "dropped_trailing": 0,
            "nan_scores": 0,
        }

    def exclude(self, target_present: np.ndarray, has_query: np.ndarray) -> None:
        """Count query rows and those failing the eligibility rule (missing target first)."""
        self.counts["rows"] += int(target_present.size)
        self.counts["missing_target"] += int((~target_present).sum())
        self.counts["missing_queries"] += int((target_present & ~has_query).sum())

    def add(
        self,
        rows: np.ndarray,
        scores: torch.Tensor,
        positive: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> None:
        """Rank a block: ``scores`` (B, N), ``positive`` (B,) column, ``valid`` (B, N) or (N,) pool mask."""
        import torch

        nan = torch.isnan(scores)
        if valid is not None:
            nan &= valid
        self.counts["nan_scores"] += int(nan.sum())
        scores = scores.masked_fill(torch.isnan(scores), float("-inf"))
        true = scores.gather(1, positive[:, None])
        greater = scores > true
        ties = scores == true
        if valid is None:
            pool = torch.full((scores.shape[0],), scores.shape[1], device=scores.device)
        else:
            valid = valid.expand_as(scores)
            greater &= valid
            ties &= valid
            pool = valid.sum(1)
        self.parts.append(
            (rows, *(t.cpu().numpy().astype(np.int64) for t in (greater.sum(1), ties.sum(1) - 1, pool)))
        )

    def finish(self, rng: np.random.Generator) -> QueryRanks:
        if self.parts:
            rows, greater, ties, pool = (np.concatenate(col) for col in zip(*self.parts, strict=True))
        else:
            rows = greater = ties = pool = np.zeros(0, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        rows, greater, ties, pool = rows[order], greater[order], ties[order], pool[order]
        ranks = metrics.tie_broken_ranks(greater, ties, rng)
        self.counts["scored"] = int(rows.size)
        return QueryRanks(rows.astype(np.int64), ranks.astype(np.int64), pool, dict(self.counts))


def _blocks(rows: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, rows.size, size):
        yield rows[start : start + size]


def _rank_candidates(
    split: TensorSplit,
    target_present: np.ndarray,
    has_query: np.ndarray,
    targets: torch.Tensor,
    score: Callable[[np.ndarray, torch.Tensor], torch.Tensor],
    batch_size: int,
    acc: _Accumulator,
) -> None:
    """Preselected candidates: score a block against the union of its candidates, then gather.

    Per-candidate gating depends only on the (query, candidate) pair, so scoring against the
    union and gathering each query's own columns is exact.
    """
    import torch

    candidates = np.asarray(split.candidates, dtype=np.int64)
    n_q = candidates.shape[0]
    if n_q > split.n or candidates.min(initial=0) < 0 or candidates.max(initial=0) >= split.n:
        raise GatedSymileError(
            f"candidates ({n_q} x {candidates.shape[1]}) index outside the split of {split.n} rows"
        )
    positive_present = target_present[candidates[:, 0]]
    acc.exclude(positive_present, has_query[:n_q])
    eligible = np.flatnonzero(positive_present & has_query[:n_q])
    cand_valid = torch.as_tensor(target_present, device=targets.device)
    for rows in _blocks(eligible, batch_size):
        block = torch.as_tensor(candidates[rows], device=targets.device)
        union, inverse = torch.unique(block, return_inverse=True)
        scores = score(rows, targets[union]).gather(1, inverse)
        positive = torch.zeros(rows.size, dtype=torch.long, device=targets.device)
        acc.add(rows, scores, positive, cand_valid[block])


def _rank_against_pool(
    rows: np.ndarray,
    positives: np.ndarray,
    pool: torch.Tensor,
    score: Callable[[np.ndarray, torch.Tensor], torch.Tensor],
    batch_size: int,
    acc: _Accumulator,
) -> None:
    """One shared pool (global or explicit bank): ``positives[row]`` is the true pool row."""
    import torch

    block = max(1, min(batch_size, _SCORE_BUDGET // max(1, pool.shape[0])))
    for chunk in _blocks(rows, block):
        positive = torch.as_tensor(positives[chunk], device=pool.device)
        acc.add(chunk, score(chunk, pool), positive)


def _rank_inbatch(
    n: int,
    eval_batch: int,
    target_present: np.ndarray,
    has_query: np.ndarray,
    targets: torch.Tensor,
    score: Callable[[np.ndarray, torch.Tensor], torch.Tensor],
    acc: _Accumulator,
) -> None:
    """Consecutive blocks of ``eval_batch`` rows, each its own pool; the partial tail is dropped.

    Within a block the pool is the rows whose target is present (as for the global bank).
    """
    import torch

    n_full = (n // eval_batch) * eval_batch
    acc.exclude(target_present[:n_full], has_query[:n_full])
    acc.counts["rows"] += n - n_full
    acc.counts["dropped_trailing"] += n - n_full
    for start in range(0, n_full, eval_batch):
        block = np.arange(start, start + eval_batch)
        local = np.flatnonzero(target_present[block] & has_query[block])
        if local.size == 0:
            continue
        valid = torch.as_tensor(target_present[block], device=targets.device)
        scores = score(block[local], targets[start : start + eval_batch])
        acc.add(block[local], scores, torch.as_tensor(local, device=targets.device), valid)


def corr_mod_groups(codes: np.ndarray, modalities: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Name the ``corr_mod`` codes (0 clean, 1..M that modality, M+1 several) and fix their order."""
    names = ["clean", *(f"{m}_corrupted" for m in modalities), "several_corrupted"]
    codes = np.asarray(codes).astype(np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= len(names)):
        raise GatedSymileError(f"corr_mod values must lie in [0, {len(names) - 1}]")
    return np.asarray(names)[codes], names


def _stratification(
    ranks: QueryRanks, split: TensorSplit, task: RetrievalTask, values: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Accuracy by misalignment flag (``corr_mod`` and each ``corr_<m>``) and by query presence."""
    out: dict[str, Any] = {}
    flags = split.flags
    for name in sorted(flags):
        column = np.asarray(flags[name])[ranks.rows]
        if name == "corr_mod":
            labels, names = corr_mod_groups(column, task.modalities)
            out[name] = metrics.stratify(values, labels, order=names)
        else:
            labels = np.where(column.astype(bool), "corrupted", "clean")
            out[name] = metrics.stratify(values, labels, order=["clean", "corrupted"])
    present = presence(split, task.queries)
    subsets = [c for r in range(len(task.queries), 0, -1) for c in itertools.combinations(task.queries, r)]
    names = ["_and_".join(c) for c in subsets]
    pattern = (
        np.stack([present[q][ranks.rows] for q in task.queries], axis=1)
        if ranks.rows.size
        else np.zeros((0, len(task.queries)), bool)
    )
    labels = np.array(
        ["_and_".join(q for q, p in zip(task.queries, row, strict=True) if p) for row in pattern],
        dtype=object,
    )
    out["query_presence"] = metrics.stratify(values, labels.astype(str), order=names)
    return out


def summarise_ranks(
    ranks: QueryRanks, split: TensorSplit, task: RetrievalTask, *, seed: int, bootstrap_n: int = 0
) -> dict[str, Any]:
    """JSON-ready metrics of one evaluation: headline means, pool sizes, bootstrap, strata."""
    values = metrics.per_query_values(ranks.ranks, ranks.pool_sizes)
    pool = ranks.pool_sizes
    return {
        "protocol": task.protocol,
        "target": task.target,
        "queries": list(task.queries),
        "eval_batch": task.eval_batch,
        **metrics.summarise(values),
        "pool_size": {
            "min": int(pool.min()) if pool.size else None,
            "max": int(pool.max()) if pool.size else None,
            "mean": float(pool.mean()) if pool.size else None,
        },
        "query_counts": ranks.counts,
        "bootstrap": (
            metrics.bootstrap(values, bootstrap_n, np.random.default_rng((seed, _BOOTSTRAP_STREAM)))
            if bootstrap_n > 0
            else None
        ),
        "stratified": _stratification(ranks, split, task, values),
    }


def evaluate_retrieval(
    model: Any,
    split: TensorSplit,
    metadata: dict[str, Any],
    *,
    seed: int,
    batch_size: int = 256,
    device: Any = "cpu",
    bootstrap_n: int = 0,
    eval_batch: int | None = None,
    embeddings: Sequence[torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on one split (eval mode, no gradients, fp32 scores); see module doc.

    ``embeddings`` (from :func:`embed_split`) may be passed to reuse them, e.g. for the gate
    diagnostics. ``eval_batch`` overrides ``metadata["eval_batch"]`` for the ``inbatch`` protocol.
    """
    import torch

    task = RetrievalTask.from_metadata(metadata, eval_batch)
    model.eval()
    with torch.no_grad():
        if embeddings is None:
            embeddings = embed_split(model, split, batch_size=batch_size, device=device)
        ranks = rank_queries(model, split, task, embeddings, seed=seed, batch_size=batch_size, device=device)
    return summarise_ranks(ranks, split, task, seed=seed, bootstrap_n=bootstrap_n)
