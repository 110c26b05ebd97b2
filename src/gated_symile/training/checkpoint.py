"""Checkpoints: atomic writes, complete RNG state, and loading a trained model back.

A checkpoint holds everything needed to continue a killed run bit-for-bit on CPU: model and
optimiser state, epoch and global step, early-stopping state, the per-epoch history and every RNG
(python, numpy, torch CPU/CUDA, the data-order and loss-negative generators). All of it is stored
as tensors and plain Python values so that ``torch.load(weights_only=True)`` can read it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gated_symile.config import RunConfig
from gated_symile.errors import GatedSymileError
from gated_symile.intermediates import error_reason, require_file
from gated_symile.outputs import atomic_path

CHECKPOINT_FORMAT = "gated-symile-checkpoint/1"
_CHECKPOINT_KEYS = ("model", "optimizer", "state", "rng", "run_config", "config_sha256", "metadata")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`gated_symile.outputs.atomic_path`: never half a checkpoint."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            torch.save(obj, fh)
    except RuntimeError as exc:  # torch's zip writer reports a failed write (a full disk) this way
        raise GatedSymileError(f"{path}: cannot write ({error_reason(exc)})") from None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by this module (safe loader: tensors and plain values only)."""
    path = Path(path)
    if not path.exists():
        raise GatedSymileError(f"{path}: checkpoint not found")
    require_file(path, "checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: say which one
        raise GatedSymileError(f"{path}: not a readable checkpoint ({error_reason(exc)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise GatedSymileError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    missing = [key for key in _CHECKPOINT_KEYS if key not in ckpt]
    if missing:
        raise GatedSymileError(f"{path}: checkpoint lacks {missing} (written by another version?)")
    state = ckpt["state"]
    if not isinstance(state, dict) or not all(isinstance(state.get(k), int) for k in ("epoch", "global_step")):
        raise GatedSymileError(f"{path}: checkpoint state lacks integer epoch and global_step")
    return ckpt


def capture_rng(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every RNG state as tensors / lists (python's tuple state and numpy's legacy state included)."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [
            np_name,
            torch.from_numpy(np_keys.astype(np.int64)),
            int(np_pos),
            int(np_has_gauss),
            float(np_gauss),
        ],
        "torch": torch.get_rng_state(),
        "generators": {name: g.get_state() for name, g in generators.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Inverse of ``capture_rng``."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state(
        (np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss)
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        g.set_state(state["generators"][name].to(torch.uint8).cpu())


def load_model(
    run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu"
) -> tuple[Any, RunConfig, dict[str, Any]]:
    """(ContrastiveModel in eval mode on ``device``, RunConfig, tensor metadata) of a training run.

    ``which`` is ``best`` (highest validation top-1, the one to test) or ``last``.
    """
    if which not in ("best", "last"):
        raise GatedSymileError(f"which must be 'best' or 'last', got {which!r}")
    path = Path(run_dir) / "checkpoints" / f"{which}.pt"
    return model_from_checkpoint(load_checkpoint(path), device, source=path)


def model_from_checkpoint(
    ckpt: dict[str, Any], device: str | torch.device = "cpu", source: str | Path = "checkpoint"
) -> tuple[Any, RunConfig, dict[str, Any]]:
    """:func:`load_model` for a checkpoint already read (callers that also need its state);
    ``source`` names the file in errors."""
    from gated_symile.errors import ConfigError
    from gated_symile.method.model import ContrastiveModel

    try:
        run_cfg = RunConfig.from_dict(ckpt["run_config"])
    except ConfigError as exc:
        raise GatedSymileError(f"{source}: run config inside the checkpoint is invalid ({exc})") from None
    metadata = ckpt["metadata"]
    try:
        model = ContrastiveModel(metadata, run_cfg)
        model.load_state_dict(ckpt["model"])
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise GatedSymileError(f"{source}: model weights do not fit its config ({error_reason(exc)})") from None
    model.to(device).eval()
    return model, run_cfg, metadata
