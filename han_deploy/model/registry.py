"""Registered model names, timm style: ``create_model("han_medium", num_classes=751, block="residual")``.

The HAN variants (``han_small``, ``han_medium``, ``han_large``) and the benchmark's comparators
(``resnet50``, ``mobilenetv2``, :mod:`.comparators`) share one name space; ``list_models("han_*")``
lists the HAN variants only, as ``timm.list_models`` filters by pattern.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..config import HANConfig
from .comparators import ComparatorConfig, MobileNetV2Config, MobileNetV2ReID, ResNet50Config, ResNet50ReID
from .han import HAN

ModelConfig = HANConfig | ComparatorConfig
ConfigFn = Callable[[], ModelConfig]


@dataclass(frozen=True)
class _Entry:
    config: ConfigFn  # the name's default config
    build: Callable[[Any], nn.Module]  # config -> network


_REGISTRY: dict[str, _Entry] = {}

# Table 1: which of the 3 global units of each level carries the stride 2, and the FLOPs budget.
VARIANT_STRIDES = {"small": (2, 1, 1), "medium": (1, 2, 1), "large": (1, 1, 2)}


def register_model(name: str, build: Callable[[Any], nn.Module] = HAN) -> Callable[[ConfigFn], ConfigFn]:
    """Decorator registering a function that returns the default config of ``name``; ``build`` makes its network."""

    def wrap(fn: ConfigFn) -> ConfigFn:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = _Entry(fn, build)
        return fn

    return wrap


for _variant, _strides in VARIANT_STRIDES.items():
    register_model(f"han_{_variant}")(lambda v=_variant, s=_strides: HANConfig(variant=v, strides=s))
register_model("resnet50", ResNet50ReID)(ResNet50Config)
register_model("mobilenetv2", MobileNetV2ReID)(MobileNetV2Config)


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching the shell-style ``pattern``, sorted: ``list_models("han_*")`` -> the HAN variants."""
    return sorted(fnmatch.filter(_REGISTRY, pattern))


def _key(name: str) -> str:
    """The registered name of ``name``; a bare HAN variant (``small``) stands for ``han_small``."""
    key = name if name in _REGISTRY else f"han_{name}"
    if key not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return key


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The config of a registered name, with field overrides (HAN: ``block``, ablation switches, ...;
    ResNet50: ``last_stride``, ``stride_in``; all: ``num_classes``, ``preprocess``)."""
    key = _key(name)
    cfg = _REGISTRY[key].config()
    unknown = set(overrides) - {f.name for f in dataclasses.fields(cfg)}
    if unknown:
        raise TypeError(f"unknown option(s) for {key}: {', '.join(sorted(unknown))}")
    return dataclasses.replace(cfg, **overrides)


def create_model(name: str, num_classes: int = 0, **overrides: Any) -> nn.Module:
    """Build a registered network: a :class:`HAN` for ``han_small``/``han_medium``/``han_large`` (or the bare
    variant name), a comparator for ``resnet50``/``mobilenetv2``."""
    return _REGISTRY[_key(name)].build(model_config(name, num_classes=num_classes, **overrides))
