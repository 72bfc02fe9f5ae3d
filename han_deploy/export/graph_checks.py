"""Structural facts about an exported HAN graph that quantization and its checks rely on.

* which tensors are non-negative by construction (ReLU outputs and what only moves or averages them),
  so the CPU INT8 model can give them uint8 with zero point 0;
* which nodes stay in float (docs/export.md): the stem conv, the crop-grid arithmetic between the
  hard-attention FC and GridSample, and the embedding tail after the head FCs;
* after quantization: shared DequantizeLinear nodes split per consumer, the Q/DQ parameters
  summarised, and the ONNX Runtime-optimised graph searched for convolutions left in float.

Everything is found from the graph's structure, not from node names, so it survives re-export.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

# ops whose output is >= 0 whatever their input
_NONNEG_SOURCES = {"Relu", "Sigmoid", "Softmax", "Abs", "ReduceL2", "Sqrt"}
# ops whose output is a selection, copy, convex combination or mean of their (data) input
_NONNEG_PRESERVING = {
    "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Expand", "Slice", "Gather", "Identity",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "GridSample",
    "DepthToSpace", "SpaceToDepth", "Tile", "Split",
}  # fmt: skip
# (a Conv qualifies when its weights and bias are constants >= 0 too, e.g. a mean over channels)
_NONNEG_ALL_INPUTS = {"Mul", "Add", "Concat", "Div", "Max", "Min", "Conv"}
CONV_OPS = {"Conv", "FusedConv", "ConvTranspose"}
FC_OPS = {"MatMul", "Gemm"}


def tensor_readers(graph: Any) -> dict[str, list[Any]]:
    """The nodes that read each tensor, by tensor name."""
    out: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name:
                out[name].append(node)
    return out


def tensor_writers(graph: Any) -> dict[str, Any]:
    """The node that writes each tensor, by tensor name."""
    return {name: node for node in graph.node for name in node.output}


def initializer_values(graph: Any) -> dict[str, np.ndarray]:
    """Every constant of ``graph`` by tensor name: initializers and the outputs of Constant nodes."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def topological_sort(model: Any) -> None:
    """Reorder ``model.graph.node`` so every node comes after the producers of its inputs (in place)."""
    graph = model.graph
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or a dangling input near node {pending[0].name!r}")
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
        for node in ready:
            ordered.append(node)
            available.update(node.output)
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def nonnegative_tensors(model: Any) -> set[str]:
    """Names of the activation tensors that are >= 0 for every input (found by forward propagation)."""
    graph = model.graph
    consts = initializer_values(graph)
    nonneg = {name for name, value in consts.items() if value.dtype.kind in "fiu" and value.size and (value >= 0).all()}
    for node in graph.node:  # ONNX graphs are topologically sorted
        data = [i for i in node.input if i]
        if node.op_type in _NONNEG_SOURCES:
            ok = True
        elif node.op_type in _NONNEG_PRESERVING:
            ok = bool(data) and data[0] in nonneg
        elif node.op_type == "Resize":
            mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "nearest")
            ok = mode in ("nearest", "linear") and data[0] in nonneg  # cubic can overshoot below 0
        elif node.op_type == "Clip":
            ok = data[0] in nonneg or (len(data) > 1 and data[1] in consts and float(consts[data[1]]) >= 0)
        elif node.op_type in _NONNEG_ALL_INPUTS:
            ok = all(i in nonneg for i in data)
        else:
            ok = False
        if ok:
            nonneg.update(o for o in node.output if o)
    return nonneg - set(consts)


def sole_relu_consumers(model: Any) -> dict[str, str]:
    """Tensor -> output of the ReLU that is its only consumer (the ReLUs a uint8 Q/DQ model folds away)."""
    return {
        name: users[0].output[0]
        for name, users in tensor_readers(model.graph).items()
        if len(users) == 1 and users[0].op_type == "Relu"
    }


def _ancestors(graph: Any, tensors: Iterable[str]) -> set[str]:
    """Names of all nodes upstream of ``tensors`` (inclusive of their producers)."""
    producers = tensor_writers(graph)
    seen: set[str] = set()
    stack = [producers[t] for t in tensors if t in producers]
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(producers[i] for i in node.input if i in producers)
    return seen


