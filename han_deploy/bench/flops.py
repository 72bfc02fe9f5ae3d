"""FLOPs and parameters against the paper's budgets (Table 1 and Table 12).

The counting itself (the paper's convention, 2 x fvcore conv + linear MACs) is :mod:`han_deploy.model.flops`;
this module holds the budgets and the report that compares a network with them.
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


def flops_report(name: str) -> FlopsReport:
    """Build the network of FLOPs-table row ``name`` and compare it with its budget."""
    from ..model import create_model
    from ..model.flops import count_flops_torch, count_macs, count_params

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
