"""FLOPs and parameters against the paper's budgets (Table 1 and Table 12).

Convention (DESIGN.md §2): the paper's "FLOPs" are 2 x the conv + linear multiply-adds that fvcore
counts. BatchNorm, pooling, resize and grid sampling are left out on purpose (fvcore would add them).
The count is cross-checked with ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 per MAC.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# FLOPs budgets: Table 1 for the depthwise variants, Table 12 for the other block types (medium strides).
BUDGETS: dict[str, float] = {"small": 3.68e8, "medium": 5.33e8, "large": 7.01e8, "inception": 1.09e9, "residual": 1.34e9}
TOLERANCE = 0.02
# rows of the FLOPs table: name -> (registered model, overrides)
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "small": ("han_small", {}),
    "medium": ("han_medium", {}),
    "large": ("han_large", {}),
    "inception": ("han_medium", {"block": "inception"}),
    "residual": ("han_medium", {"block": "residual"}),
}
_COUNTED_OPS = ("conv", "linear", "addmm", "matmul")  # fvcore operator names of conv and FC layers


@dataclass
class FlopsReport:
    """MACs (multiply-adds) and FLOPs (= 2 x MACs) of one network at one input size."""

    name: str
    macs: int
    flops: int
    params: int
    budget: float
    deviation: float  # (flops - budget) / budget
    within_budget: bool
    torch_flops: int  # FlopCounterMode's count, for the cross-check

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    return sum(p.numel() for n, p in model.named_parameters() if include_classifier or "classifier" not in n)


def flops_report(name: str) -> FlopsReport:
    """Build the network of FLOPs-table row ``name`` and compare it with its budget."""
    from ..model import create_model

    if name not in ROWS:
        raise ValueError(f"unknown FLOPs row {name!r}; choose from {', '.join(ROWS)}")
    model_name, overrides = ROWS[name]
    model = create_model(model_name, **overrides)
    size = model.cfg.preprocess.input_size
    macs = count_macs(model, size)
    flops = 2 * macs
    budget = BUDGETS[name]
    dev = (flops - budget) / budget
    return FlopsReport(name, macs, flops, count_params(model), budget, dev, abs(dev) <= TOLERANCE, count_flops_torch(model, size))


def flops_table(reports: list[FlopsReport]) -> str:
    """Plain-text table for people; MACs and FLOPs side by side, as the paper's convention needs."""
    head = f"{'model':<10} {'MACs':>10} {'FLOPs=2xMACs':>13} {'budget':>9} {'dev':>7} {'params':>10} {'torch FLOPs':>12}  ok"
    lines = [head, "-" * len(head)]
    for r in reports:
        lines.append(
            f"{r.name:<10} {r.macs:>10.3e} {r.flops:>13.3e} {r.budget:>9.2e} {r.deviation:>+7.1%} {r.params:>10,} "
            f"{r.torch_flops:>12.3e}  {'yes' if r.within_budget else 'NO'}"
        )
    return "\n".join(lines)
