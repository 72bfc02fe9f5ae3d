"""FLOP and parameter counting of a network (the paper's convention), used by export (contract metadata) and bench.

Convention (docs/architecture.md, "FLOPs"): the paper's "FLOPs" are 2 x the conv + linear
multiply-adds that fvcore counts. BatchNorm, pooling, resize and grid sampling are left out on
purpose (fvcore would add them). The count is cross-checked with
``torch.utils.flop_counter.FlopCounterMode``, which counts 2 per MAC.
"""

from __future__ import annotations

from typing import Any

_COUNTED_OPS = ("conv", "linear", "addmm", "matmul")  # fvcore operator names of conv and FC layers


def count_macs(model: Any, input_size: tuple[int, int] = (160, 64)) -> int:
    """Conv + linear multiply-adds of one forward pass at batch 1, counted by fvcore."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    x = torch.zeros(1, 3, *input_size)
    analysis = FlopCountAnalysis(model.eval(), x)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    by_op = analysis.by_operator()
    return int(sum(v for k, v in by_op.items() if k in _COUNTED_OPS))


def count_flops_torch(model: Any, input_size: tuple[int, int] = (160, 64)) -> int:
    """Conv + matmul FLOPs from PyTorch's own counter (2 per multiply-add)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(1, 3, *input_size))
    ops = counter.get_flop_counts().get("Global", {})
    return int(sum(v for k, v in ops.items() if "conv" in str(k) or "mm" in str(k)))


def count_params(model: Any, include_classifier: bool = False) -> int:
    """Parameters of ``model``, without the training-only classifier unless asked."""
    return sum(p.numel() for n, p in model.named_parameters() if include_classifier or "classifier" not in n)
