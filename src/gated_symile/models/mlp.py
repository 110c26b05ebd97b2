"""Multilayer perceptron trunks for vector inputs (docs/method.md §13).

One class serves the three MLP encoders of the references; only the block recipe differs:

* labs [ref-S]: ``Linear -> GELU`` blocks, hidden (256, 1024), Xavier-uniform init;
* synthetic [ref-G]: ``Linear -> ReLU`` blocks, hidden (D, D), Kaiming-normal (fan_out) init;
* tabular [ref-G]: ``Linear -> GELU -> LayerNorm -> Dropout`` blocks, Kaiming-normal (fan_out) init.

The trunk returns the last hidden activation (or the input itself when there are no hidden layers,
which makes the encoder a single Linear, as in the binary XOR experiment); the final
``Linear(-> d)`` head is added by ``encoders.build_encoder``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Activation = Literal["gelu", "relu"]
InitScheme = Literal["xavier_uniform", "kaiming_fan_out"]


class MLP(nn.Module):
    """Stack of ``Linear -> activation [-> LayerNorm] [-> Dropout]`` blocks."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        activation: Activation = "relu",
        layernorm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if in_features < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"widths must be positive: in_features={in_features}, hidden={hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        act_cls = {"gelu": nn.GELU, "relu": nn.ReLU}[activation]
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), act_cls()]
            if layernorm:
                layers.append(nn.LayerNorm(h))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.layers = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def init_linear(module: nn.Module, scheme: InitScheme) -> None:
    """Initialise every Linear in ``module`` with ``scheme`` and zero biases; LayerNorm to 1 / 0."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            if scheme == "xavier_uniform":
                nn.init.xavier_uniform_(sub.weight)
            else:
                nn.init.kaiming_normal_(sub.weight, mode="fan_out", nonlinearity="relu")
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
