"""Model configuration and the preprocessing contract, torch-free so the runtime can read them.

Like a timm ``pretrained_cfg``, the contract travels with the model and with every exported
artifact (ONNX ``metadata_props``, engine manifests), so nobody passes input size or mean/std twice.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

BLOCKS = ("depthwise", "inception", "residual")
FEATURES = ("global", "local", "both")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a person crop becomes the network input (what the runtime must reproduce exactly)."""

    input_size: tuple[int, int] = (160, 64)  # (height, width), paper §4
    channel_order: str = "RGB"
    pixel_scale: float = 1.0 / 255.0  # uint8 -> [0, 1] before mean/std
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    layout: str = "NCHW"


@dataclass(frozen=True)
class HANConfig:
    """Architecture of one HAN network (docs/architecture.md) and its preprocessing contract.

    ``strides`` says which of the 3 global units of each level carries the level's single stride 2
    (Table 1: small (2,1,1), medium (1,2,1), large (1,1,2)); it applies to the depthwise block.
    The inception and residual blocks (2 units per level) always put the stride in their second unit
    (HA-CNN's Inception-B; for the bottleneck this placement is the one that meets Table 12's budget).
    """

    variant: str = "medium"
    strides: tuple[int, int, int] = (1, 2, 1)
    block: str = "depthwise"
    stem_channels: int = 32
    channels: tuple[int, int, int] = (128, 256, 384)  # d1, d2, d3
    num_regions: int = 4  # T
    # hard-attention region size (height, width) sampled at each level; the paper's 24x28, 12x14, 6x7
    region_sizes: tuple[tuple[int, int], ...] = ((24, 28), (12, 14), (6, 7))
    feat_dim: int = 512  # per branch; the embedding is 2 x feat_dim when feature == "both"
    reduction: int = 16  # soft channel attention squeeze ratio
    num_classes: int = 0
    soft_spatial: bool = True
    soft_channel: bool = True
    hard_regional: bool = True
    cail: bool = True
    # gradient scale on the hard-attention FC: keeps its tanh out of saturation at the paper's lr (measured)
    theta_grad_scale: float = 0.01
    feature: str = "both"
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        if self.feature not in FEATURES:
            raise ValueError(f"feature must be one of {FEATURES}, got {self.feature!r}")
        if len(self.strides) != 3 or sorted(self.strides) != [1, 1, 2]:
            raise ValueError(f"strides must put one stride 2 among 3 units, got {self.strides}")
        if len(self.region_sizes) != 3:
            raise ValueError("region_sizes needs one (h, w) per level")
        if self.num_classes < 0:
            raise ValueError("num_classes must be >= 0")

    @property
    def embedding_dim(self) -> int:
        """Length of the inference feature."""
        return 2 * self.feat_dim if self.feature == "both" else self.feat_dim

    @property
    def embedding_layout(self) -> str:
        """Human- and machine-readable description of what each slice of the embedding holds."""
        d = self.feat_dim
        if self.feature == "both":
            return f"concat(l2norm(global[0:{d}]), l2norm(local[{d}:{2 * d}]))"
        return f"l2norm({self.feature}[0:{d}])"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HANConfig:
        """Inverse of :meth:`to_dict` (JSON turns tuples into lists; this turns them back)."""
        data = dict(data)
        pre = data.pop("preprocess", {}) or {}
        pre = {k: tuple(v) if isinstance(v, list) else v for k, v in pre.items()}
        out: dict[str, Any] = {}
        for k, v in data.items():
            if k == "region_sizes":
                v = tuple(tuple(x) for x in v)
            elif isinstance(v, list):
                v = tuple(v)
            out[k] = v
        try:
            return cls(preprocess=PreprocessConfig(**pre), **out)
        except TypeError as exc:  # unknown or missing fields: not a HAN config
            raise ValueError(f"not a HAN model config: {exc}") from exc


# Tensor names of every exported artifact (ONNX, engines, Triton configs).
INPUT_NAME = "images"  # float32 (N, 3, H, W), preprocessed per PreprocessConfig
OUTPUT_NAME = "embeddings"  # float32 (N, D), layout per HANConfig.embedding_layout
METADATA_KEY = "han_deploy.contract"  # ONNX metadata_props key holding the JSON contract


def contract_metadata(cfg: HANConfig, **extra: Any) -> dict[str, str]:
    """The contract as ONNX ``metadata_props``: one JSON entry plus flat keys for people and tools."""
    pre = cfg.preprocess
    contract = {
        "model": cfg.to_dict(),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "embedding_dim": cfg.embedding_dim,
        "embedding_layout": cfg.embedding_layout,
        **extra,
    }
    return {
        METADATA_KEY: json.dumps(contract, sort_keys=True),
        "variant": cfg.variant,
        "input_size": f"{pre.input_size[0]}x{pre.input_size[1]}",
        "channel_order": pre.channel_order,
        "mean": ",".join(map(str, pre.mean)),
        "std": ",".join(map(str, pre.std)),
        "embedding_layout": cfg.embedding_layout,
        **{k: str(v) for k, v in extra.items()},
    }


def read_contract(metadata: dict[str, str]) -> tuple[HANConfig, dict[str, Any]]:
    """Inverse of :func:`contract_metadata`: the model config and the whole contract dict."""
    if METADATA_KEY not in metadata:
        raise ValueError(f"no {METADATA_KEY!r} entry in the metadata: not a han-deploy artifact")
    contract = json.loads(metadata[METADATA_KEY])
    return HANConfig.from_dict(contract["model"]), contract
