"""Exact global negatives: N gloo processes give the loss and gradients of one process on the
concatenated batch, for every objective and negatives mode (docs/distributed.md)."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gated_symile.method import losses as L
from gated_symile.method.gate import GatedSymileScorer, gated_symile_loss
from gated_symile.training.global_batch import shard_batch
from tests.distributed_helpers import (
    Case,
    no_tf32,
    one_step,
    reference_step,
    relative_error,
    run_ranks,
)

F64, F32 = torch.float64, torch.float32
GATE_VARIANTS = {"softmax_mean": {"type": "softmax", "neutral": "mean"}, "matrix": {"mode": "matrix"}}


def _cases(dtype: torch.dtype) -> list[Case]:
    suffix = "64" if dtype == F64 else "32"
    cases = []
    for masks in (False, True):
        tag = f"{'masked' if masks else 'full'}{suffix}"
        cases += [
            Case(f"clip_mean_{tag}", "clip", reduction="mean", masks=masks, dtype=dtype),
            Case(f"clip_sum_{tag}", "clip", reduction="sum", masks=masks, dtype=dtype),
            Case(f"symile_n_{tag}", "symile", "n", masks=masks, dtype=dtype),
            Case(f"symile_nsq_{tag}", "symile", "n_squared", masks=masks, dtype=dtype),
            Case(f"symile_full_{tag}", "symile", "full", masks=masks, dtype=dtype),
            Case(f"symile_pair_{tag}", "symile", "pair", masks=masks, dtype=dtype),
            Case(f"gated_full_{tag}", "gated_symile", "full", masks=masks, dtype=dtype),
            Case(f"gated_pair_{tag}", "gated_symile", "pair", masks=masks, dtype=dtype),
        ]
    for name, gate in GATE_VARIANTS.items():
        cases.append(Case(f"gated_full_{name}_{suffix}", "gated_symile", "full", dtype=dtype, gate=gate))
        cases.append(Case(f"gated_pair_{name}_{suffix}", "gated_symile", "pair", masks=True, dtype=dtype, gate=gate))
    for objective, negatives in (("clip", "n"), ("symile", "n_squared"), ("gated_symile", "full")):
        name = f"{objective}_{negatives}_sparse_{suffix}"  # parameters left without a gradient
        cases.append(Case(name, objective, negatives, masks=True, sparse=True, dtype=dtype))
    # uneven shards (a trailing batch with drop_last false): 10 rows over 3 ranks = 4, 3, 3
    cases.append(Case(f"symile_n_uneven_{suffix}", "symile", "n", batch=10, dtype=dtype))
    cases.append(Case(f"gated_pair_uneven_{suffix}", "gated_symile", "pair", batch=10, masks=True, dtype=dtype))
    return cases


CASES = _cases(F64) + _cases(F32)


GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_match_one_process_on_the_concatenated_batch(tmp_path, world_size):
    run_ranks(one_step, world_size, tmp_path, CASES, str(tmp_path))
    assert not _mismatches(tmp_path, world_size, "cpu")


@pytest.mark.skipif(GPUS < 2, reason="needs two CUDA GPUs")
def test_nccl_ranks_on_gpus_match_one_gpu(tmp_path):
    """The same check on GPUs: NCCL, rank r on cuda:r, against one process on cuda:0."""
    no_tf32()
    run_ranks(one_step, 2, tmp_path, CASES, str(tmp_path), backend="nccl")
    assert not _mismatches(tmp_path, 2, "cuda:0")


def _mismatches(folder, world_size, device) -> list:
    """(case, rank, what, error) of every loss or gradient off the one-process reference."""
    per_rank = [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(world_size)]
    failures = []
    for case in CASES:
        tol = 1e-10 if case.dtype == F64 else 1e-5
        loss, grads = reference_step(case, device)
        for rank, results in enumerate(per_rank):
            got_loss, got_grads = results[case.name]
            if relative_error(got_loss, loss) > tol:
                failures.append((case.name, rank, "loss", relative_error(got_loss, loss)))
            assert got_grads.keys() == grads.keys()
            for name, expected in grads.items():
                got = got_grads[name]
                if (got is None) != (expected is None):
                    failures.append((case.name, rank, name, "gradient presence differs"))
                elif expected is not None and relative_error(got, expected) > tol:
                    failures.append((case.name, rank, name, relative_error(got, expected)))
    return failures


@pytest.mark.parametrize(
    ("n", "world_size", "sizes"), [(12, 2, (6, 6)), (12, 3, (4, 4, 4)), (10, 3, (4, 3, 3)), (2, 3, (1, 1, 0))]
)
def test_shards_are_contiguous_and_cover_the_batch(n, world_size, sizes):
    shards = [shard_batch(n, world_size, r) for r in range(world_size)]
    assert all(s.sizes == sizes for s in shards)
    covered = [i for s in shards for i in range(n)[s.rows]]
    assert covered == list(range(n))


def _shares(loss_fn, embeddings, cuts):
    """Sum of the loss shares (and of their gradients) over the row slices between ``cuts``."""
    total, grads = 0.0, None
    for lo, hi in itertools.pairwise(cuts):
        leaves = [e.clone().requires_grad_() for e in embeddings]
        share = loss_fn(leaves, slice(lo, hi))
        share.backward()
        total = total + share.detach()
        step = [leaf.grad for leaf in leaves]
        grads = step if grads is None else [_add(a, b) for a, b in zip(grads, step)]
    return total, grads


def _add(a, b):
    """Sum of two gradients, None (not reached by the loss) when both are."""
    return b if a is None else a if b is None else a + b


def _loss_functions(scorer):
    gen = lambda: torch.Generator().manual_seed(5)
    return {
        "clip_sum": lambda e, r, p: L.clip_loss(e, 2.0, "sum", p, rows=r),
        "symile_n": lambda e, r, p: L.symile_loss(e, 2.0, "n", gen(), p, rows=r),
        # a tiny budget forces one-anchor chunks with activation checkpointing
        "symile_nsq": lambda e, r, p: L.symile_loss(e, 2.0, "n_squared", None, p, chunk_budget=1, rows=r),
        "symile_full": lambda e, r, p: L.symile_loss(e, 2.0, "full", None, p, rows=r),
        "symile_pair": lambda e, r, p: L.symile_loss(e, 2.0, "pair", gen(), p, k=3, rows=r),
        "gated_full": lambda e, r, p: gated_symile_loss(scorer, e, 2.0, "full", present=p, rows=r),
        "gated_pair": lambda e, r, p: gated_symile_loss(
            scorer, e, 2.0, "pair", k=3, generator=gen(), present=p, rows=r
        ),
    }


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(2, 9),
    m=st.integers(2, 4),
    cut_seeds=st.lists(st.integers(0, 9), max_size=3),
    masked=st.booleans(),
    seed=st.integers(0, 10**6),
)
def test_loss_shares_of_a_row_partition_add_up_to_the_batch_loss(n, m, cut_seeds, masked, seed):
    gen = torch.Generator().manual_seed(seed)
    embeddings = [torch.randn(n, 4, generator=gen, dtype=F64) for _ in range(m)]
    present = None
    if masked:
        present = [torch.rand(n, generator=gen) > 0.3 for _ in range(m)]
    cuts = sorted({0, n, *(c % (n + 1) for c in cut_seeds)})
    scorer = GatedSymileScorer(4, m, d_k=3, neutral="random_trainable").double()
    for name, fn in _loss_functions(scorer).items():
        whole, whole_grads = _shares(lambda e, r, fn=fn: fn(e, None, present), embeddings, [0, n])
        parts, part_grads = _shares(lambda e, r, fn=fn: fn(e, r, present), embeddings, cuts)
        assert abs(float(parts - whole)) <= 1e-12 * max(1.0, abs(float(whole))), name
        for a, b in zip(part_grads, whole_grads):
            assert (a is None) == (b is None), name
            assert b is None or relative_error(a, b) <= 1e-12, name


@pytest.mark.skipif(GPUS < 1, reason="needs a CUDA GPU")
@pytest.mark.parametrize("masked", [False, True])
def test_loss_shares_add_up_on_gpu(masked):
    no_tf32()
    gen = torch.Generator().manual_seed(3)
    embeddings = [torch.randn(12, 8, generator=gen, dtype=F32).cuda() for _ in range(3)]
    present = [(torch.rand(12, generator=gen) > 0.3).cuda() for _ in range(3)] if masked else None
    scorer = GatedSymileScorer(8, 3, d_k=4).cuda()
    for name, fn in _loss_functions(scorer).items():
        whole, whole_grads = _shares(lambda e, r, fn=fn: fn(e, None, present), embeddings, [0, 12])
        parts, part_grads = _shares(lambda e, r, fn=fn: fn(e, r, present), embeddings, [0, 5, 12])
        assert relative_error(parts, whole) <= 1e-5, name
        for a, b in zip(part_grads, whole_grads):
            assert (a is None) == (b is None) and (b is None or relative_error(a, b) <= 1e-5), name
