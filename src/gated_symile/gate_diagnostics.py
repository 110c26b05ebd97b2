"""What the Gated Symile gate does on positive pairs, overall and per misalignment group.

docs/method.md §11 asks for the evidence that the gate works, not only its accuracy: on a positive
pair (query i with its own target), a gate that detects misalignment should lower the weight of
the corrupted modality, i.e. mean(w_b − w_c | b corrupted) < 0 and mean(w_b − w_c | c corrupted)
> 0 on Synthetic-XNOR. Reported per ``corr_mod`` group: the mean gate weight of every query
modality, the mean NULL probability, the mean weight difference for every pair of query
modalities, and cos(g_m, e_m) (how far gating moved each embedding); plus the gate strength α.

Only rows whose target and every query modality are present are used: for a missing query
modality the gate's weight is overridden by the hard neutral (docs/method.md §9), so its w would
describe nothing. The positive-pair quantities come from the scorer's paired methods (O(B) per
block, no B×N matrix).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gated_symile.evaluation.retrieval import RetrievalTask, corr_mod_groups, presence

if TYPE_CHECKING:
    import torch

    from gated_symile.data.datasets import TensorSplit


def gate_diagnostics(
    model: Any,
    split: TensorSplit,
    metadata: dict[str, Any],
    embeddings: Sequence[torch.Tensor],
    *,
    batch_size: int = 256,
) -> dict[str, Any] | None:
    """Positive-pair gate statistics of a gated model on one split; None for ungated models.

    ``embeddings``: the split's per-modality embeddings from ``retrieval.embed_split``.
    Returns ``{"alpha", "rows", "overall": {...}, "by_corr_mod": {group: {...}} | None}`` where each
    group holds ``n_pairs``, ``w_<m>``, ``p_null`` (None without NULL), ``cos_<m>`` and
    ``w_<u>-w_<v>`` for every pair of query modalities (None when the group is empty).
    """
    import torch

    gate = getattr(model, "gate", None)
    if gate is None:
        return None
    task = RetrievalTask.from_metadata(metadata, metadata.get("eval_batch"))
    present = presence(split, task.modalities)
    rows = np.flatnonzero(np.logical_and.reduce([present[m] for m in task.modalities]))
    queries = [embeddings[task.modalities.index(q)] for q in task.queries]
    targets = embeddings[task.target_index]

    columns: dict[str, list[np.ndarray]] = {f"w_{q}": [] for q in task.queries}
    columns.update({f"cos_{q}": [] for q in task.queries})
    columns["p_null"] = []
    alpha = None
    model.eval()
    with torch.no_grad():
        for start in range(0, rows.size, batch_size):
            idx = torch.as_tensor(rows[start : start + batch_size], device=targets.device)
            q_block, c_block = [e[idx] for e in queries], targets[idx]
            weights = gate.positive_gate_weights(q_block, c_block, task.target_index)
            cosines = gate.gated_cosines(q_block, c_block, task.target_index)
            alpha = float(weights.alpha)
            for q, w, cos in zip(task.queries, weights.weights, cosines, strict=True):
                columns[f"w_{q}"].append(_numpy(w))
                columns[f"cos_{q}"].append(_numpy(cos))
            if weights.p_null is not None:
                columns["p_null"].append(_numpy(weights.p_null))
    values = {k: np.concatenate(v) if v else None for k, v in columns.items()}
    if values["p_null"] is None or values["p_null"].size != rows.size:
        values["p_null"] = None
    for u, v in itertools.combinations(task.queries, 2):
        values[f"w_{u}-w_{v}"] = values[f"w_{u}"] - values[f"w_{v}"]

    by_corr_mod = None
    flags = split.flags
    if "corr_mod" in flags:
        labels, names = corr_mod_groups(np.asarray(flags["corr_mod"])[rows], task.modalities)
        by_corr_mod = {name: _group_means(values, labels == name) for name in names}
    return {
        "alpha": alpha,  # None only when no row qualifies
        "rows": "positive pairs with the target and every query modality present",
        "overall": _group_means(values, np.ones(rows.size, dtype=bool)),
        "by_corr_mod": by_corr_mod,
    }


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy().astype(np.float64).reshape(-1)


def _group_means(values: dict[str, np.ndarray | None], mask: np.ndarray) -> dict[str, float | int | None]:
    n = int(mask.sum())
    out: dict[str, float | int | None] = {"n_pairs": n}
    for key, column in values.items():
        out[key] = float(column[mask].mean()) if column is not None and n else None
    return out
