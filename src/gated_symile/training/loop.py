"""The epoch loop: shuffled mini-batches, warm-up, clipping, validation top-1, early stopping.

``fit`` trains one ``ContrastiveModel`` on a tensor dataset and writes into ``run_dir``:
``checkpoints/last.pt`` (every epoch, for ``--resume``), ``checkpoints/best.pt`` (highest
validation top-1), ``resolved_config.yaml`` and ``history.jsonl``. Randomness comes from the run
seed only (python/numpy/torch seeded once, one generator for data order, one for loss negatives)
and every RNG is checkpointed, so on CPU a resumed run ends with exactly the weights and metrics of
an uninterrupted one.

Several processes (``procs``, docs/distributed.md) each load their rows of every global batch
and step a DDP-wrapped ``ShardedObjective``; rank 0 validates, writes the files and logs, and
the validation metrics are broadcast so that every rank takes the same early-stopping decision.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from gated_symile.config import RunConfig, config_hash
from gated_symile.errors import ConfigError, GatedSymileError
from gated_symile.outputs import write_text
from gated_symile.training.checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    capture_rng,
    load_checkpoint,
    restore_rng,
)
from gated_symile.training.device import torch_settings
from gated_symile.training.distributed import (
    Processes,
    check_same_job,
    sharded_objective,
    training_device,
)
from gated_symile.training.global_batch import embed_batch
from gated_symile.training.optim import (
    apply_warmup,
    build_optimizer,
    set_optimizer_mode,
)

_LOSS_SEED_OFFSET = 7919  # the loss-negatives generator must not replay the data-order stream
_TIMING_KEYS = ("time_s", "eval_s", "samples_per_s")


class EpochLogger(Protocol):
    """What the loop reports to (MLflow tracking implements it; None = not tracked)."""

    def log_epoch(self, record: dict[str, Any]) -> None: ...


@dataclass
class LoopState:
    """Counters that, with the weights and RNGs, define where a run stands."""

    epoch: int = 0  # completed epochs
    global_step: int = 0
    best_top1: float = -math.inf
    best_epoch: int = 0
    patience_counter: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(
    dataset: Any,
    run_cfg: RunConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    max_epochs: int | None = None,
    logger: EpochLogger | None = None,
    progress: bool | None = None,
    procs: Processes | None = None,
) -> dict[str, Any]:
    """Train (or continue) one run; returns the summary that the train stage writes to
    ``train_summary.json`` (with what only the stage knows: misalignment, MLflow run).

    ``procs``: this process's place in a multi-process job (``distributed.process_group``); the
    ranks train on shards of the same global batches, rank 0 evaluates, writes and logs.
    """
    procs = procs if procs is not None else Processes()
    device = training_device(procs, run_cfg.train.device)
    with torch_settings(run_cfg, device), procs.failures("training"):
        return _fit(
            dataset, run_cfg, Path(run_dir), device, resume, max_epochs, logger, progress, procs
        )


@dataclass
class _Trainer:
    """What every epoch of one run steps: the model, its loss, the optimiser and the generators."""

    model: Any
    objective: Any  # the DDP-wrapped ShardedObjective of a multi-process run; None for one process
    optimizer: Any
    generators: dict[str, torch.Generator]  # "data": batch order, "loss": loss negatives
    params: list[torch.nn.Parameter]  # the trainable ones (gradient clipping)
    use_bf16: bool
    device: torch.device


def _fit(
    dataset: Any,
    run_cfg: RunConfig,
    run_dir: Path,
    device: torch.device,
    resume: bool,
    max_epochs: int | None,
    logger: EpochLogger | None,
    progress: bool | None,
    procs: Processes,
) -> dict[str, Any]:
    last_path = run_dir / "checkpoints" / "last.pt"
    seed_everything(procs.rank_seed(run_cfg.seed))
    cfg_sha = config_hash(run_cfg)
    metadata = dict(dataset.metadata)
    train_split = dataset.split("train")
    val_split = dataset.split("val")
    check_same_job(procs, run_cfg, train_split.n)
    trainer = _build_trainer(metadata, run_cfg, train_split, device, procs)
    state = LoopState()

    if resume and last_path.is_file():
        state = _resume(
            last_path, cfg_sha, trainer.model, trainer.optimizer, trainer.generators, procs
        )
    if procs.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_resolved_config(run_dir, run_cfg)
        _rewrite_history(run_dir / "history.jsonl", state.history)

    n_epochs = run_cfg.train.epochs if max_epochs is None else min(run_cfg.train.epochs, max_epochs)
    batches = _batches_per_epoch(train_split.n, run_cfg)
    show = procs.is_main and (show_progress(run_cfg.train.progress) if progress is None else progress)
    started = time.perf_counter()

    while state.epoch < n_epochs and not state.stopped_early:
        epoch = state.epoch + 1
        trained = _train_epoch(trainer, train_split, run_cfg, state, epoch, batches, show, procs)
        record = _validate_epoch(
            trainer, val_split, metadata, run_cfg, procs, state, epoch, trained
        )
        improved = _advance(state, record, run_cfg)
        ckpt = _checkpoint(
            trainer.model, trainer.optimizer, state, trainer.generators, run_cfg, cfg_sha,
            metadata, procs,
        )  # fmt: skip
        if procs.is_main:
            _publish_epoch(run_dir, ckpt, state, record, improved, logger)

    summary = _summary(run_cfg, cfg_sha, state, n_epochs, device, time.perf_counter() - started)
    if procs.distributed:
        summary["world_size"] = procs.world_size
    return summary


def _publish_epoch(
    run_dir: Path,
    ckpt: dict[str, Any],
    state: LoopState,
    record: dict[str, Any],
    improved: bool,
    logger: EpochLogger | None,
) -> None:
    """Rank 0's files and reports of a finished epoch: the checkpoints first, then the history
    that matches them, so that a kill at any point leaves a run that ``--resume`` continues."""
    if improved:
        atomic_torch_save(ckpt, run_dir / "checkpoints" / "best.pt")
    atomic_torch_save(ckpt, run_dir / "checkpoints" / "last.pt")
    _rewrite_history(run_dir / "history.jsonl", state.history)
    print(_epoch_line(record, improved), file=sys.stderr, flush=True)
    if logger is not None:
        logger.log_epoch(record)


def _build_trainer(
    metadata: dict, run_cfg: RunConfig, train_split: Any, device: torch.device, procs: Processes
) -> _Trainer:
    """Model, objective, optimiser and generators, created in a fixed order (the seeded global
    RNG draws the initial weights, so the order is part of the run's determinism)."""
    from gated_symile.method.model import ContrastiveModel

    use_bf16 = run_cfg.train.precision == "bf16" or (
        run_cfg.train.precision == "auto" and device.type == "cuda"
    )
    model = ContrastiveModel(metadata, run_cfg).to(device)
    if run_cfg.train.precision == "fp64":
        model.double()
    has_missing = any(not np.all(p) for p in train_split.present.values())
    objective = sharded_objective(model, procs, device, use_bf16, has_missing)
    optimizer = build_optimizer(model, run_cfg)
    data_gen = torch.Generator().manual_seed(run_cfg.seed)
    loss_gen = torch.Generator(device=device).manual_seed(run_cfg.seed + _LOSS_SEED_OFFSET)
    params = [p for p in model.parameters() if p.requires_grad]
    return _Trainer(
        model, objective, optimizer, {"data": data_gen, "loss": loss_gen}, params, use_bf16, device
    )


def _train_epoch(
    trainer: _Trainer,
    train_split: Any,
    run_cfg: RunConfig,
    state: LoopState,
    epoch: int,
    batches: int,
    show: bool,
    procs: Processes,
) -> tuple[float, int, float]:
    """One pass over shuffled mini-batches (this process's rows of each global batch): the mean
    training loss, the samples seen and the wall time; advances ``state.global_step``."""
    model, optimizer, device = trainer.model, trainer.optimizer, trainer.device
    loss_gen = trainer.generators["loss"]
    model.train()
    set_optimizer_mode(optimizer, True)
    t0 = time.perf_counter()
    order = torch.randperm(train_split.n, generator=trainer.generators["data"])
    loss_sum, seen = 0.0, 0
    bar = _progress_bar(batches, epoch, show)
    for b in range(batches):
        idx = order[b * run_cfg.train.batch_size : (b + 1) * run_cfg.train.batch_size]
        if idx.numel() < 2:  # a trailing single sample has no negatives
            continue
        shard = procs.shard(idx.numel())  # this process's rows of the global batch
        batch = train_split.batch(idx[shard.rows].numpy(), device)
        apply_warmup(optimizer, state.global_step, run_cfg.train.warmup_steps)
        if trainer.objective is None:
            embeddings = embed_batch(model, batch, trainer.use_bf16)
            loss = model.loss(embeddings, model.present_masks(batch), loss_gen)
        else:  # this rank's share of the global-batch loss
            loss = trainer.objective(batch, shard, loss_gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if run_cfg.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(trainer.params, run_cfg.train.grad_clip)
        optimizer.step()
        state.global_step += 1
        value = procs.total(loss.detach())
        if not math.isfinite(value):
            raise GatedSymileError(
                f"training diverged: loss {value} at epoch {epoch}, step {state.global_step} "
                f"(lower train.lr or set train.grad_clip)"
            )
        loss_sum += value * idx.numel()
        seen += idx.numel()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", sps=f"{seen / (time.perf_counter() - t0):.0f}")
    if bar is not None:
        bar.close()
    return loss_sum / max(seen, 1), seen, time.perf_counter() - t0


def _validate_epoch(
    trainer: _Trainer,
    val_split: Any,
    metadata: dict,
    run_cfg: RunConfig,
    procs: Processes,
    state: LoopState,
    epoch: int,
    trained: tuple[float, int, float],
) -> dict[str, Any]:
    """The epoch's history record: ``trained`` (mean loss, samples, wall time of
    :func:`_train_epoch`), validation metrics (computed by rank 0, broadcast so that every rank
    takes the same early-stopping decision), learning rate, logit scale, gate strength."""
    model, optimizer = trainer.model, trainer.optimizer
    train_loss, seen, train_s = trained
    model.eval()
    set_optimizer_mode(optimizer, False)
    t1 = time.perf_counter()
    val = procs.broadcast(
        _validate(model, val_split, metadata, run_cfg, trainer.device) if procs.is_main else None
    )
    model.train()
    record = {
        "epoch": epoch,
        "step": state.global_step,
        "train_loss": train_loss,
        **{f"val_{k}": v for k, v in val.items()},
        "lr": optimizer.param_groups[0]["lr"],
        "logit_scale": float(model.logit_scale().detach()),
    }
    alpha = model.gate_strength()
    if alpha is not None:
        record["alpha"] = alpha
    record.update(
        time_s=train_s, eval_s=time.perf_counter() - t1, samples_per_s=seen / max(train_s, 1e-9)
    )
    return record


def _advance(state: LoopState, record: dict[str, Any], run_cfg: RunConfig) -> bool:
    """Append the epoch to ``state``, track the best validation top-1 and the patience counter,
    decide early stopping; True when this epoch is the new best."""
    epoch = record["epoch"]
    state.epoch = epoch
    state.history.append(record)
    if record["val_top1"] > state.best_top1:
        state.best_top1, state.best_epoch, state.patience_counter = record["val_top1"], epoch, 0
        improved = True
    else:
        state.patience_counter += 1
        improved = False
    patience = run_cfg.train.patience
    state.stopped_early = (
        patience > 0 and state.patience_counter >= patience and epoch < run_cfg.train.epochs
    )
    return improved


def strip_timing(record: dict[str, Any]) -> dict[str, Any]:
    """A history record without wall-clock fields (the part that is deterministic)."""
    return {k: v for k, v in record.items() if k not in _TIMING_KEYS}


# ----------------------------------------------------------------------------- helpers


def _batches_per_epoch(n: int, run_cfg: RunConfig) -> int:
    bs = run_cfg.train.batch_size
    batches = n // bs if run_cfg.train.drop_last else math.ceil(n / bs)
    if batches < 1:
        raise ConfigError(
            f"train.batch_size: {bs} exceeds the {n} training samples with drop_last; lower it"
        )
    return batches


def _validate(
    model: Any, val_split: Any, metadata: dict, run_cfg: RunConfig, device: torch.device
) -> dict[str, float]:
    """Validation retrieval metrics (scalars only) for model selection; no bootstrap."""
    from gated_symile.evaluation.retrieval import evaluate_retrieval

    with torch.no_grad():
        result = evaluate_retrieval(
            model,
            val_split,
            metadata,
            seed=run_cfg.evaluate.seed,
            batch_size=run_cfg.evaluate.batch_size,
            device=device,
            bootstrap_n=0,
        )
    return {
        k: float(v)
        for k, v in result.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _resume(
    last_path: Path, cfg_sha: str, model, optimizer, generators, procs: Processes
) -> LoopState:
    """Weights, optimiser, loop state and this rank's RNGs from ``last.pt`` (read by every rank)."""
    ckpt = load_checkpoint(last_path)  # CPU: RNG states must stay CPU tensors
    if ckpt["config_sha256"] != cfg_sha:
        raise ConfigError(
            f"{last_path}: was written with config {ckpt['config_sha256'][:12]}, not "
            f"{cfg_sha[:12]}; use a new --out folder or drop --resume"
        )
    written_by = ckpt.get("world_size", 1)
    if written_by != procs.world_size:
        raise ConfigError(
            f"train.devices: {last_path} was written by {written_by} processes, this run has "
            f"{procs.world_size} (train.devices x train.nodes); resume with the same number"
        )
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    restore_rng(ckpt["rank_rng"][procs.rank] if procs.distributed else ckpt["rng"], generators)
    if procs.is_main:
        print(f"resuming from {last_path} after epoch {ckpt['state']['epoch']}", file=sys.stderr)
    return LoopState(**ckpt["state"])


def _checkpoint(
    model,
    optimizer,
    state: LoopState,
    generators,
    run_cfg: RunConfig,
    cfg_sha: str,
    metadata: dict,
    procs: Processes,
) -> dict[str, Any]:
    """Everything ``--resume`` needs; a multi-process run adds its world size and every rank's RNGs
    (a collective: every rank calls it)."""
    rng = capture_rng(generators)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state": {
            "epoch": state.epoch,
            "global_step": state.global_step,
            "best_top1": state.best_top1,
            "best_epoch": state.best_epoch,
            "patience_counter": state.patience_counter,
            "stopped_early": state.stopped_early,
            "history": list(state.history),
        },
        "rng": rng,
        "run_config": run_cfg.to_dict(),
        "config_sha256": cfg_sha,
        "metadata": metadata,
    }
    if procs.distributed:
        ckpt["world_size"] = procs.world_size
        ckpt["rank_rng"] = procs.gather(rng)
    return ckpt


def _write_resolved_config(run_dir: Path, run_cfg: RunConfig) -> None:
    import yaml

    text = yaml.safe_dump(run_cfg.to_dict(), sort_keys=True)
    write_text(run_dir / "resolved_config.yaml", text)


def _rewrite_history(path: Path, history: list[dict[str, Any]]) -> None:
    """history.jsonl = exactly the checkpointed epochs, replaced whole after every epoch (a kill
    never leaves half a line; a resumed run drops the lines of an epoch lost in the kill)."""
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in history))


