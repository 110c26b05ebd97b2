"""ECG encoders over the (1, 5000, 12) tensor (time x lead) of the tensor format.

Two readings of the same input:

* ``ecg_resnet18_2d`` [ref-S]: the record is a one-channel image, ResNet-18 with
  conv1 = Conv2d(1, width, k=7, s=2, p=3, bias=False). Its 7x7 kernels also mix neighbouring leads,
  an arbitrary adjacency given by the lead order; kept because it is what the reference trained.
* ``EcgResNet1d`` [proj]: the 12 leads are channels of a 1-D ResNet-18 over time, so no lead order
  is assumed and a CPU step takes about half the time (width 16, batch 32: 1.6 s vs 2.9 s here).
"""

from __future__ import annotations

import torch
from torch import nn

from gated_symile.method.encoders.resnet import ResNet, resnet18


def ecg_resnet18_2d(width: int = 64, blocks: tuple[int, ...] | None = None) -> ResNet:
    """ResNet-18 with a one-channel 2-D stem; input (batch, 1, time, leads)."""
    return resnet18(in_channels=1, width=width, dims=2, blocks=blocks)


class EcgResNet1d(nn.Module):
    """ResNet-18 of Conv1d layers; input (batch, 1, time, leads) is read as (batch, leads, time)."""

    def __init__(
        self, leads: int = 12, width: int = 64, blocks: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        self.leads = leads
        self.resnet = resnet18(in_channels=leads, width=width, dims=1, blocks=blocks)
        self.out_features = self.resnet.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[3] != self.leads:
            raise ValueError(f"expected (batch, 1, time, {self.leads}), got {tuple(x.shape)}")
        return self.resnet(x[:, 0].transpose(1, 2))
