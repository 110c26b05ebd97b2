"""Training: optimiser groups (``optim``), checkpoints and model loading (``checkpoint``), the loop (``loop``)."""

from gated_symile.training.checkpoint import load_model

__all__ = ["load_model"]