def show_progress(mode: str) -> bool:
    """auto: a bar only on a TTY (Snakemake logs stay clean); always / never force it."""
    return mode == "always" or (mode == "auto" and sys.stderr.isatty())


def _progress_bar(total: int, epoch: int, show: bool):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, desc=f"epoch {epoch}", file=sys.stderr, leave=False, dynamic_ncols=True
    )


def _epoch_line(record: dict[str, Any], improved: bool) -> str:
    parts = [
        f"epoch {record['epoch']}",
        f"loss {record['train_loss']:.4f}",
        f"val_top1 {record['val_top1']:.4f}",
    ]
    if "alpha" in record:
        parts.append(f"alpha {record['alpha']:.3f}")
    parts.append(f"{record['samples_per_s']:.0f} samples/s")
    return " | ".join(parts) + (" *" if improved else "")


def _summary(
    run_cfg: RunConfig,
    cfg_sha: str,
    state: LoopState,
    n_epochs: int,
    device: torch.device,
    wall_s: float,
) -> dict[str, Any]:
    best = next((r for r in state.history if r["epoch"] == state.best_epoch), {})
    return {
        "dataset": run_cfg.dataset,
        "method": run_cfg.method,
        "objective": run_cfg.objective,
        "seed": run_cfg.seed,
        "config_sha256": cfg_sha,
        "epochs_completed": state.epoch,
        "epochs_planned": n_epochs,
        "stopped_early": state.stopped_early,
        "global_step": state.global_step,
        "best_epoch": state.best_epoch,
        "best_val_top1": state.best_top1 if state.history else None,
        "best_val": {k: v for k, v in best.items() if k.startswith("val_")},
        "final_train_loss": state.history[-1]["train_loss"] if state.history else None,
        "device": device.type,
        "wall_s_this_invocation": wall_s,
    }
