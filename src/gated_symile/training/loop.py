"""The epoch loop: shuffled mini-batches, warm-up, clipping, validation top-1, early stopping.

``fit`` trains one ``ContrastiveModel`` on a tensor dataset and writes into ``run_dir``:
``checkpoints/last.pt`` (every epoch, for ``--resume``), ``checkpoints/best.pt`` (highest
validation top-1), ``resolved_config.yaml`` and ``history.jsonl``. Randomness comes from the run
seed only (python/numpy/torch seeded once, one generator for data order, one for loss negatives)
and every RNG is checkpointed, so on CPU a resumed run ends with exactly the weights and metrics of
an uninterrupted one.
"""

from __future__ import annotations

import contextlib
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
from gated_symile.outputs import write_json, write_text
from gated_symile.training.checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    capture_rng,
    load_checkpoint,
    restore_rng,
)
from gated_symile.training.optim import apply_warmup, build_optimizer, set_optimizer_mode

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


def select_device(requested: str) -> torch.device:
    """``auto``: CUDA when available, else CPU; asking for CUDA without one is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' requested but no CUDA device is available")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def configure_torch(run_cfg: RunConfig, device: torch.device) -> None:
    """Threads, denormal flushing (docs/method.md §16: CLIP ran 5x slower without it), determinism."""
    if run_cfg.train.num_threads > 0:
        torch.set_num_threads(run_cfg.train.num_threads)
    torch.set_flush_denormal(True)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)


@contextlib.contextmanager
def torch_settings(run_cfg: RunConfig, device: torch.device):
    """``configure_torch`` for the duration of a block, then the caller's threads and determinism
    flags again (in-process callers such as tests must not inherit a training run's settings)."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    configure_torch(run_cfg, device)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        # IEEE default again: flushing leaks into numpy/hypothesis code run later in-process.
        torch.set_flush_denormal(False)


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
) -> dict[str, Any]:
    """Train (or continue) one run; returns the summary also written to ``train_summary.json``."""
    device = select_device(run_cfg.train.device)
    with torch_settings(run_cfg, device):
        return _fit(dataset, run_cfg, Path(run_dir), device, resume, max_epochs, logger, progress)


def _fit(
    dataset: Any,
    run_cfg: RunConfig,
    run_dir: Path,
    device: torch.device,
    resume: bool,
    max_epochs: int | None,
    logger: EpochLogger | None,
    progress: bool | None,
) -> dict[str, Any]:
    from gated_symile.method.model import ContrastiveModel

    ckpt_dir = run_dir / "checkpoints"
    last_path = ckpt_dir / "last.pt"
    seed_everything(run_cfg.seed)
    cfg_sha = config_hash(run_cfg)
    metadata = dict(dataset.metadata)

    model = ContrastiveModel(metadata, run_cfg).to(device)
    optimizer = build_optimizer(model, run_cfg)
    data_gen = torch.Generator().manual_seed(run_cfg.seed)
    loss_gen = torch.Generator(device=device).manual_seed(run_cfg.seed + _LOSS_SEED_OFFSET)
    generators = {"data": data_gen, "loss": loss_gen}
    state = LoopState()

    if resume and last_path.is_file():
        ckpt = load_checkpoint(last_path)  # CPU: RNG states must stay CPU tensors
        if ckpt["config_sha256"] != cfg_sha:
            raise ConfigError(
                f"{last_path}: was written with config {ckpt['config_sha256'][:12]}, not "
                f"{cfg_sha[:12]}; use a new --out folder or drop --resume"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = LoopState(**ckpt["state"])
        restore_rng(ckpt["rng"], generators)
        print(f"resuming from {last_path} after epoch {state.epoch}", file=sys.stderr)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_resolved_config(run_dir, run_cfg)
    _rewrite_history(run_dir / "history.jsonl", state.history)

    n_epochs = run_cfg.train.epochs if max_epochs is None else min(run_cfg.train.epochs, max_epochs)
    train_split = dataset.split("train")
    val_split = dataset.split("val")
    batches = _batches_per_epoch(train_split.n, run_cfg)
    show = show_progress(run_cfg.train.progress) if progress is None else progress
    use_bf16 = run_cfg.train.precision == "bf16" or (
        run_cfg.train.precision == "auto" and device.type == "cuda"
    )
    params = [p for p in model.parameters() if p.requires_grad]
    started = time.perf_counter()

    while state.epoch < n_epochs and not state.stopped_early:
        epoch = state.epoch + 1
        model.train()
        set_optimizer_mode(optimizer, True)
        t0 = time.perf_counter()
        order = torch.randperm(train_split.n, generator=data_gen)
        loss_sum, seen = 0.0, 0
        bar = _progress_bar(batches, epoch, show)
        for b in range(batches):
            idx = order[b * run_cfg.train.batch_size : (b + 1) * run_cfg.train.batch_size]
            if idx.numel() < 2:  # a trailing single sample has no negatives
                continue
            batch = train_split.batch(idx.numpy(), device)
            apply_warmup(optimizer, state.global_step, run_cfg.train.warmup_steps)
            autocast = (
                torch.autocast(device.type, dtype=torch.bfloat16)
                if use_bf16
                else contextlib.nullcontext()
            )
            with autocast:
                embeddings = model.embed(batch)
            loss = model.loss(embeddings, model.present_masks(batch), loss_gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if run_cfg.train.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, run_cfg.train.grad_clip)
            optimizer.step()
            state.global_step += 1
            value = float(loss.detach())
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
        train_s = time.perf_counter() - t0

        model.eval()
        set_optimizer_mode(optimizer, False)
        t1 = time.perf_counter()
        val = _validate(model, val_split, metadata, run_cfg, device)
        model.train()
        record = {
            "epoch": epoch,
            "step": state.global_step,
            "train_loss": loss_sum / max(seen, 1),
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

        state.epoch = epoch
        state.history.append(record)
        if val["top1"] > state.best_top1:
            state.best_top1, state.best_epoch, state.patience_counter = val["top1"], epoch, 0
            improved = True
        else:
            state.patience_counter += 1
            improved = False
        patience = run_cfg.train.patience
        state.stopped_early = (
            patience > 0 and state.patience_counter >= patience and epoch < run_cfg.train.epochs
        )
        ckpt = _checkpoint(model, optimizer, state, generators, run_cfg, cfg_sha, metadata)
        if improved:
            atomic_torch_save(ckpt, ckpt_dir / "best.pt")
        atomic_torch_save(ckpt, last_path)
        _rewrite_history(run_dir / "history.jsonl", state.history)
        print(_epoch_line(record, improved), file=sys.stderr, flush=True)
        if logger is not None:
            logger.log_epoch(record)

    summary = _summary(run_cfg, cfg_sha, state, n_epochs, device, time.perf_counter() - started)
    write_json(run_dir / "train_summary.json", summary)
    return summary


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


def _checkpoint(
    model, optimizer, state: LoopState, generators, run_cfg: RunConfig, cfg_sha: str, metadata: dict
) -> dict[str, Any]:
    return {
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
        "rng": capture_rng(generators),
        "run_config": run_cfg.to_dict(),
        "config_sha256": cfg_sha,
        "metadata": metadata,
    }


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
