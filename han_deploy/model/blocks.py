"""Building blocks of the global and local branches (paper Table 12: depthwise, inception, residual).

A *level* is what sits between two Harmonious Attention modules. The global branch has one level
per attention module; the local branch has one (lighter) level per module, shared by the T streams.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU, 'same' padding for odd kernels."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class DepthwiseUnit(nn.Sequential):
    """1x1 expansion then depthwise 3x3 carrying the stride (docs/architecture.md: this order meets the budgets)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__(conv_bn_relu(c_in, c_out, 1), conv_bn_relu(c_out, c_out, 3, stride, groups=c_out))


class InceptionA(nn.Module):
    """Stride-1 inception unit of HA-CNN: four streams of ``c_out/4`` channels, concatenated."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_out // 4
        self.streams = nn.ModuleList(
            [
                conv_bn_relu(c_in, mid, 1),
                nn.Sequential(conv_bn_relu(c_in, mid, 1), conv_bn_relu(mid, mid, 3)),
                nn.Sequential(conv_bn_relu(c_in, mid, 1), conv_bn_relu(mid, mid, 3), conv_bn_relu(mid, mid, 3)),
                nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), conv_bn_relu(c_in, mid, 1)),
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([s(x) for s in self.streams], dim=1)


class InceptionB(nn.Module):
    """Stride-2 inception unit of HA-CNN: two conv streams of ``c_out/4`` and a pooled stream of ``c_out/2``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_out // 4
        self.streams = nn.ModuleList(
            [
                nn.Sequential(conv_bn_relu(c_in, mid, 1), conv_bn_relu(mid, mid, 3, stride=2)),
                nn.Sequential(conv_bn_relu(c_in, mid, 1), conv_bn_relu(mid, mid, 3), conv_bn_relu(mid, mid, 3, stride=2)),
                nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1), conv_bn_relu(c_in, c_out - 2 * mid, 1)),
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([s(x) for s in self.streams], dim=1)


class Bottleneck(nn.Module):
    """Residual bottleneck (1x1 -> 3x3 -> 1x1, mid width ``c_out/2``), projection shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        mid = c_out // 2
        self.body = nn.Sequential(
            conv_bn_relu(c_in, mid, 1),
            conv_bn_relu(mid, mid, 3, stride),
            nn.Conv2d(mid, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def global_level(block: str, c_in: int, c_out: int, strides: tuple[int, int, int]) -> nn.Sequential:
    """One level of the global branch: 3 depthwise units, inception A+B, or 2 bottlenecks."""
    if block == "depthwise":
        chans = [c_in, c_out, c_out]
        return nn.Sequential(*[DepthwiseUnit(c, c_out, s) for c, s in zip(chans, strides, strict=True)])
    if block == "inception":
        return nn.Sequential(InceptionA(c_in, c_out), InceptionB(c_out, c_out))
    if block == "residual":
        return nn.Sequential(Bottleneck(c_in, c_out, 1), Bottleneck(c_out, c_out, 2))
    raise ValueError(f"unknown block {block!r}")


def local_level(block: str, c_in: int, c_out: int) -> nn.Module:
    """One level of the local branch: a single stride-2 unit, weights shared by the T region streams."""
    if block == "depthwise":
        return DepthwiseUnit(c_in, c_out, 2)
    if block == "inception":
        return InceptionB(c_in, c_out)
    if block == "residual":
        return Bottleneck(c_in, c_out, 2)
    raise ValueError(f"unknown block {block!r}")
