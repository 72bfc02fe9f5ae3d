"""The Harmonious Attention Network (paper §3, Fig. 1): global and local branches joined by HA modules.

Data flow per level l (docs/architecture.md): the global level turns its input into d_l channels, the HA
module modulates that output (soft attention) and predicts T regions (hard attention) that are
cropped from the level's *input*; the local stream at level l runs on that crop, plus its own
previous output (cross-attention interaction, Eq. 8). The T local streams are folded into the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import HANConfig
from .attention import HarmoniousAttention, RegionCropper
from .blocks import conv_bn_relu, global_level, local_level


class HANOutput(NamedTuple):
    """Train-mode output: logits of each branch (None without classifiers) and the 512-D features."""

    global_logits: Tensor | None
    local_logits: Tensor | None
    global_feat: Tensor
    local_feat: Tensor


class AttentionRecord(NamedTuple):
    """What one HA module decided, for visualisation: the soft spatial map and the region theta."""

    spatial: Tensor | None  # (N, 1, H_l, W_l) before the sigmoid fusion
    theta: Tensor  # (N, T, 2): (tx, ty) per region, normalised coordinates


def _stage_sizes(cfg: HANConfig) -> list[tuple[int, int]]:
    """Spatial size of each global level's output, fixed at construction so resizes are explicit."""
    h, w = cfg.preprocess.input_size
    h, w = (h + 1) // 2, (w + 1) // 2  # stem stride 2
    sizes = []
    for _ in range(3):
        h, w = (h + 1) // 2, (w + 1) // 2  # one stride 2 per level, whatever the block
        sizes.append((h, w))
    return sizes


def _head(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(c_in, c_out, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True))


class HAN(nn.Module):
    """HAN feature extractor.

    ``model.train()`` returns :class:`HANOutput`; ``model.eval()`` returns the float32 embedding
    ``concat(L2(global_512), L2(local_512))`` of shape (N, 1024) (or one 512-D half, per ``feature``).
    """

    def __init__(self, cfg: HANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.channels
        t = cfg.num_regions
        sizes = _stage_sizes(cfg)
        self.stem = conv_bn_relu(3, cfg.stem_channels, 3, stride=2)
        in_ch = [cfg.stem_channels, d[0], d[1]]
        self.global_levels = nn.ModuleList(global_level(cfg.block, in_ch[i], d[i], cfg.strides) for i in range(3))
        self.attention = nn.ModuleList(
            HarmoniousAttention(
                d[i], sizes[i], t, cfg.reduction, cfg.soft_spatial, cfg.soft_channel, cfg.hard_regional, cfg.theta_grad_scale
            )
            for i in range(3)
        )
        self.croppers = nn.ModuleList(RegionCropper(t, cfg.region_sizes[i]) for i in range(3))
        self.local_levels = nn.ModuleList(local_level(cfg.block, in_ch[i], d[i]) for i in range(3))
        self.global_head = _head(d[2], cfg.feat_dim)
        self.local_head = _head(t * d[2], cfg.feat_dim)
        self.global_classifier: nn.Linear | None = None
        self.local_classifier: nn.Linear | None = None
        self.reset_classifier(cfg.num_classes)
        self._init_weights()

    def reset_classifier(self, num_classes: int) -> None:
        """Replace both branch classifiers (0 removes them), e.g. to fine-tune on another identity set."""
        self.num_classes = num_classes
        self.global_classifier = nn.Linear(self.cfg.feat_dim, num_classes) if num_classes else None
        self.local_classifier = nn.Linear(self.cfg.feat_dim, num_classes) if num_classes else None

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # fan_in keeps activations at unit scale through depthwise layers (fan_out would shrink them ~sqrt(C)x each)
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _needs(self) -> tuple[bool, bool]:
        """Which branches this forward must compute: both in training, only the used ones in eval."""
        if self.training:
            return True, True
        return self.cfg.feature in ("global", "both"), self.cfg.feature in ("local", "both")

    def forward_features(
        self, x: Tensor, with_attention: bool = False
    ) -> tuple[Tensor | None, Tensor | None, list[AttentionRecord]]:
        """Run both branches; return the 512-D global and local features (pre-normalisation) and attention."""
        need_global, need_local = self._needs()
        cail = self.cfg.cail
        g_in = self.stem(x)
        local: Tensor | None = None
        records: list[AttentionRecord] = []
        for level in range(3):
            g, theta, spatial = self.attention[level](self.global_levels[level](g_in), detach_hard_input=not cail)
            if with_attention:
                records.append(AttentionRecord(spatial, theta))
            if need_local:
                if local is None:
                    local = self.croppers[level](g_in, theta)
                elif cail:  # Eq. 8: the local stream also sees the global features of this level
                    local = local + self.croppers[level](g_in, theta)
                local = self.local_levels[level](local)
            g_in = g
        g_feat = self.global_head(g_in.mean(dim=(2, 3))) if need_global else None
        l_feat = None
        if local is not None:
            pooled = local.mean(dim=(2, 3)).reshape(-1, self.cfg.num_regions * local.shape[1])
            l_feat = self.local_head(pooled)
        return g_feat, l_feat, records

    def embed(self, g_feat: Tensor | None, l_feat: Tensor | None) -> Tensor:
        """The inference feature: L2-normalised halves, concatenated (paper §3.4)."""
        parts = [F.normalize(f, dim=1) for f in (g_feat, l_feat) if f is not None]
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward(self, x: Tensor) -> Tensor | HANOutput:
        g_feat, l_feat, _ = self.forward_features(x)
        if not self.training:
            return self.embed(g_feat, l_feat).float()
        assert g_feat is not None and l_feat is not None
        g_logits = self.global_classifier(g_feat) if self.global_classifier is not None else None
        l_logits = self.local_classifier(l_feat) if self.local_classifier is not None else None
        return HANOutput(g_logits, l_logits, g_feat, l_feat)
