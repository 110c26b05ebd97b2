"""Build one modality's encoder from its tensor-format input spec (docs/method.md §13).

An encoder is a trunk (ResNet, ECG ResNet or MLP) followed by the projection head
``Linear(features, d)`` and, for ``embedding_norm: layernorm``, ``LayerNorm(d)``. The trunk is
chosen from ``EncoderConfig.arch``; ``"auto"`` picks it from the input spec of ``metadata.json`` so
that a dataset folder alone determines a working model:

===================================  ===================  ====================================
input spec                           modality             auto arch
===================================  ===================  ====================================
``image_uint8`` (H, W)               any                  ``resnet18`` on 3 channels
``float32`` (1, T, L)                any                  ``ecg_resnet18_2d``
``float32`` (F,)                     ``labs``             ``mlp_gelu``  (hidden (256, 1024))
``float32`` (F,)                     anything else        ``mlp_relu``  (hidden (d, d))
===================================  ===================  ====================================

``hidden=None`` means "the arch's default" (the table above; ``tabular_mlp``: (1024, 512, 256));
``hidden=()`` means no hidden layer, i.e. the encoder is one ``Linear(F, d)`` (binary XOR, §16).

Initialisation [ref-G]: ResNet convolutions Kaiming-normal (fan_out), BatchNorm 1/0; the head is
Kaiming-normal (fan_out) with zero bias, except the labs MLP (``mlp_gelu``) whose every Linear,
head included, is Xavier-uniform with zero bias.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from gated_symile.errors import ConfigError
from gated_symile.method.encoders.ecg import EcgResNet1d, TimePool, ecg_resnet18_2d
from gated_symile.method.encoders.mlp import MLP, InitScheme, init_linear
from gated_symile.method.encoders.resnet import resnet18, resnet50

Arch = Literal[
    "auto",
    "resnet18",
    "resnet50",
    "ecg_resnet18_2d",
    "ecg_resnet18_1d",
    "mlp_gelu",
    "mlp_relu",
    "tabular_mlp",
]
_DEFAULT_HIDDEN = {"mlp_gelu": (256, 1024), "tabular_mlp": (1024, 512, 256)}  # mlp_relu: (d, d)


@dataclass(frozen=True)
class EncoderConfig:
    """Per-modality encoder settings (config key ``model.encoders.<modality>``).

    ``width``: base channel width of ResNets (64 = standard). ``blocks``: per-stage block counts
    overriding ResNet-18/50 depth (four ints). ``hidden``: MLP hidden widths (None = arch default,
    () = none). ``dropout``: after every MLP block. ``pool``: ECG encoders average consecutive
    samples in groups of this size before the trunk (10: 500 Hz -> 50 Hz, a tenth of the compute;
    1 = the reference network on the full signal).

    Types, choices and limits are checked where a run config is built (``RunConfig.from_dict``:
    the field types, then ``$defs/encoder`` of the settings schema), not here: the method reads no
    files, the schema included.
    """

    arch: Arch = "auto"
    width: int = 64
    blocks: tuple[int, ...] | None = None
    hidden: tuple[int, ...] | None = None
    dropout: float = 0.0
    pool: int = 1


class Encoder(nn.Module):
    """Trunk, then ``Linear(trunk.out_features, embed_dim)``, then optional ``LayerNorm``."""

    def __init__(
        self, trunk: nn.Module, embed_dim: int, final_layernorm: bool, init: InitScheme
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(int(trunk.out_features), embed_dim)
        self.norm: nn.Module = nn.LayerNorm(embed_dim) if final_layernorm else nn.Identity()
        init_linear(self.head, init)
        if isinstance(trunk, MLP):
            init_linear(trunk, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.head(self.trunk(x)))


def resolve_arch(modality: str, input_spec: Mapping[str, Any], cfg: EncoderConfig) -> str:
    """The arch ``cfg`` asks for, with ``"auto"`` resolved by the rules in the module docstring."""
    kind, shape = _kind_and_shape(modality, input_spec)
    if cfg.arch != "auto":
        return cfg.arch
    if kind == "image_uint8":
        return "resnet18"
    if len(shape) == 3 and shape[0] == 1:
        return "ecg_resnet18_2d"
    if len(shape) == 1:
        return "mlp_gelu" if modality == "labs" else "mlp_relu"
    raise ConfigError(f"no automatic encoder for {modality!r} with shape {shape}; set its arch")


def build_encoder(
    modality: str,
    input_spec: Mapping[str, Any],
    cfg: EncoderConfig,
    embed_dim: int,
    final_layernorm: bool,
) -> Encoder:
    """Encoder of ``modality``: input as the tensor-format loader delivers it, output (b, d)."""
    if embed_dim < 1:
        raise ConfigError(f"embed_dim must be positive, got {embed_dim}")
    kind, shape = _kind_and_shape(modality, input_spec)
    arch = resolve_arch(modality, input_spec, cfg)

    def need(ok: bool, wanted: str) -> None:
        if not ok:
            raise ConfigError(f"encoder {arch!r} needs {wanted}; {modality!r} is {kind} {shape}")

    trunk: nn.Module
    if arch in ("resnet18", "resnet50"):
        need(kind == "image_uint8" or len(shape) == 3, "an image input (H, W) or (C, H, W)")
        channels = 3 if kind == "image_uint8" else shape[0]
        factory = resnet18 if arch == "resnet18" else resnet50
        trunk = factory(in_channels=channels, width=cfg.width, blocks=cfg.blocks)
    elif arch in ("ecg_resnet18_2d", "ecg_resnet18_1d"):
        need(
            kind == "float32" and len(shape) == 3 and shape[0] == 1,
            "a float32 (1, time, leads) input",
        )
        need(cfg.pool <= shape[1], f"pool <= {shape[1]} samples")
        if arch == "ecg_resnet18_2d":
            trunk = ecg_resnet18_2d(width=cfg.width, blocks=cfg.blocks)
        else:
            trunk = EcgResNet1d(leads=shape[2], width=cfg.width, blocks=cfg.blocks)
        if cfg.pool > 1:
            trunk = TimePool(trunk, cfg.pool)
    else:
        need(kind == "float32" and len(shape) == 1, "a float32 vector input (F,)")
        hidden = (
            cfg.hidden
            if cfg.hidden is not None
            else _DEFAULT_HIDDEN.get(arch, (embed_dim, embed_dim))
        )
        trunk = MLP(
            shape[0],
            hidden,
            activation="relu" if arch == "mlp_relu" else "gelu",
            layernorm=arch == "tabular_mlp",
            dropout=cfg.dropout,
        )
    init: InitScheme = "xavier_uniform" if arch == "mlp_gelu" else "kaiming_fan_out"
    return Encoder(trunk, embed_dim, final_layernorm, init)


def _kind_and_shape(modality: str, input_spec: Mapping[str, Any]) -> tuple[str, list[int]]:
    kind = input_spec.get("kind")
    shape = input_spec.get("shape")
    if kind not in ("image_uint8", "float32"):
        raise ConfigError(f"input {modality!r}: kind {kind!r} is not image_uint8 or float32")
    if (
        not isinstance(shape, (list, tuple))
        or not shape
        or any(not isinstance(s, int) or s < 1 for s in shape)
    ):
        raise ConfigError(f"input {modality!r}: shape {shape!r} is not a list of positive ints")
    if kind == "image_uint8" and len(shape) != 2:
        raise ConfigError(f"input {modality!r}: image_uint8 shape must be [H, W], got {shape}")
    return kind, list(shape)
