"""Write HAN's attention means as ops ONNX Runtime runs on integers, before the CPU INT8 flavour is quantized.

ONNX Runtime has no integer ReduceMean: in the CPU flavour each attention mean (soft channel
attention's pooling over H, W and soft spatial attention's mean over C) costs a DequantizeLinear of a
whole feature map, a float reduction and layout transposes around it (docs/export.md, "CPU speed of
the INT8 models"). The same means as ops that its quantizer and CPU kernels do take in integers:

* mean over (H, W), dims kept -> ``GlobalAveragePool`` (fused to ``QLinearGlobalAveragePool``);
* mean over C, dim kept -> a 1x1 ``Conv`` with C weights of 1/C and no bias (``QLinearConv``; its weights
  are quantized as int8 ones with scale 1/C, see :func:`weight_overrides`).

Each is the function of the ReduceMean it replaces (float summation order aside), so the FP32 graph's
outputs do not change; only the CPU flavour is rewritten (TensorRT reduces in any precision itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import graph_checks


@dataclass
class RewrittenMeans:
    """What :func:`rewrite_means` changed: node names now GlobalAveragePool, and mean convs with their weight."""

    pools: list[str] = field(default_factory=list)
    convs: dict[str, str] = field(default_factory=dict)  # node name -> weight initializer name

    def counts(self) -> dict[str, int]:
        return {"GlobalAveragePool": len(self.pools), "Conv": len(self.convs)}


def _reduced_axes(node: Any, consts: dict[str, np.ndarray], rank: int) -> set[int] | None:
    """The axes a ReduceMean reduces (attribute before opset 18, input from 18), normalised; None if unknown."""
    axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        if node.input[1] not in consts:
            return None
        axes = [int(a) for a in consts[node.input[1]].ravel()]
    if not axes:  # no axes: reduce all (or nothing, with noop_with_empty_axes)
        return None
    return {a % rank for a in axes}


def _float_4d_inputs(model: Any) -> dict[str, list[int | None]]:
    """Inferred shape of every float32 4-D tensor (None for a symbolic dim)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        t = vi.type.tensor_type
        if t.elem_type == onnx.TensorProto.FLOAT and len(t.shape.dim) == 4:
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return shapes


def rewrite_means(model: Any) -> RewrittenMeans:
    """Rewrite in place every float 4-D ReduceMean with kept dims over (H, W) or over C (node names kept)."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    consts = graph_checks.initializer_values(graph)
    shapes = _float_4d_inputs(model)
    taken = {t.name for t in graph.initializer} | {i.name for i in graph.input} | {o for n in graph.node for o in n.output}
    done = RewrittenMeans()
    for node in graph.node:
        shape = shapes.get(node.input[0]) if node.op_type == "ReduceMean" else None
        if shape is None or not next((a.i for a in node.attribute if a.name == "keepdims"), 1):
            continue
        axes = _reduced_axes(node, consts, 4)
        if axes == {2, 3}:
            node.op_type, inputs = "GlobalAveragePool", [node.input[0]]
            done.pools.append(node.name)
        elif axes == {1} and shape[1]:
            weight = graph_checks.fresh_name(f"{node.name or node.output[0]}/mean_weight", taken)
            channels = int(shape[1])
            graph.initializer.append(numpy_helper.from_array(np.full((1, channels, 1, 1), 1.0 / channels, np.float32), weight))
            node.op_type, inputs = "Conv", [node.input[0], weight]
            done.convs[node.name] = weight
        else:
            continue
        del node.input[:]
        node.input.extend(inputs)
        del node.attribute[:]
        if node.op_type == "Conv":
            node.attribute.append(onnx.helper.make_attribute("kernel_shape", [1, 1]))
    graph_checks.prune_unread_initializers(model)  # opset 18's axes inputs
    return done


def weight_overrides(model: Any, done: RewrittenMeans) -> dict[str, list[dict[str, Any]]]:
    """``TensorQuantOverrides`` storing each mean conv's 1/C weights as int8 ones with scale 1/C.

    Exact, and the smallest products: per-channel symmetric int8 would store 127s, and on x86 CPUs
    without VNNI ONNX Runtime's u8s8 kernel sums pairs of uint8 x int8 products in saturating 16 bits
    (2 x 255 x 127 > 32767), which would clip the mean at the most activated pixels.
    """
    dims = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return {weight: [{"axis": 0, "scale": np.float32(1.0 / dims[weight][1]), "zero_point": 0}] for weight in done.convs.values()}
