"""Optimiser construction: parameter groups, AdamW or schedule-free AdamW, linear warm-up.

Groups follow docs/method.md §6.1 / §14: every parameter whose name starts with ``gate.`` trains at
lr × ``lr_gate_mul`` without weight decay; the logit scale θ joins the decayed group only when
``logit_scale.weight_decay`` is true (both references decay it); everything else is decayed.
Frozen parameters (a non-learnable θ) are left out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gated_symile.config import RunConfig


def parameter_groups(model: nn.Module, run_cfg: RunConfig) -> list[dict[str, Any]]:
    """Named groups ``decay``, ``no_decay``, ``gate`` (empty ones dropped), each with its lr/wd."""
    train = run_cfg.train
    decay, no_decay, gate = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("gate."):
            gate.append(param)
        elif name == "log_logit_scale" and not run_cfg.model.logit_scale.weight_decay:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"name": "decay", "params": decay, "lr": train.lr, "weight_decay": train.weight_decay},
        {"name": "no_decay", "params": no_decay, "lr": train.lr, "weight_decay": 0.0},
        {"name": "gate", "params": gate, "lr": train.lr * train.lr_gate_mul, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, run_cfg: RunConfig) -> torch.optim.Optimizer:
    """AdamW, or ``schedulefree.AdamWScheduleFree`` (which does its own warm-up).

    Every group records its ``base_lr`` so that ``apply_warmup`` can rescale plain AdamW.
    """
    train = run_cfg.train
    groups = parameter_groups(model, run_cfg)
    for g in groups:
        g["base_lr"] = g["lr"]
    if train.optimizer == "schedulefree_adamw":
        import schedulefree

        return schedulefree.AdamWScheduleFree(
            groups, lr=train.lr, betas=train.betas, eps=train.eps, warmup_steps=train.warmup_steps
        )
    return torch.optim.AdamW(groups, lr=train.lr, betas=train.betas, eps=train.eps)


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """Schedule-free optimisers hold two weight sequences and need ``train()``/``eval()`` switches."""
    return hasattr(optimizer, "train") and hasattr(optimizer, "eval") and callable(optimizer.eval)


def set_optimizer_mode(optimizer: torch.optim.Optimizer, training: bool) -> None:
    """Switch a schedule-free optimiser's parameters to the training (y) or evaluation (x) sequence.

    Evaluation, ``best.pt`` and ``last.pt`` all see the x sequence; a no-op for plain AdamW.
    """
    if is_schedule_free(optimizer):
        optimizer.train() if training else optimizer.eval()


def apply_warmup(optimizer: torch.optim.Optimizer, step: int, warmup_steps: int) -> float:
    """Linear warm-up lr = base_lr · min(1, (step + 1) / warmup) for plain AdamW; returns the factor.

    Stateless (a function of the global step), so resuming needs only the step count.
    """
    if is_schedule_free(optimizer):
        return 1.0
    factor = 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * factor
    return factor
