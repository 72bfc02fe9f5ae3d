"""Harmonious Attention (paper Fig. 2): soft spatial, soft channel and hard regional attention.

Everything here is written to export cleanly: no ``F.affine_grid`` (the crop grid is built by
broadcasting a fixed-scale, translation-only theta), resizes to sizes fixed at construction,
and constant grids kept as buffers so they follow the module's device and dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SoftSpatialAttention(nn.Module):
    """Channel mean -> 3x3 stride-2 conv -> bilinear resize back to ``size`` -> 1x1 scaling conv."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.conv = nn.Conv2d(1, 1, 3, stride=2, padding=1)
        self.scale = nn.Conv2d(1, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = self.conv(x.mean(dim=1, keepdim=True))
        s = F.interpolate(s, size=self.size, mode="bilinear", align_corners=False)
        return self.scale(s)


class SoftChannelAttention(nn.Module):
    """Squeeze-excitation on the pooled vector: 1x1 d->d/r, ReLU, 1x1 d/r->d, ReLU."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.ReLU(inplace=True),
        )

    def forward(self, pooled: Tensor) -> Tensor:
        return self.body(pooled)


def region_centres(num_regions: int) -> list[float]:
    """Vertical centres (normalised to [-1, 1]) of T equal horizontal stripes: the initial hard attention."""
    return [-1.0 + (2 * t + 1) / num_regions for t in range(num_regions)]


class HardRegionalAttention(nn.Module):
    """Pooled vector -> FC d->2T -> tanh = (tx, ty) per region; scale fixed (full width, 1/T height).

    Initialised (zero weights, bias = atanh of the stripe centres) so training starts from T equal
    horizontal stripes. With ``learnable=False`` the regions stay those stripes (the HRA-off ablation).
    ``grad_scale`` scales the gradient reaching the FC in training (the forward value is unchanged):
    GridSample's gradient w.r.t. the grid is large, and at the paper's lr 3e-2 the tanh saturates
    within a few dozen steps, parking every region in an image corner (docs/architecture.md).
    """

    fixed_theta: Tensor

    def __init__(self, channels: int, num_regions: int, learnable: bool = True, grad_scale: float = 1.0) -> None:
        super().__init__()
        self.num_regions = num_regions
        self.grad_scale = grad_scale
        init = torch.tensor([[0.0, math.atanh(c)] for c in region_centres(num_regions)]).flatten()
        self.fc: nn.Linear | None = None
        if learnable:
            self.fc = nn.Linear(channels, 2 * num_regions)
            nn.init.zeros_(self.fc.weight)
            with torch.no_grad():
                self.fc.bias.copy_(init)
        else:
            self.register_buffer("fixed_theta", torch.tanh(init).view(1, num_regions, 2), persistent=False)

    def forward(self, pooled: Tensor) -> Tensor:
        """Return theta of shape (N, T, 2) holding (tx, ty) per region."""
        if self.fc is None:
            return self.fixed_theta.expand(pooled.shape[0], -1, -1)
        z = self.fc(pooled.flatten(1))
        if self.training and self.grad_scale != 1.0:
            z = z * self.grad_scale + z.detach() * (1.0 - self.grad_scale)  # same value, gradient scaled
        return torch.tanh(z).view(-1, self.num_regions, 2)


class RegionCropper(nn.Module):
    """Samples the T regions given by theta from a feature map with one GridSample call.

    The grid is (N, T*h, w, 2); the output is folded into the batch as (N*T, C, h, w), stream-major
    within each sample, so the local branch runs the T streams as one batch with shared weights.
    """

    base_x: Tensor
    base_y: Tensor

    def __init__(self, num_regions: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.num_regions = num_regions
        self.size = (int(size[0]), int(size[1]))
        h, w = self.size
        # pixel-centre coordinates of the output grid (align_corners=False convention)
        self.register_buffer("base_y", (torch.arange(h, dtype=torch.float32) * 2 + 1) / h - 1, persistent=False)
        self.register_buffer("base_x", (torch.arange(w, dtype=torch.float32) * 2 + 1) / w - 1, persistent=False)

    def grid(self, theta: Tensor) -> Tensor:
        """Sampling grid (N, T*h, w, 2) for translation-only theta (N, T, 2), x scale 1, y scale 1/T."""
        h, w = self.size
        t = self.num_regions
        tx = theta[..., 0].unsqueeze(-1).unsqueeze(-1)  # N,T,1,1
        ty = theta[..., 1].unsqueeze(-1).unsqueeze(-1)
        gx = (self.base_x.to(theta.dtype).view(1, 1, 1, w) + tx).expand(-1, -1, h, w)
        gy = (self.base_y.to(theta.dtype).view(1, 1, h, 1) * (1.0 / t) + ty).expand(-1, -1, h, w)
        return torch.stack((gx, gy), dim=-1).reshape(-1, t * h, w, 2)

    def forward(self, feat: Tensor, theta: Tensor) -> Tensor:
        h, w = self.size
        c = feat.shape[1]
        out = F.grid_sample(feat, self.grid(theta).to(feat.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.reshape(-1, c, self.num_regions, h, w).transpose(1, 2).reshape(-1, c, h, w)


class HarmoniousAttention(nn.Module):
    """One HA module: soft (spatial x channel) attention applied to the level output, plus hard regions.

    The soft map is sigmoid(ReLU(BN(conv1x1(spatial * channel)))), which lies in [0.5, 1]: attention
    can halve a feature at most, never erase it (paper §3.1). Returns the attended features, the
    region theta, and the soft spatial map (for visualisation; None when that switch is off).
    """

    def __init__(
        self,
        channels: int,
        size: tuple[int, int],
        num_regions: int,
        reduction: int = 16,
        soft_spatial: bool = True,
        soft_channel: bool = True,
        hard_regional: bool = True,
        theta_grad_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.spatial = SoftSpatialAttention(size) if soft_spatial else None
        self.channel = SoftChannelAttention(channels, reduction) if soft_channel else None
        self.fuse: nn.Sequential | None = None
        if soft_spatial or soft_channel:
            self.fuse = nn.Sequential(
                nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
            )
        self.hard = HardRegionalAttention(channels, num_regions, learnable=hard_regional, grad_scale=theta_grad_scale)

    def forward(self, x: Tensor, detach_hard_input: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        pooled = x.mean(dim=(2, 3), keepdim=True)
        spatial = self.spatial(x) if self.spatial is not None else None
        if self.fuse is not None:
            if self.channel is None:
                assert spatial is not None
                soft = spatial.expand(-1, self.channels, -1, -1)
            else:
                soft = self.channel(pooled)
                if spatial is not None:
                    soft = spatial * soft
            x = x * torch.sigmoid(self.fuse(soft))
        theta = self.hard(pooled.detach() if detach_hard_input else pooled)
        return x, theta, spatial
