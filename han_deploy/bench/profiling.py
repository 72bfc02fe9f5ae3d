"""Where the time goes: ONNX Runtime's per-node profile and PyTorch's profiler, aggregated per operator type.

ONNX Runtime writes a Chrome-trace JSON when ``SessionOptions.enable_profiling`` is set; its ``Node``
events carry the operator type (``args.op_name``) and the kernel time in microseconds. PyTorch's
``torch.profiler`` gives self CPU time per ATen operator. Both are summed per operator type and
reported as a share of the total operator time.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def aggregate_ort_trace(
    events: list[dict[str, Any]], runs: int, conv_weights: dict[str, list[int]] | None = None
) -> list[dict[str, Any]]:
    """Per operator type: total kernel microseconds per run, share of the operator time, kernel count per run.

    ``conv_weights`` (conv node name -> weight shape, from :func:`conv_weight_shapes`) names the kernel kind
    of convolutions whose trace event does not show their (prepacked) weight, e.g. ONNX Runtime's QLinearConv.
    """
    total: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for ev in events:
        name = str(ev.get("name", ""))
        if ev.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        node = re.sub(r"_token_\d+$", "", name.removesuffix("_kernel_time"))
        op = _op_label(ev.get("args", {}), (conv_weights or {}).get(node))
        total[op] += float(ev.get("dur", 0))
        count[op] += 1
    return _shares(total, count, runs)


def conv_weight_shapes(path: str | os.PathLike[str]) -> dict[str, list[int]]:
    """Conv node name -> weight shape (O, I/groups, kH, kW) in an ONNX file, through a weight's DequantizeLinear."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dims = {init.name: list(init.dims) for init in graph.initializer}
    dequant = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    out = {}
    for n in graph.node:
        if "Conv" in n.op_type and len(n.input) > 1:
            weight = dims.get(n.input[1]) or dims.get(dequant.get(n.input[1], ""))
            if weight and len(weight) == 4:
                out[n.name] = weight
    return out


def _op_label(args: dict[str, Any], weight: list[int] | None = None) -> str:
    """The operator type; convolutions split by kernel kind (1x1, depthwise kxk, dense kxk) from their weight shape."""
    op = str(args.get("op_name", "?"))
    if "conv" not in op.lower():
        return op
    if weight is None:
        shapes = [next(iter(d.values())) for d in args.get("input_type_shape", []) if isinstance(d, dict) and d]
        weight = next((s for s in shapes[1:] if isinstance(s, list) and len(s) == 4), None)
    if weight is None:
        return op
    _, in_per_group, kh, kw = weight
    kind = "1x1" if kh == kw == 1 else (f"depthwise {kh}x{kw}" if in_per_group == 1 else f"{kh}x{kw}")
    return f"{op} {kind}"


def _shares(total: dict[str, float], count: dict[str, int], runs: int) -> list[dict[str, Any]]:
    grand = sum(total.values()) or 1.0
    rows = [
        {"op": op, "ms_per_run": us / runs / 1e3, "share": us / grand, "calls_per_run": count[op] / runs}
        for op, us in total.items()
    ]
    return sorted(rows, key=lambda r: -r["ms_per_run"])


def profile_onnxruntime(
    path: str | os.PathLike[str], batch: int, runs: int = 10, warmup: int = 3, threads: int = 2
) -> dict[str, Any]:
    """Profile ``runs`` calls of an ONNX model (the ``warmup`` calls before them are left out) per operator type.

    The session uses the benchmark's settings (``threads`` intra-op threads, no spinning, all graph optimisations),
    so the profile is of the graph that was timed.
    """
    from ..runtime.backends.onnxruntime_backend import create_session

    with tempfile.TemporaryDirectory(prefix="han-prof-") as tmp:
        sess = create_session(path, threads=threads, spinning=False, profile_prefix=str(Path(tmp) / "ort"))
        inp = sess.get_inputs()[0]
        h, w = inp.shape[2], inp.shape[3]
        x = np.random.default_rng(0).standard_normal((batch, 3, h, w), dtype=np.float32)
        for _ in range(warmup):
            sess.run(None, {inp.name: x})
        for _ in range(runs):
            sess.run(None, {inp.name: x})
        trace = Path(sess.end_profiling())
        events = json.loads(trace.read_text())
    # the warm-up runs are in the trace too: keep the events from the first timed ``model_run`` on
    runs_ev = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])[warmup:]
    cutoff = runs_ev[0]["ts"] if runs_ev else 0
    per_op = aggregate_ort_trace([e for e in events if e.get("ts", 0) >= cutoff], runs, conv_weight_shapes(path))
    run_ms = [e["dur"] / 1e3 for e in runs_ev]
    return {
        "path": str(path),
        "batch": batch,
        "runs": runs,
        "median_run_ms": float(np.median(run_ms)) if run_ms else None,
        "ops": per_op,
    }


def profile_torch(model: Any, batch: int, runs: int = 5, warmup: int = 2) -> dict[str, Any]:
    """Self CPU time per ATen operator over ``runs`` eager forwards (after ``warmup``), in eval / inference mode."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(batch, 3, *model.cfg.preprocess.input_size)
    model = model.eval()
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(runs):
                model(x)
    total: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for ev in prof.key_averages(group_by_input_shape=True):
        if ev.self_cpu_time_total > 0:
            shapes = [{"float": list(s)} for s in (ev.input_shapes or [])]
            op = _op_label({"op_name": ev.key, "input_type_shape": shapes}) if "conv" in ev.key else ev.key
            total[op] += ev.self_cpu_time_total
            count[op] += ev.count
    return {"batch": batch, "runs": runs, "ops": _shares(total, count, runs)}


def ops_markdown(ops: list[dict[str, Any]], top: int = 12) -> str:
    lines = ["| operator | ms / run | share | calls / run |", "|---|---:|---:|---:|"]
    for r in ops[:top]:
        lines.append(f"| {r['op']} | {r['ms_per_run']:.2f} | {r['share']:.1%} | {r['calls_per_run']:.0f} |")
    rest = ops[top:]
    if rest:
        lines.append(
            f"| (other {len(rest)}) | {sum(r['ms_per_run'] for r in rest):.2f} | {sum(r['share'] for r in rest):.1%} | |"
        )
    return "\n".join(lines)
