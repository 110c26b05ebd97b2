"""Exact global negatives across processes: gather with gradient, score local rows (docs/distributed.md).

Each process embeds its own rows of the global batch. The embeddings of all processes are
all-gathered *with gradient*, every process scores its local rows (queries, anchors) against
all global candidates and returns its *share* of the single-batch loss (``rows`` of
``gated_symile.method.losses``: its rows' cross entropies divided by the global row count). The
shares of all processes add up to the loss of one process on the concatenated batch, so

* the backward of the gather sums, over processes, the gradient each share sends to a
  process's rows (an all-reduce), and
* DDP *sums* the parameter gradients (a comm hook; plain DDP would average them),

which gives every process exactly the gradient of the single-process loss. Random draws (the
`n` permutations, `pair` candidates) come from a loss generator in the same state on every
process and are made for the whole batch, so they are the single-process draws too.

This module is the only place that calls torch.distributed for the objective; the losses
never do (they take the gathered tensors and a row slice).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class Shard:
    """Which rows of a global batch one process owns: ``sizes[r]`` rows per rank, in rank order."""

    rank: int
    sizes: tuple[int, ...]

    @property
    def rows(self) -> slice:
        """This rank's rows as a slice of the global batch."""
        start = sum(self.sizes[: self.rank])
        return slice(start, start + self.sizes[self.rank])

    @property
    def total(self) -> int:
        return sum(self.sizes)


def shard_batch(n_rows: int, world_size: int, rank: int) -> Shard:
    """Contiguous, near-equal split of ``n_rows`` over the ranks (the first ranks get one more)."""
    base, extra = divmod(n_rows, world_size)
    return Shard(rank, tuple(base + (r < extra) for r in range(world_size)))


class _GatherRows(torch.autograd.Function):
    """All-gather of row blocks of possibly different sizes; backward sums the gradients."""

    @staticmethod
    def forward(ctx, local: Tensor, shard: Shard, group) -> Tensor:  # type: ignore[override]
        ctx.shard, ctx.group = shard, group
        return _all_gather_rows(local, shard, group)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        # Every process's share sent a gradient to every row; the total for this rank's rows
        # is their sum over processes. (gloo has no reduce_scatter, so all-reduce and slice.)
        total = grad.contiguous().clone()
        dist.all_reduce(total, group=ctx.group)
        return total[ctx.shard.rows], None, None


def _all_gather_rows(local: Tensor, shard: Shard, group) -> Tensor:
    """Rows of every rank concatenated in rank order (padded to the largest block for the wire)."""
    width = max(shard.sizes)
    padded = local.new_zeros((width, *local.shape[1:]))
    padded[: local.shape[0]] = local
    blocks = [torch.empty_like(padded) for _ in shard.sizes]
    dist.all_gather(blocks, padded, group=group)
    return torch.cat([b[:n] for b, n in zip(blocks, shard.sizes)])


def gather_with_grad(local: Sequence[Tensor], shard: Shard, group=None) -> list[Tensor]:
    """Global-batch embeddings (one (N, D) per modality) whose gradient reaches every rank.

    One gather per modality: a modality the loss does not use (every term with it skipped
    for missing data) gets no backward, so its encoder keeps no gradient, as in one process.
    Whether it is used is decided on the global batch, hence the same on every rank, and
    autograd runs the backward collectives in the same (creation) order on every rank.
    """
    return [_GatherRows.apply(e, shard, group) for e in local]


def gather_masks(local: Sequence[Tensor] | None, shard: Shard, group=None) -> list[Tensor] | None:
    """Global-batch presence masks (bool, no gradient); None stays None."""
    if local is None:
        return None
    stacked = torch.stack([m.to(torch.uint8) for m in local], dim=1)  # gloo has no bool
    return list(_all_gather_rows(stacked, shard, group).bool().unbind(1))


def embed_batch(model: nn.Module, batch: Mapping[str, Tensor], bf16: bool) -> list[Tensor]:
    """The encoders' embeddings of a batch, under bf16 autocast when asked (the losses never are)."""
    device = next(iter(batch.values())).device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        return model.embed(batch)


class ShardedObjective(nn.Module):
    """One rank's training step up to the loss: embed local rows, gather, local share.

    Wrapped in DDP as a whole (encoders, logit scale and gate), so that every parameter the
    share uses is synchronised. ``group`` carries the embedding gathers; give it its own
    process group so they never interleave with DDP's gradient buckets.
    """

    def __init__(self, model: nn.Module, group=None, bf16: bool = False) -> None:
        super().__init__()
        self.model = model
        self.group = group
        self.bf16 = bf16

    def forward(
        self, batch: Mapping[str, Tensor], shard: Shard, generator: torch.Generator | None
    ) -> Tensor:
        local = embed_batch(self.model, batch, self.bf16)
        embeddings = gather_with_grad(local, shard, self.group)
        present = gather_masks(self.model.present_masks(batch), shard, self.group)
        return self.model.loss(embeddings, present, generator, rows=shard.rows)


def _sum_gradients(group, bucket):  # no annotations: DDP checks them as objects, not strings
    """DDP comm hook: the sum of the ranks' gradients (each is the gradient of a loss share)."""
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def wrap_ddp(
    objective: ShardedObjective, device: torch.device, find_unused_parameters: bool
) -> nn.parallel.DistributedDataParallel:
    """DDP around a ``ShardedObjective`` with summed (not averaged) gradients.

    ``find_unused_parameters``: needed when a step can leave parameters without a gradient
    on every rank (a loss term skipped for missing modalities); such parameters keep no
    gradient, as in one process. Buffers are not broadcast: every rank updates them from the
    same gathered batch.
    """
    ddp = nn.parallel.DistributedDataParallel(
        objective,
        device_ids=[device.index] if device.type == "cuda" else None,
        forward_sync_buffers=False,
        find_unused_parameters=find_unused_parameters,
    )
    ddp.register_comm_hook(None, _sum_gradients)
    return ddp