def _descendants(graph: Any, tensors: Iterable[str]) -> set[str]:
    """Names of all nodes downstream of ``tensors``."""
    consumers = tensor_readers(graph)
    seen: set[str] = set()
    stack = [n for t in tensors for n in consumers.get(t, [])]
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(n for o in node.output for n in consumers.get(o, []))
    return seen


def kept_float_nodes(model: Any) -> dict[str, str]:
    """Nodes to keep out of INT8, each with the reason (docs/export.md, measurements).

    * ``stem``: the first conv, reading the normalised image (largest single-layer INT8 loss, ~1% of compute);
    * ``soft-spatial``: the single-channel (1 -> 1) convs of soft spatial attention: a few hundred MACs,
      and ONNX Runtime does not fuse the 3x3 one into an integer conv, so Q/DQ would only add work;
    * ``crop-grid``: the hard-attention FC, its tanh and all arithmetic from there to GridSample's grid
      input (region coordinates: an error of one quantization step moves the whole crop);
    * ``embedding-tail``: the head FCs and everything after them (BN1d, ReLU, L2 normalisation, concat):
      ~0.5% of the MACs, but BN1d rescales the FC output per unit, so its INT8 error reaches the
      embedding amplified (measured: the largest single gain, see docs/export.md).
    """
    graph = model.graph
    producers = tensor_writers(graph)
    graph_inputs = {i.name for i in graph.input}
    by_name = {n.name: n for n in graph.node}
    kept: dict[str, str] = {}
    weights = {t.name: tuple(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type in CONV_OPS and node.input[0] in graph_inputs:
            kept[node.name] = "stem"
        elif node.op_type in CONV_OPS and weights.get(node.input[1], (0, 0))[:2] == (1, 1):
            kept[node.name] = "soft-spatial"
    grid_inputs = [n.input[1] for n in graph.node if n.op_type == "GridSample"]
    upstream_of_grid = _ancestors(graph, grid_inputs)
    tanh_outputs = [n.output[0] for n in graph.node if n.op_type == "Tanh"]
    for name in _descendants(graph, tanh_outputs) & upstream_of_grid:
        kept[name] = "crop-grid"
    for node in graph.node:
        if node.op_type == "Tanh":
            kept[node.name] = "crop-grid"
            fc = producers.get(node.input[0])
            if fc is not None and fc.op_type in FC_OPS:
                kept[fc.name] = "crop-grid"
    outputs = {o.name for o in graph.output}
    heads = [n for n in graph.node if n.op_type in FC_OPS and n.name not in upstream_of_grid and n.name not in kept]
    for head in heads:
        downstream = _descendants(graph, head.output)
        if any(o in outputs for name in downstream for o in by_name[name].output):
            for name in (head.name, *downstream):
                kept.setdefault(name, "embedding-tail")
    return kept


def residual_adds(model: Any) -> list[str]:
    """Names of the residual Adds: two activation inputs, one from a conv, output read only by a ReLU."""
    graph = model.graph
    producers = tensor_writers(graph)
    consumers = tensor_readers(graph)
    found = []
    for node in graph.node:
        if node.op_type != "Add" or len(node.input) != 2 or not all(i in producers for i in node.input):
            continue
        readers = consumers.get(node.output[0], [])
        from_conv = any(producers[i].op_type in CONV_OPS for i in node.input)
        if from_conv and len(readers) == 1 and readers[0].op_type == "Relu":
            found.append(node.name)
    return found


def tensorrt_quantized_nodes(model: Any, kept: Iterable[str]) -> list[str]:
    """The nodes whose inputs get Q/DQ for TensorRT (docs/export.md): weighted layers and residual Adds, less ``kept``."""
    kept = set(kept)
    weighted = [n.name for n in model.graph.node if n.op_type in CONV_OPS | FC_OPS]
    return [name for name in (*weighted, *residual_adds(model)) if name not in kept]


def _qdq_quantizer(producers: dict[str, Any], tensor: str) -> Any | None:
    """The QuantizeLinear node behind ``tensor`` when it is the output of a DQ fed by a Q, else None."""
    dq = producers.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = producers.get(dq.input[0])
    return q if q is not None and q.op_type == "QuantizeLinear" else None


def _saturates_at_zero(q: Any, values: dict[str, np.ndarray]) -> bool:
    """Whether QuantizeLinear ``q`` clips negatives: an integer zero point at its type's minimum (uint8 0 the default).

    ONNX Runtime's quantizer drops a ReLU whose output gets such a Q (the Q clips for it), so the
    float tensor in front of that Q is the pre-ReLU one. A zero point whose value is not a constant
    counts as not saturating.
    """
    if len(q.input) < 3 or not q.input[2]:
        from onnx import TensorProto

        dtype = next((a.i for a in q.attribute if a.name == "output_dtype"), 0)
        return dtype in (0, TensorProto.UINT8)
    zero = values.get(q.input[2])
    if zero is None or not zero.size or zero.dtype.kind not in "iu":
        return False
    return bool((zero == np.iinfo(zero.dtype).min).all())


def bypass_qdq(model: Any, nodes: Iterable[str]) -> int:
    """Point every input of ``nodes`` that comes through a Q -> DQ pair at the float tensor before it (in place).

    Used to keep a node's inputs float after quantization (what reads a quantized tensor without being
    a quantized layer, and layers kept in float by the sensitivity pass); Q/DQ nodes left unread are
    removed. Where the Q clipped negatives for a ReLU the quantizer dropped (uint8, zero point 0: the
    CPU flavour), a ReLU is put back in front of the reader. Weights stored as INT8 initializers (no Q in
    front) stay dequantized. Returns inputs rewired.
    """
    graph = model.graph
    producers = tensor_writers(graph)
    values = initializer_values(graph)
    names = set(nodes)
    taken = {t for n in graph.node for t in (*n.input, *n.output)} | {n.name for n in graph.node}
    relu_of: dict[str, str] = {}
    rewired = 0
    for node in graph.node:
        if node.name not in names:
            continue
        for k, tensor in enumerate(node.input):
            q = _qdq_quantizer(producers, tensor)
            if q is None:
                continue
            source = q.input[0]
            if _saturates_at_zero(q, values):
                if source not in relu_of:
                    relu_of[source] = fresh_name(f"{source}_bypass_relu", taken)
                source = relu_of[source]
            node.input[k] = source
            rewired += 1
    for source, out in relu_of.items():
        graph.node.append(_relu_node(source, out))
    if relu_of:
        topological_sort(model)
    prune_unread_qdq(model)
    return rewired


def fresh_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_N`` with the first N that is not in ``taken``; the name is added to ``taken``."""
    name = base
    for n in itertools.count(1):
        if name not in taken and f"{name}_node" not in taken:
            break
        name = f"{base}_{n}"
    taken.update((name, f"{name}_node"))
    return name


def _relu_node(source: str, out: str) -> Any:
    from onnx import helper

    return helper.make_node("Relu", [source], [out], name=f"{out}_node")


def prune_unread_qdq(model: Any) -> int:
    """Remove Q/DQ nodes whose outputs nobody reads (repeatedly) and the initializers left unread; returns nodes removed."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    removed = 0
    while True:
        consumers = tensor_readers(graph)
        dead = [
            n
            for n in graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear")
            and not consumers.get(n.output[0])
            and n.output[0] not in outputs
        ]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
        removed += len(dead)
    prune_unread_initializers(model)  # their scales and zero points
    return removed


def prune_unread_initializers(model: Any) -> int:
    """Remove the initializers no node reads; returns how many."""
    graph = model.graph
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    unread = [t for t in graph.initializer if t.name not in read]
    for tensor in unread:
        graph.initializer.remove(tensor)
    return len(unread)


def quantized_layers(model: Any) -> list[str]:
    """Names of the non-Q/DQ nodes that read at least one input through a DequantizeLinear (the INT8 layers)."""
    producers = tensor_writers(model.graph)
    return [
        n.name
        for n in model.graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
        and any(i in producers and producers[i].op_type == "DequantizeLinear" for i in n.input)
    ]


def float_readers_of_qdq(model: Any, quantized: Iterable[str]) -> list[str]:
    """Nodes outside ``quantized`` that read an activation through a Q -> DQ pair (should be none for TensorRT)."""
    producers = tensor_writers(model.graph)
    keep = set(quantized)
    return [
        n.name
        for n in model.graph.node
        if n.name not in keep
        and n.op_type not in ("QuantizeLinear", "DequantizeLinear")
        and any(_qdq_quantizer(producers, i) is not None for i in n.input)
    ]


def fold_constant_identities(model: Any) -> int:
    """Replace every Identity that reads an initializer by an initializer of its own (in place).

    Without onnxslim the TorchScript exporter reads equal constants (e.g. the zero conv biases of a
    fresh network) through Identity nodes; ONNX Runtime's quantizer only quantizes a bias that is an
    initializer, and a conv with a non-initializer bias is not fused into an integer one. Returns nodes removed.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    folded = [n for n in graph.node if n.op_type == "Identity" and n.input[0] in inits]
    for node in folded:
        copy = type(inits[node.input[0]])()
        copy.CopyFrom(inits[node.input[0]])
        copy.name = node.output[0]
        graph.initializer.append(copy)
        graph.node.remove(node)
    return len(folded)


def unshare_initializers(model: Any, op_types: set[str] = CONV_OPS | FC_OPS | {"BatchNormalization"}) -> int:
    """Give every weight/bias initializer read by several quantizable nodes its own copy.

    Exporters and graph simplifiers deduplicate equal constants (e.g. the zero biases of a fresh
    network), but INT8 needs a separate bias per conv (its int32 scale is input_scale x weight_scale).
    Returns the number of copies made.
    """
    inits = {t.name: t for t in model.graph.initializer}
    users: dict[str, list[tuple[Any, int]]] = defaultdict(list)
    for node in model.graph.node:
        if node.op_type in op_types:
            for k, name in enumerate(node.input):
                if k > 0 and name in inits:
                    users[name].append((node, k))
    copies = 0
    for name, uses in users.items():
        for node, k in uses[1:]:
            clone = type(inits[name])()
            clone.CopyFrom(inits[name])
            clone.name = f"{name}__{node.name}__{k}"
            model.graph.initializer.append(clone)
            node.input[k] = clone.name
            copies += 1
    return copies


def read_shapes_after_quantize(model: Any) -> int:
    """Point Shape nodes that read a float tensor also feeding a QuantizeLinear at a DQ of that Q instead.

    The exporter reads e.g. the soft-spatial conv's output shape for its resize; that extra float
    reader of the conv output stops ONNX Runtime from fusing the conv into an integer one. A Shape
    of the dequantized tensor is the same shape, so the rewrite is exact. Returns nodes rewired.
    """
    from onnx import helper

    graph = model.graph
    consumers = tensor_readers(graph)
    new_nodes, rewired = [], 0
    for node in graph.node:
        new_nodes.append(node)
        if node.op_type != "QuantizeLinear":
            continue
        shapes = [n for n in consumers.get(node.input[0], []) if n.op_type == "Shape"]
        if not shapes:
            continue
        dq_out = f"{node.output[0]}__for_shape"
        new_nodes.append(
            helper.make_node("DequantizeLinear", [node.output[0], *node.input[1:]], [dq_out], name=f"{node.name}__for_shape")
        )
        for shape in shapes:
            shape.input[0] = dq_out
            rewired += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    return rewired


def split_shared_dequantize(model: Any) -> int:
    """Duplicate every DequantizeLinear whose output feeds several nodes: one DQ per consumer.

    ONNX Runtime fuses DQ -> Conv -> Q into an integer conv only when the DQ belongs to that node
    alone; a DQ shared with e.g. Shape, ReduceMean or GridSample leaves the conv in float. Returns the
    number of nodes added.
    """
    graph = model.graph
    consumers = tensor_readers(graph)
    outputs = {o.name for o in graph.output}
    added = 0
    new_nodes = []
    for node in graph.node:
        new_nodes.append(node)
        users = consumers.get(node.output[0], []) if node.op_type == "DequantizeLinear" else []
        if len(users) < 2 or node.output[0] in outputs:
            continue
        for k, user in enumerate(users[1:], start=1):
            clone = type(node)()
            clone.CopyFrom(node)
            clone.name = f"{node.name}__split{k}"
            clone.output[0] = f"{node.output[0]}__split{k}"
            for j, name in enumerate(user.input):
                if name == node.output[0]:
                    user.input[j] = clone.output[0]
            new_nodes.append(clone)
            added += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    return added


def qdq_summary(model: Any) -> dict[str, Any]:
    """Q/DQ facts a checker wants: counts, zero-point values and types, per-channel weight scales."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    elem_types: set[int] = set()
    zero_points_nonzero: list[str] = []
    per_channel_weights = per_tensor_weights = 0
    quantize = dequantize = 0
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        quantize += node.op_type == "QuantizeLinear"
        dequantize += node.op_type == "DequantizeLinear"
        if len(node.input) < 3 or node.input[2] not in inits:
            continue
        zp = inits[node.input[2]]
        elem_types.add(zp.data_type)
        if np.any(numpy_helper.to_array(zp) != 0):
            zero_points_nonzero.append(node.name)
        # a weight is an INT8 initializer behind a DQ, or a float initializer behind a Q (Q -> DQ pair on weights)
        is_weight = node.input[0] in inits and (
            (node.op_type == "DequantizeLinear" and inits[node.input[0]].data_type == TensorProto.INT8)
            or (node.op_type == "QuantizeLinear" and inits[node.input[0]].data_type == TensorProto.FLOAT)
        )
        if is_weight:
            dims = inits[node.input[0]].dims
            # output channels: axis 1 of a MatMul weight (K, N), axis 0 of a conv's (O, I, kh, kw);
            # a weight with one (e.g. a mean over channels) is neither per-channel nor per-tensor
            if len(dims) > 1 and dims[1 if len(dims) == 2 else 0] > 1:
                scale = numpy_helper.to_array(inits[node.input[1]])
                if scale.size > 1:
                    per_channel_weights += 1
                else:
                    per_tensor_weights += 1
    names = {TensorProto.INT8: "int8", TensorProto.UINT8: "uint8", TensorProto.INT32: "int32"}
    return {
        "quantize_linear": quantize,
        "dequantize_linear": dequantize,
        "zero_point_types": sorted(names.get(t, str(t)) for t in elem_types),
        "nonzero_zero_points": zero_points_nonzero,
        "per_channel_weights": per_channel_weights,
        "per_tensor_weights": per_tensor_weights,
    }


def optimized_graph(path: str | os.PathLike[str], level: str = "all") -> Any:
    """The graph ONNX Runtime's CPU provider actually runs (``SessionOptions.optimized_model_filepath``)."""
    import onnx

    from ..runtime.backends.onnxruntime_backend import create_session

    with tempfile.TemporaryDirectory(prefix="han-optimized-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        create_session(path, optimization=level, optimized_model_path=optimized)
        return onnx.load(str(optimized))


def float_convs(model: Any) -> list[str]:
    """Names of the float convolutions in a (typically ORT-optimised) graph; integer convs are QLinearConv/ConvInteger."""
    return [n.name for n in model.graph.node if n.op_type in CONV_OPS]


def unexpected_float_convs(optimized: Any, kept: Iterable[str]) -> list[str]:
    """Float convs of an optimised graph beyond the deliberately ``kept`` ones (empty when there are none).

    Kept convs are float by construction, so the count decides. ONNX Runtime renames nodes it rewrites
    (e.g. ``<tensor>_nchwc``), so names only point at the likely culprits: those not starting with a
    kept name, else every float conv.
    """
    kept = list(kept)
    found = float_convs(optimized)
    if len(found) <= len(kept):
        return []
    return [n for n in found if not any(n.startswith(k) for k in kept)] or found
