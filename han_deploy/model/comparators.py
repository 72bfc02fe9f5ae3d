"""Two reference re-id networks the benchmark compares HAN with, written from their papers' layer tables.

Registered in the model registry (:mod:`.registry`): ``create_model("resnet50")``, ``create_model("mobilenetv2")``.

- **ResNet50** (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Table 1, the
  50-layer column): conv1 7x7/2 64, 3x3/2 max pool, then bottleneck stages conv2_x..conv5_x of
  [1x1 c, 3x3 c, 1x1 4c] x {3, 4, 6, 3} with c = 64, 128, 256, 512, projection shortcuts (option B)
  where the shape changes. The downsampling stride sits in the 3x3 conv of each stage's first block
  (``stride_in="3x3"``, the variant every ImageNet-pretrained re-id baseline loads and whose cost is
  the published ~4.1 GMACs at 224x224); ``stride_in="1x1"`` is the paper's original placement
  (3.8e9 multiply-adds). ``last_stride=1`` is the re-id trick of Luo et al. (BoT) that doubles the
  final map, off by default (torchreid's ``resnet50`` keeps 2).
- **MobileNetV2** (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR
  2018, Table 2): conv 3x3/2 32, then inverted-residual bottlenecks (t, c, n, s) = (1,16,1,1),
  (6,24,2,2), (6,32,3,2), (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1), then conv 1x1 1280;
  ReLU6 after expansion and depthwise convs, linear projection, identity shortcut where the stride is 1
  and the channel count is kept (Table 1 / Fig. 4). ~300M multiply-adds at 224x224, width 1.0.

Both end in the usual re-id head: global average pool -> BatchNorm1d ("BNNeck", Luo et al. 2019)
-> embedding (optionally a Linear embedding of ``embed_dim`` first, as torchreid's ``*_fc512``),
L2-normalised in eval mode, the classifier's logits and the feature in train mode. Input 160x64 by
default, like HAN (override ``preprocess``). Only the timing and FLOPs of these networks are used (no
weights are trained).

The configs duck-type what :func:`han_deploy.export.export_onnx` reads (``variant``, ``preprocess``,
``embedding_dim``, ``embedding_layout``, ``to_dict``), so the benchmark exports them with the
project's one exporter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from ..config import PreprocessConfig


@dataclass(frozen=True)
class ComparatorConfig:
    """What a comparator is, and the preprocessing contract its exported artifacts carry."""

    FEAT_DIM: ClassVar[int]  # channels of the pooled backbone feature, per network

    variant: str
    embed_dim: int | None = None  # optional Linear embedding after the pool
    num_classes: int = 0
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    @property
    def embedding_dim(self) -> int:
        return self.embed_dim or self.FEAT_DIM

    @property
    def embedding_layout(self) -> str:
        return f"l2norm(bnneck[0:{self.embedding_dim}])"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ResNet50Config(ComparatorConfig):
    """ResNet50: where the downsampling stride sits in a bottleneck (``"3x3"`` or ``"1x1"``), and the last stage's stride."""

    FEAT_DIM: ClassVar[int] = 2048

    variant: str = "resnet50"
    stride_in: str = "3x3"
    last_stride: int = 2

    def __post_init__(self) -> None:
        if self.stride_in not in ("1x1", "3x3"):
            raise ValueError(f"stride_in must be '1x1' or '3x3', got {self.stride_in!r}")
        if self.last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {self.last_stride}")


@dataclass(frozen=True)
class MobileNetV2Config(ComparatorConfig):
    """MobileNetV2 at width 1.0 (no options beyond the common ones)."""

    FEAT_DIM: ClassVar[int] = 1280

    variant: str = "mobilenetv2"


class ReIDHead(nn.Module):
    """Global average pool -> (Linear embedding + BN + ReLU) -> BNNeck; L2-normalised in eval."""

    def __init__(self, in_ch: int, embed_dim: int | None, num_classes: int) -> None:
        super().__init__()
        self.embed = (
            nn.Sequential(nn.Linear(in_ch, embed_dim, bias=False), nn.BatchNorm1d(embed_dim), nn.ReLU(inplace=True))
            if embed_dim
            else None
        )
        dim = embed_dim or in_ch
        self.bnneck = nn.BatchNorm1d(dim)
        self.bnneck.bias.requires_grad_(False)  # BNNeck: no shift, as in Luo et al.
        self.classifier = nn.Linear(dim, num_classes, bias=False) if num_classes else None

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor | None, Tensor]:
        f = x.mean(dim=(2, 3))
        if self.embed is not None:
            f = self.embed(f)
        b = self.bnneck(f)
        if not self.training:
            return F.normalize(b, dim=1)
        return (self.classifier(b) if self.classifier is not None else None), f


def _conv_bn(
    c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU
) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)


# --------------------------------------------------------------------------------------------- ResNet50


class Bottleneck(nn.Module):
    """He et al. Fig. 5 right: 1x1 reduce, 3x3, 1x1 expand (x4), projection shortcut when the shape changes."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int, stride_in: str) -> None:
        super().__init__()
        c_out = width * self.expansion
        s1, s3 = (stride, 1) if stride_in == "1x1" else (1, stride)
        self.conv1 = _conv_bn(c_in, width, 1, s1)
        self.conv2 = _conv_bn(width, width, 3, s3)
        self.conv3 = _conv_bn(width, c_out, 1, act=None)
        self.shortcut = _conv_bn(c_in, c_out, 1, stride, act=None) if stride != 1 or c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class ResNet50ReID(nn.Module):
    """ResNet50 backbone (He et al. 2016, Table 1) with the re-id head; eval output (N, embedding_dim)."""

    # conv2_x .. conv5_x: (bottleneck width, blocks, stride of the first block)
    STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))

    def __init__(self, cfg: ResNet50Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        blocks: list[nn.Module] = []
        c_in = 64
        for i, (width, n, stride) in enumerate(self.STAGES):
            if i == len(self.STAGES) - 1:
                stride = cfg.last_stride
            for j in range(n):
                blocks.append(Bottleneck(c_in, width, stride if j == 0 else 1, cfg.stride_in))
                c_in = width * Bottleneck.expansion
        self.body = nn.Sequential(*blocks)
        self.head = ReIDHead(c_in, cfg.embed_dim, cfg.num_classes)
        _init(self)

    def forward(self, x: Tensor) -> Any:
        return self.head(self.body(self.stem(x)))


# ------------------------------------------------------------------------------------------ MobileNetV2


class InvertedResidual(nn.Module):
    """Sandler et al. Table 1: 1x1 expand (t) + ReLU6, 3x3 depthwise (stride s) + ReLU6, 1x1 linear projection."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(c_in, hidden, 1, act=nn.ReLU6))
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6), _conv_bn(hidden, c_out, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2ReID(nn.Module):
    """MobileNetV2 backbone (Sandler et al. 2018, Table 2, width 1.0) with the re-id head."""

    # (expansion t, output channels c, repeats n, stride s of the first repeat)
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, cfg: MobileNetV2Config) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
        c_in = 32
        for t, c, n, s in self.SETTINGS:
            for j in range(n):
                layers.append(InvertedResidual(c_in, c, s if j == 0 else 1, t))
                c_in = c
        layers.append(_conv_bn(c_in, cfg.FEAT_DIM, 1, act=nn.ReLU6))
        self.body = nn.Sequential(*layers)
        self.head = ReIDHead(cfg.FEAT_DIM, cfg.embed_dim, cfg.num_classes)
        _init(self)

    def forward(self, x: Tensor) -> Any:
        return self.head(self.body(x))
