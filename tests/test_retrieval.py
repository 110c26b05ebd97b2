"""Retrieval protocols on tiny tensor datasets with fake models whose right answers are known.

The datasets are written with the real tensor-format writer and read with the real loader, so the
tests also pin the contract between ``gated_symile.data.datasets`` and ``gated_symile.evaluation.retrieval``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gated_symile.evaluation.retrieval import evaluate_retrieval, rank_queries, RetrievalTask, embed_split
from gated_symile.data.tensor_format import write_metadata, write_split
from gated_symile.data.datasets import load_tensor_dataset

MODS = ("a", "b", "c")
DIM = 8


class DotModel:
    """Embeddings are the inputs; score = <candidate, sum of present query embeddings>."""

    def __init__(self, modalities=MODS):
        self.modalities = modalities

    def eval(self):
        return self

    def embed(self, batch):
        return [batch[m] for m in self.modalities]

    def embed_modality(self, modality, inputs):
        return inputs

    def candidate_scores(self, query_embs, candidate_embs, query_present):
        q = sum(e * p[:, None].to(e.dtype) for e, p in zip(query_embs, query_present, strict=True))
        return q @ candidate_embs.T


class ConstantModel(DotModel):
    def candidate_scores(self, query_embs, candidate_embs, query_present):
        return torch.zeros(query_embs[0].shape[0], candidate_embs.shape[0])


class PairwiseGatedModel(DotModel):
    """Candidate-conditioned, non-linear per (query, candidate) pair, like per-candidate gating."""

    def candidate_scores(self, query_embs, candidate_embs, query_present):
        u, v = query_embs
        w_u = torch.sigmoid(u @ candidate_embs.T)  # (B, N) gate weight per pair
        w_v = torch.sigmoid(v @ candidate_embs.T)
        return w_u * (u @ candidate_embs.T) + w_v * (v @ candidate_embs.T) + w_u * w_v


def unit(rng, n, d=DIM):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_dataset(
    root: Path,
    arrays: dict[str, np.ndarray],
    protocol: str,
    *,
    present: dict[str, np.ndarray] | None = None,
    index_extra: dict[str, np.ndarray] | None = None,
    extra_files: dict[str, np.ndarray] | None = None,
    eval_batch: int | None = None,
    split: str = "test",
):
    n = len(next(iter(arrays.values())))
    files = dict(arrays)
    files.update({f"{m}_present": p for m, p in (present or {}).items()})
    files.update(extra_files or {})
    write_split(root / split, files, {"sample_id": np.arange(n, dtype=np.int64), **(index_extra or {})})
    meta = {
        "dataset": "toy",
        "modalities": list(MODS),
        "target": "a",
        "protocol": protocol,
        "splits": {split: n},
        "inputs": {m: {"kind": "float32", "shape": [DIM]} for m in MODS},
    }
    if eval_batch is not None:
        meta["eval_batch"] = eval_batch
    write_metadata(root, meta)
    ds = load_tensor_dataset(root)
    return ds.split(split), ds.metadata


def aligned(n, seed=0):
    """Every modality equals the same unit vector: a dot-product scorer is perfect."""
    x = unit(np.random.default_rng(seed), n)
    return {m: x.copy() for m in MODS}


def candidate_matrix(n, k, seed=0):
    rng = np.random.default_rng(seed)
    cands = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        others = np.delete(np.arange(n), i)
        cands[i] = [i, *rng.choice(others, size=k - 1, replace=False)]
    return cands


@pytest.fixture
def perfect_sets(tmp_path):
    n = 40
    return {
        "candidates": write_dataset(
            tmp_path / "c", aligned(n), "candidates", extra_files={"candidates": candidate_matrix(n, 10)}
        ),
        "bank": write_dataset(tmp_path / "b", aligned(n), "bank"),
        "inbatch": write_dataset(tmp_path / "i", aligned(n), "inbatch", eval_batch=16),
        "explicit_bank": write_dataset(
            tmp_path / "e",
            {"a": np.zeros((n, DIM), np.float32), "b": aligned(n)["b"], "c": aligned(n)["c"]},
            "bank",
            extra_files={
                "bank_a": np.concatenate([unit(np.random.default_rng(5), 7), aligned(n)["b"][::-1]]),
                "bank_index": (7 + np.arange(n)[::-1]).astype(np.int64),
            },
        ),
    }


@pytest.mark.parametrize("protocol", ["candidates", "bank", "inbatch", "explicit_bank"])
def test_perfect_model_ranks_every_positive_first(perfect_sets, protocol):
    split, meta = perfect_sets[protocol]
    out = evaluate_retrieval(DotModel(), split, meta, seed=0, batch_size=7)
    expected_pool = {"candidates": 10, "bank": 40, "inbatch": 16, "explicit_bank": 47}[protocol]
    assert out["top1"] == 1.0 and out["mrr"] == 1.0 and out["mean_rank"] == 1.0
    assert out["pool_size"] == {"min": expected_pool, "max": expected_pool, "mean": float(expected_pool)}
    assert out["chance"] == pytest.approx(1 / expected_pool)
    assert out["n_queries"] == (32 if protocol == "inbatch" else 40)


def test_random_model_is_near_chance(tmp_path):
    rng = np.random.default_rng(1)
    n, pool = 1600, 16
    split, meta = write_dataset(tmp_path, {m: unit(rng, n) for m in MODS}, "inbatch", eval_batch=pool)
    out = evaluate_retrieval(DotModel(), split, meta, seed=0, batch_size=256)
    sd = np.sqrt(1 / pool * (1 - 1 / pool) / n)
    assert abs(out["top1"] - 1 / pool) < 4 * sd
    assert abs(out["mean_rank"] - (pool + 1) / 2) < 0.5


def test_constant_scores_are_tie_broken_uniformly(tmp_path):
    n, k = 2000, 10
    split, meta = write_dataset(
        tmp_path, aligned(n), "candidates", extra_files={"candidates": candidate_matrix(n, k)}
    )
    out = evaluate_retrieval(ConstantModel(), split, meta, seed=3)
    sd = np.sqrt(0.1 * 0.9 / n)
    assert abs(out["top1"] - 0.1) < 4 * sd  # never "first index wins" (would be 1.0)
    assert abs(out["mean_rank"] - 5.5) < 0.3


def test_inbatch_drops_the_trailing_partial_batch(tmp_path):
    split, meta = write_dataset(tmp_path, aligned(50), "inbatch", eval_batch=16)
    task = RetrievalTask.from_metadata(meta)
    ranks = rank_queries(
        DotModel(),
        split,
        task,
        embed_split(DotModel(), split, batch_size=9, device="cpu"),
        seed=0,
        batch_size=9,
        device="cpu",
    )
    assert ranks.rows.tolist() == list(range(48))
    assert ranks.counts["dropped_trailing"] == 2 and ranks.counts["rows"] == 50
    # eval_batch argument overrides metadata
    out = evaluate_retrieval(DotModel(), split, meta, seed=0, eval_batch=25)
    assert out["n_queries"] == 50 and out["eval_batch"] == 25 and out["pool_size"]["max"] == 25


def test_missing_target_and_missing_queries(tmp_path):
    n = 30
    present_a = np.ones(n, bool)
    present_a[[1, 4]] = False  # target missing: not scored, not in the bank
    present_b = np.ones(n, bool)
    present_b[[5, 6, 7]] = False
    present_c = np.ones(n, bool)
    present_c[[7, 8]] = False  # row 7 has no query modality at all
    arrays = aligned(n)
    arrays["b"][~present_b] = 0.0  # a missing modality carries no information
    arrays["c"][~present_c] = 0.0
    split, meta = write_dataset(
        tmp_path, arrays, "bank", present={"a": present_a, "b": present_b, "c": present_c}
    )
    out = evaluate_retrieval(DotModel(), split, meta, seed=0)
    counts = out["query_counts"]
    assert counts == {
        "rows": 30,
        "scored": 27,
        "missing_target": 2,
        "missing_queries": 1,
        "dropped_trailing": 0,
        "nan_scores": 0,
    }
    assert counts["scored"] + counts["missing_target"] + counts["missing_queries"] == counts["rows"]
    assert out["pool_size"]["max"] == 28 and out["top1"] == 1.0
    strata = out["stratified"]["query_presence"]
    assert {k: v["n_queries"] for k, v in strata.items()} == {"b_and_c": 24, "b": 1, "c": 2}


def test_candidates_gather_matches_per_query_brute_force(tmp_path):
    rng = np.random.default_rng(7)
    n, k = 37, 6
    arrays = {m: unit(rng, n) for m in MODS}
    cands = candidate_matrix(n, k, seed=2)
    split, meta = write_dataset(tmp_path, arrays, "candidates", extra_files={"candidates": cands})
    model = PairwiseGatedModel()
    task = RetrievalTask.from_metadata(meta)
    embs = embed_split(model, split, batch_size=5, device="cpu")
    ranks = rank_queries(model, split, task, embs, seed=0, batch_size=5, device="cpu")
    ones = torch.ones(1, dtype=torch.bool)
    for i in range(n):  # the slow way: one query, its own k candidates
        s = model.candidate_scores([embs[1][i : i + 1], embs[2][i : i + 1]], embs[0][cands[i]], [ones, ones])[
            0
        ]
        assert ranks.ranks[i] == 1 + int((s > s[0]).sum())


def test_deterministic_and_independent_of_batch_size(tmp_path):
    rng = np.random.default_rng(4)
    n = 64
    flags = {"corr_mod": rng.integers(0, 4, n).astype(np.int64), "corr_b": rng.random(n) < 0.3}
    split, meta = write_dataset(
        tmp_path, {m: np.round(unit(rng, n), 1) for m in MODS}, "inbatch", eval_batch=8, index_extra=flags
    )
    runs = [
        evaluate_retrieval(DotModel(), split, meta, seed=11, batch_size=b, bootstrap_n=20)
        for b in (3, 64, 64)
    ]
    assert runs[0] == runs[1] == runs[2]
    other = evaluate_retrieval(ConstantModel(), split, meta, seed=12, bootstrap_n=20)
    assert other != evaluate_retrieval(ConstantModel(), split, meta, seed=11, bootstrap_n=20)


def test_stratified_by_misalignment_flags(tmp_path):
    n = 40
    arrays = aligned(n)
    corr_mod = np.zeros(n, np.int64)
    corr_mod[:10] = 2  # b corrupted: replace its signal, so those queries can fail
    corr_mod[10:15] = 3
    arrays["b"][:10] = -arrays["b"][:10] * 3
    split, meta = write_dataset(
        tmp_path,
        arrays,
        "bank",
        index_extra={"corr_mod": corr_mod, "corr_b": corr_mod == 2, "corr_c": corr_mod == 3},
    )
    out = evaluate_retrieval(DotModel(), split, meta, seed=0, bootstrap_n=50)
    by_mod = out["stratified"]["corr_mod"]
    assert list(by_mod) == ["clean", "a_corrupted", "b_corrupted", "c_corrupted", "several_corrupted"]
    assert by_mod["clean"]["top1"] == 1.0 and by_mod["c_corrupted"]["top1"] == 1.0
    assert by_mod["b_corrupted"]["top1"] == 0.0 and by_mod["a_corrupted"]["n_queries"] == 0
    assert out["stratified"]["corr_b"]["corrupted"]["n_queries"] == 10
    assert set(out["bootstrap"]) == {"n", "top1", "mrr"} and out["bootstrap"]["n"] == 50


def test_nan_scores_rank_last_and_are_counted(tmp_path):
    class NanModel(DotModel):
        def candidate_scores(self, query_embs, candidate_embs, query_present):
            s = super().candidate_scores(query_embs, candidate_embs, query_present)
            s[:, 0] = float("nan")
            return s

    split, meta = write_dataset(tmp_path, aligned(20), "bank")
    out = evaluate_retrieval(NanModel(), split, meta, seed=0)
    assert out["query_counts"]["nan_scores"] == 20
    assert out["top1"] == pytest.approx(19 / 20)  # only query 0 (its own column is NaN) fails


class AlignmentGate:
    """Fake gate: w_m = sigmoid(4 <e_m, c>) on positive pairs, so a flipped modality gets w < 0.5."""

    def positive_gate_weights(self, queries, candidates, target):
        from gated_symile.method.gate import GateWeights

        weights = tuple(torch.sigmoid(4 * (q * candidates).sum(-1)) for q in queries)
        return GateWeights(weights, None, torch.tensor(0.25))

    def gated_cosines(self, queries, candidates, target):
        return tuple(torch.ones(q.shape[0]) for q in queries)


def test_gate_diagnostics_show_which_modality_is_down_weighted(tmp_path):
    from gated_symile.evaluation.gate_diagnostics import gate_diagnostics

    n = 30
    arrays = aligned(n)
    corr_mod = np.zeros(n, np.int64)
    corr_mod[:10], corr_mod[10:20] = 2, 3
    arrays["b"][:10] *= -1
    arrays["c"][10:20] *= -1
    present_c = np.ones(n, bool)
    present_c[25:] = False  # no gate weight to describe for a missing query modality
    split, meta = write_dataset(
        tmp_path, arrays, "bank", present={"c": present_c}, index_extra={"corr_mod": corr_mod}
    )
    model = DotModel()
    assert gate_diagnostics(model, split, meta, embed_split(model, split, batch_size=8, device="cpu")) is None
    model.gate = AlignmentGate()
    out = gate_diagnostics(
        model, split, meta, embed_split(model, split, batch_size=8, device="cpu"), batch_size=7
    )
    groups = out["by_corr_mod"]
    assert out["alpha"] == 0.25 and out["overall"]["n_pairs"] == 25 and out["overall"]["p_null"] is None
    assert groups["b_corrupted"]["w_b-w_c"] < 0 < groups["c_corrupted"]["w_b-w_c"]
    assert groups["clean"]["n_pairs"] == 5 and groups["clean"]["w_b-w_c"] == pytest.approx(0.0, abs=1e-6)
    assert groups["several_corrupted"] == {
        "n_pairs": 0,
        "w_b": None,
        "w_c": None,
        "cos_b": None,
        "cos_c": None,
        "p_null": None,
        "w_b-w_c": None,
    }
    assert out["overall"]["cos_b"] == 1.0
