"""Sensitivity pass: find the few quantized layers that cost the embedding most and keep them float.

One layer at a time (docs/export.md "Sensitivity pass"): for every quantized layer, the INT8 model
with only that layer's inputs back in float is scored by its mean per-sample cosine against the FP32
model on probe crops (held apart from calibration and from the gate's; calibration crops only when
there are no others). Layers are then kept float in order of
their gain, each only if it raises the score of those already kept, until the target cosine is met
or ``max_layers`` are kept.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import graph_checks, parity

SessionFactory = Callable[[Path], Callable[[np.ndarray], np.ndarray]]


@dataclass
class SensitivityReport:
    """What the pass measured (mean cosine on the probe crops) and which layers it keeps float."""

    target: float
    baseline: float
    final: float
    kept: list[str] = field(default_factory=list)
    gains: dict[str, float] = field(default_factory=dict)  # layer -> cosine gained by keeping it alone float

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gains"] = dict(sorted(self.gains.items(), key=lambda kv: -kv[1])[:10])  # the ten worst layers
        return data


def score(model: Any, nodes: list[str], session: SessionFactory, inputs: np.ndarray, reference: np.ndarray) -> float:
    """Mean cosine vs ``reference`` of ``model`` with ``nodes``' inputs bypassing their Q/DQ (``model`` untouched).

    Also the tool for group ablations (``benchmarks/export/int8_group_ablation.py``).
    """
    trial = type(model)()
    trial.CopyFrom(model)
    graph_checks.bypass_qdq(trial, nodes)
    with tempfile.TemporaryDirectory(prefix="han-sensitivity-") as tmp:
        path = Path(tmp) / "trial.onnx"  # a file, so the trial runs through the runtime's backend like any artifact
        path.write_bytes(trial.SerializeToString())
        got = parity.run_batched(session(path), inputs, 32)
    return float(parity.cosine_rows(got, reference).mean())


def keep_most_harmful(
    int8_path: str | os.PathLike[str],
    inputs: np.ndarray,
    reference: np.ndarray,
    target: float,
    max_layers: int,
    session: SessionFactory,
) -> SensitivityReport:
    """Rank the quantized layers of ``int8_path`` one at a time, then pick the fewest that reach ``target``.

    ``reference`` holds the FP32 embeddings of ``inputs``; ``session`` builds the runner the flavour is
    judged with (the Q/DQ float simulation for TensorRT, the default ONNX Runtime session for the CPU).
    """
    import onnx

    model = onnx.load(str(int8_path))
    baseline = score(model, [], session, inputs, reference)
    report = SensitivityReport(target, baseline, baseline)
    if baseline >= target or max_layers < 1:
        return report
    layers = graph_checks.quantized_layers(model)
    report.gains = {name: score(model, [name], session, inputs, reference) - baseline for name in layers}
    for name in sorted(report.gains, key=lambda n: -report.gains[n]):
        if report.final >= target or len(report.kept) >= max_layers or report.gains[name] <= 0:
            break
        # alone it helps, but with the layers already kept it may not: keep it only if the score rises
        trial = score(model, [*report.kept, name], session, inputs, reference)
        if trial > report.final:
            report.kept.append(name)
            report.final = trial
    return report
