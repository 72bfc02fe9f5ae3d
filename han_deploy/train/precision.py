"""Mixed precision for training (``--amp``): the autocast context, and the convolutions kept in float32.

On a CPU, bf16 autocast runs the 1x1 convolutions (most of HAN's arithmetic) through oneDNN's bf16
kernels, about twice as fast as float32 where the CPU has AVX512-BF16 or AMX. oneDNN's bf16 backward of
a *strided depthwise* convolution is the exception: on the development machine it took 10-15x as long
as the float32 one (docs/training.md "Speed"), so those layers keep float32 inside the autocast region.
"""

from __future__ import annotations

import platform
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn


def autocast(amp: bool, device: torch.device) -> AbstractContextManager:
    """bf16 autocast on CPU, fp16 on CUDA when ``amp``; a disabled autocast (float32) otherwise."""
    if not amp:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def native_bf16() -> bool | None:
    """Whether this x86 CPU computes bf16 natively (AVX512-BF16 or AMX); None where torch cannot tell or not x86."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if platform.machine().lower() not in ("x86_64", "amd64", "i686") or any(probe is None for probe in probes):
        return None
    return any(probe() for probe in probes)


class Float32Conv2d(nn.Conv2d):
    """A ``Conv2d`` that computes in its weights' dtype even inside an autocast region (same parameters)."""

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.to(self.weight.dtype))


def is_strided_depthwise(module: nn.Module) -> bool:
    """A 2-D convolution with one group per input channel (more than one) and a stride above 1."""
    return isinstance(module, nn.Conv2d) and module.groups == module.in_channels > 1 and max(module.stride) > 1


def keep_strided_depthwise_float32(model: nn.Module) -> int:
    """Make every plain strided depthwise ``Conv2d`` of ``model`` a :class:`Float32Conv2d`; returns how many changed.

    Only the layers' class changes (parameters, state dict and export are untouched, and the model still
    pickles); without autocast such a layer computes exactly what it did. Subclasses of ``Conv2d`` are
    left alone, as their own ``forward`` would be lost.
    """
    count = 0
    for module in model.modules():
        if type(module) is nn.Conv2d and is_strided_depthwise(module):
            module.__class__ = Float32Conv2d
            count += 1
    return count
