"""Residual networks written in the project (docs/method.md §13).

torchvision is not used (it does not import in this environment, see ecosystem.md), so the two
standard architectures are written here: ResNet-18 (BasicBlock, [2, 2, 2, 2]) and ResNet-50
(Bottleneck, [3, 4, 6, 3], stride in the 3x3 convolution as in torchvision >= 0.2 / "ResNet v1.5").
One implementation serves 2-D images and 1-D signals (``dims``), so the ECG 1-D variant is the same
network with Conv1d layers rather than a second copy.

The networks end at the global average pool and return features of width ``out_features``; the
projection head (Linear to the embedding dim, optional LayerNorm) lives in ``encoders.py``.
``width`` scales every stage (64 = the standard network; 16 keeps a CPU run small).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

_LAYERS: dict[int, tuple[type[nn.Module], type[nn.Module], type[nn.Module], type[nn.Module]]] = {
    1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d),
    2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
}

STANDARD_BLOCKS: dict[str, tuple[int, ...]] = {"resnet18": (2, 2, 2, 2), "resnet50": (3, 4, 6, 3)}


def _conv(dims: int, c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Module:
    conv_cls = _LAYERS[dims][0]
    return conv_cls(c_in, c_out, kernel_size=kernel, stride=stride, padding=kernel // 2, bias=False)


def _norm(dims: int, channels: int) -> nn.Module:
    return _LAYERS[dims][1](channels)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, dims: int, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv(dims, c_in, planes, 3, stride)
        self.bn1 = _norm(dims, planes)
        self.conv2 = _conv(dims, planes, planes, 3)
        self.bn2 = _norm(dims, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(dims, c_in, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand by 4, with a projection shortcut."""

    expansion = 4

    def __init__(self, dims: int, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv(dims, c_in, planes, 1)
        self.bn1 = _norm(dims, planes)
        self.conv2 = _conv(dims, planes, planes, 3, stride)
        self.bn2 = _norm(dims, planes)
        self.conv3 = _conv(dims, planes, planes * self.expansion, 1)
        self.bn3 = _norm(dims, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(dims, c_in, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


def _shortcut(dims: int, c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(_conv(dims, c_in, c_out, 1, stride), _norm(dims, c_out))


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool), four stages, global average pool.

    Returns pooled features (batch, ``out_features``); no classifier.
    """

    def __init__(
        self,
        block: Literal["basic", "bottleneck"],
        blocks: tuple[int, ...],
        in_channels: int = 3,
        width: int = 64,
        dims: Literal[1, 2] = 2,
    ) -> None:
        super().__init__()
        if dims not in _LAYERS:
            raise ValueError(f"dims must be 1 or 2, got {dims}")
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"blocks must be four positive counts, got {blocks}")
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]
        _, _, pool_cls, avgpool_cls = _LAYERS[dims]
        self.conv1 = _conv(dims, in_channels, width, 7, 2)
        self.bn1 = _norm(dims, width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = pool_cls(kernel_size=3, stride=2, padding=1)
        stages = []
        c_in = width
        for i, count in enumerate(blocks):
            planes = width * 2**i
            layer = []
            for j in range(count):
                layer.append(block_cls(dims, c_in, planes, 2 if (i > 0 and j == 0) else 1))
                c_in = planes * block_cls.expansion
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = avgpool_cls(1)
        self.out_features = c_in
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's ResNet init: Kaiming-normal (fan_out) convolutions, BN weight 1 bias 0."""
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def resnet18(
    in_channels: int = 3,
    width: int = 64,
    dims: Literal[1, 2] = 2,
    blocks: tuple[int, ...] | None = None,
) -> ResNet:
    """ResNet-18 (BasicBlock); ``blocks`` overrides the per-stage depth for small CPU runs."""
    return ResNet("basic", blocks or STANDARD_BLOCKS["resnet18"], in_channels, width, dims)


def resnet50(
    in_channels: int = 3,
    width: int = 64,
    dims: Literal[1, 2] = 2,
    blocks: tuple[int, ...] | None = None,
) -> ResNet:
    """ResNet-50 (Bottleneck, stride in the 3x3 conv); ``blocks`` overrides the per-stage depth."""
    return ResNet("bottleneck", blocks or STANDARD_BLOCKS["resnet50"], in_channels, width, dims)
