"""The torch device and process-wide torch settings of a run, shared by training and evaluation.

Why one module: the train and evaluate stages must pick the same device for the same request and
run under the same thread count, denormal flushing and determinism flags (docs/method.md §16),
else an evaluation can differ from the validation done during training.
"""

from __future__ import annotations

import contextlib

import torch

from gated_symile.config import RunConfig
from gated_symile.errors import ConfigError


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
