"""Even out the channel ranges of every tensor between two convs, before the CPU flavour is quantized.

ONNX Runtime quantizes an activation per tensor: one scale for all its channels, set by the widest, so
a channel that spans a tenth of that range gets about 25 of the 256 levels (3.3 of its 8 bits lost). Where a conv's output goes
through a ReLU into one other conv, channel ``i`` can be divided by ``s_i`` in the first conv (its
weights and bias: ReLU commutes with a positive scale) and multiplied back into the second conv's
weights for input channel ``i``; the second conv's output is then unchanged. This is the cross-layer
equalization of Nagel et al. ("Data-Free Quantization Through Weight Equalization and Bias Correction",
ICCV 2019), with the scales chosen from calibrated activation ranges so that every live channel
reaches the widest one's (docs/export.md, "How the precisions are made").

Weights are quantized per output channel. The first conv's rescaled rows are each covered by their
own scale, so they lose nothing; so are a depthwise second conv's (input channel ``i`` is its output
channel ``i``: HAN's 1x1 -> depthwise 3x3 units). A dense second conv takes the scales on its input
columns, which changes how its rows fill their int8 range: a trade, measured to pay on HAN-small
(docs/export.md, "How the precisions are made"; ``benchmarks/export/equalize_ablation.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import graph_checks

MIN_SCALE = 1e-2  # a channel is lifted at most 100x: a near-silent one would otherwise blow up its conv's weights


@dataclass
class EqualizedPairs:
    """What :func:`equalize_relu_pairs` changed: per second conv, the conv it reads from and its median channel lift."""

    pairs: dict[str, str] = field(default_factory=dict)  # second conv (name, else output) -> the conv it reads from
    lift: dict[str, float] = field(default_factory=dict)  # second conv -> median channel lift (1 / s_i)
    depthwise: int = 0  # pairs whose second conv is depthwise (free); the others are dense

    def to_dict(self) -> dict[str, Any]:
        lift = float(np.median(list(self.lift.values()))) if self.lift else 1.0
        return {"pairs": len(self.pairs), "depthwise": self.depthwise, "median_lift": round(lift, 3)}


def _attr(node: Any, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def _equalizable_second(conv: Any, inits: dict[str, Any]) -> bool:
    """A 2-D Conv whose input channel ``i`` is one weight slice: dense (``group`` 1) or depthwise (multiplier 1)."""
    if conv.op_type != "Conv" or conv.input[1] not in inits or len(inits[conv.input[1]].dims) != 4:
        return False
    group, dims = _attr(conv, "group", 1), inits[conv.input[1]].dims
    return group == 1 or (group == dims[0] and dims[1] == 1)


def relu_pairs(model: Any) -> list[tuple[Any, Any, str]]:
    """(conv, next conv, tensor between) for every 2-D Conv -> Relu -> Conv where the rescaling stays private.

    Nothing else may read the first conv's output, the ReLU's output or any weight or bias that is
    rescaled, and neither tensor may be a graph output. The first conv may be any 2-D conv (its output
    channels are rescaled), with its weight and bias as initializers; the second must be dense or
    depthwise, so that input channel ``i`` is one slice of its weight.
    """
    graph = model.graph
    readers, writers = graph_checks.tensor_readers(graph), graph_checks.tensor_writers(graph)
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    found = []
    for second in graph.node:
        if not _equalizable_second(second, inits):
            continue
        relu = writers.get(second.input[0])
        if relu is None or relu.op_type != "Relu":
            continue
        first = writers.get(relu.input[0])
        if first is None or first.op_type != "Conv" or first.input[1] not in inits or len(inits[first.input[1]].dims) != 4:
            continue
        between = (first.output[0], relu.output[0])
        rescaled = [name for name in (*first.input[1:], second.input[1]) if name]
        if any(t in outputs or len(readers[t]) != 1 for t in between) or not all(
            name in inits and len(readers[name]) == 1 for name in rescaled
        ):
            continue
        found.append((first, second, relu.output[0]))
    return found


def channel_ranges(model: Any, tensors: list[str], reader: Any) -> dict[str, np.ndarray]:
    """Per-channel maximum of each named NCHW float tensor over every batch of ``reader`` (ONNX Runtime, CPU)."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the named tensors must survive
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    highest: dict[str, np.ndarray] = {}
    reader.rewind()
    while (feed := reader.get_next()) is not None:
        for name, value in zip(tensors, session.run(tensors, feed), strict=True):
            batch_max = value.max(axis=(0, *range(2, value.ndim)))  # per channel (axis 1)
            highest[name] = np.maximum(highest[name], batch_max) if name in highest else batch_max
    reader.rewind()
    return highest


def _rescale(model: Any, name: str, factor: np.ndarray, axis: int = 0) -> None:
    """Multiply initializer ``name`` by ``factor`` along ``axis``, in place."""
    from onnx import numpy_helper

    tensor = next(t for t in model.graph.initializer if t.name == name)
    value = numpy_helper.to_array(tensor)
    shape = [1] * value.ndim
    shape[axis] = -1
    tensor.CopyFrom(numpy_helper.from_array((value * factor.reshape(shape)).astype(value.dtype), name))


def equalize_relu_pairs(model: Any, reader: Any) -> EqualizedPairs:
    """Rescale every pair of :func:`relu_pairs` so each channel between them reaches the widest one's range.

    Calibrated on ``reader``'s crops (per-channel maxima after the ReLU); a dead channel (never above 0)
    is left alone. The model's function is unchanged up to float rounding. Modifies ``model`` in place;
    every range is measured before any change (each pair's rescaling leaves the other pairs' tensors as
    they were, so the order does not matter).
    """
    graph_checks.unshare_initializers(model)
    pairs = relu_pairs(model)
    done = EqualizedPairs()
    ranges = channel_ranges(model, [t for _, _, t in pairs], reader) if pairs else {}
    for first, second, tensor in pairs:
        top = ranges[tensor]
        if top.max() <= 0:
            continue
        scale = np.where(top > 0, np.clip(top / top.max(), MIN_SCALE, 1.0), 1.0)  # s_i: channel i becomes x / s_i
        for name in first.input[1:]:
            if name:
                _rescale(model, name, 1.0 / scale)
        depthwise = _attr(second, "group", 1) > 1
        _rescale(model, second.input[1], scale, axis=0 if depthwise else 1)
        key = second.name or second.output[0]
        done.pairs[key] = first.name or first.output[0]
        done.depthwise += depthwise
        done.lift[key] = float(np.median(1.0 / scale))
    return done
