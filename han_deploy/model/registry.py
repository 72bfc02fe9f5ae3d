"""Registered model names, timm style: ``create_model("han_medium", num_classes=751, block="residual")``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..config import HANConfig
from .han import HAN

_REGISTRY: dict[str, Callable[..., HANConfig]] = {}

# Table 1: which of the 3 global units of each level carries the stride 2, and the FLOPs budget.
VARIANT_STRIDES = {"small": (2, 1, 1), "medium": (1, 2, 1), "large": (1, 1, 2)}


def register_model(name: str) -> Callable[[Callable[..., HANConfig]], Callable[..., HANConfig]]:
    """Decorator registering a function that returns the default :class:`HANConfig` of ``name``."""

    def wrap(fn: Callable[..., HANConfig]) -> Callable[..., HANConfig]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return wrap


for _variant, _strides in VARIANT_STRIDES.items():
    register_model(f"han_{_variant}")(lambda v=_variant, s=_strides: HANConfig(variant=v, strides=s))


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_config(name: str, **overrides: Any) -> HANConfig:
    """The config of a registered name, with field overrides (``block``, ablation switches, ...)."""
    key = name if name.startswith("han_") else f"han_{name}"
    if key not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    cfg = _REGISTRY[key]()
    fields = {f.name for f in dataclasses.fields(HANConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise TypeError(f"unknown option(s) for {key}: {', '.join(sorted(unknown))}")
    return dataclasses.replace(cfg, **overrides)


def create_model(name: str, num_classes: int = 0, **overrides: Any) -> HAN:
    """Build a registered HAN (``han_small``/``han_medium``/``han_large``, or the bare variant name)."""
    return HAN(model_config(name, num_classes=num_classes, **overrides))
