"""INT8 with an FP16 body: the TensorRT-flavour Q/DQ ONNX with its unquantized layers in float16.

Why (docs/export.md "INT8 with an FP16 body"): a strongly typed TensorRT network computes every layer
in the type its ONNX tensors carry. In ``model.int8.onnx`` every DequantizeLinear writes float32, so
whatever is not an INT8 layer (the stem and soft-spatial convs, ReLU, attention, GridSample, the
residual sums, the INT8 convs' outputs) runs in FP32. :func:`convert_int8_fp16` rewrites it:

* opset 19, the first whose QuantizeLinear/DequantizeLinear take float16 scales (a DQ's output has
  its scale's type), reached with ``onnx.version_converter`` (e.g. ReduceMean's axes become an input);
* the Q/DQ placement, int8 types, zero points and axes unchanged; scales, float weights and biases in
  float16 (ONNX Runtime's float16 converter, the one behind ``model.fp16.onnx``), so each DQ writes
  float16 and each Q reads float16;
* kept in float32 (:func:`float32_nodes`): the crop-grid arithmetic and the embedding tail (region
  coordinates and the L2-normalised output: tiny compute), every ReduceMean (sums of up to a few
  hundred values) and the reshapes between them; Casts at the borders, float32 ``images`` and
  ``embeddings``.

Verified here (ONNX Runtime CPU, tests/test_int8_fp16_body.py): the structure
(:func:`precision_problems`, :func:`qdq_placement`), the ONNX checker and strict type inference, that
ONNX Runtime's CPU provider runs it (it runs the float16 layers it has no kernel for through casts it
inserts) and stays close to ``model.int8.onnx``; han-export gates it like the other artifacts.
**Not verified** (no GPU or TensorRT here): that TensorRT parses it, runs those layers in FP16, or is
faster for it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import numpy as np

from ..config import METADATA_KEY
from .graph_checks import kept_float_nodes, topological_sort
from .onnx_export import save_derived

MIXED_OPSET = 19  # first opset with float16 Q/DQ scales
FLOAT32_GROUPS = ("crop-grid", "embedding-tail")  # of graph_checks.kept_float_nodes
FLOAT32_OPS = frozenset({"ReduceMean"})
_MOVE_OPS = frozenset({"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity"})
_FLOAT16_NORMAL_MIN = float(np.finfo(np.float16).tiny)  # 6.1e-5: scales below lose precision in float16
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def float32_nodes(model: Any) -> dict[str, str]:
    """Nodes of the INT8 model that stay float32, each with the reason.

    ``crop-grid`` / ``embedding-tail``: as in INT8 (graph_checks.kept_float_nodes), cheap and where
    precision is the point; ``reduction``: ReduceMean (attention and global pooling sum up to a few
    hundred values); ``float32-move``: a reshape-like node of a float32 tensor (no arithmetic; keeping
    it float32 saves a round trip through float16 between two float32 nodes).
    """
    kept = {name: why for name, why in kept_float_nodes(model).items() if why in FLOAT32_GROUPS}
    producers = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:  # topologically sorted: a move comes after its producer
        if node.op_type in FLOAT32_OPS:
            kept.setdefault(node.name, "reduction")
        elif node.op_type in _MOVE_OPS and node.input[0] in producers and producers[node.input[0]].name in kept:
            kept.setdefault(node.name, "float32-move")
    return kept


def convert_int8_fp16(int8_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the FP16-body version of the TensorRT-flavour INT8 model ``int8_path`` to ``out_path``; return a report.

    The report (for the manifest): ``opset``, ``float32_nodes`` (count per reason), ``casts`` (Cast nodes
    at float16/float32 borders) and ``subnormal_scales`` (Q/DQ scales below float16's normal range).
    Metadata is carried over with ``precision=int8``, ``int8_flavour=tensorrt-fp16`` and the new opset.
    """
    import onnx
    from onnx import version_converter
    from onnxruntime.transformers.float16 import convert_float_to_float16

    source = onnx.load(str(int8_path))
    kept = float32_nodes(source)
    opset = max(MIXED_OPSET, _default_opset(source))
    model = version_converter.convert_version(source, opset) if opset > _default_opset(source) else source
    half = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=[], node_block_list=sorted(kept), disable_shape_infer=False
    )
    _drop_float16_round_trips(half)
    topological_sort(half)  # the converter appends its casts at the end of the node list
    del half.graph.value_info[:]  # stale after the rewiring; strict inference rebuilds and checks every type
    half = onnx.shape_inference.infer_shapes(half, check_type=True, strict_mode=True)
    problems = precision_problems(half, kept)
    if problems:
        raise ValueError(f"{int8_path}: float16 body not as designed: {'; '.join(problems[:5])}")
    _set_contract_opset(source, opset)
    save_derived(half, source, out_path, precision="int8", int8_flavour="tensorrt-fp16")
    return {
        "opset": opset,
        "float32_nodes": dict(Counter(kept.values())),
        "casts": sum(n.op_type == "Cast" for n in half.graph.node),
        "subnormal_scales": _subnormal_scales(half),
    }


def _default_opset(model: Any) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _drop_float16_round_trips(model: Any) -> None:
    """Let float32 readers read float32 tensors directly where the converter sent them through float16 and back.

    ONNX Runtime's converter casts every output of a kept-float32 node to float16 and every float16 input
    of one back to float32, so between two float32 nodes the tensor is rounded to float16 for nothing.
    The Cast that writes a graph output is kept, reading the float32 tensor (an exact no-op cast).
    """
    from onnx import TensorProto

    graph = model.graph
    float32 = {v.name for v in (*graph.input, *graph.value_info) if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    producers = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        down = producers.get(node.input[0]) if _is_cast(node, TensorProto.FLOAT) else None
        if down is None or not _is_cast(down, TensorProto.FLOAT16) or down.input[0] not in float32:
            continue
        if node.output[0] in outputs:
            node.input[0] = down.input[0]
        else:
            for reader in graph.node:
                reader.input[:] = [down.input[0] if name == node.output[0] else name for name in reader.input]
    _prune_unread_casts(model)


def _is_cast(node: Any, to: int) -> bool:
    return node.op_type == "Cast" and any(a.name == "to" and a.i == to for a in node.attribute)


def _prune_unread_casts(model: Any) -> None:
    graph = model.graph
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in read]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def _float_types(model: Any) -> dict[str, int]:
    """Element type of every float16/float32 tensor (inputs, outputs, value_info, initializers)."""
    from onnx import TensorProto

    floats = (TensorProto.FLOAT, TensorProto.FLOAT16)
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({t.name: t.data_type for t in graph.initializer})
    return {name: t for name, t in types.items() if t in floats}


def precision_problems(model: Any, float32: dict[str, str] | set[str]) -> list[str]:
    """Where the graph departs from the design: float32 in the float16 body, or float16 in a kept-float32 node.

    Every node outside ``float32`` (Q/DQ included: scale, Q input and DQ output) reads and writes float16
    only, except Casts and Resize's float32-only ``roi``/``scales``; every node in ``float32`` reads and
    writes float32 only. ``model`` needs its types inferred (``onnx.shape_inference``). Empty when as designed.
    """
    from onnx import TensorProto

    types = _float_types(model)
    names = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16"}
    problems = []
    for node in model.graph.node:
        if node.op_type == "Cast":
            continue
        want = TensorProto.FLOAT if node.name in float32 else TensorProto.FLOAT16
        tensors = [t for k, t in enumerate(node.input) if not (node.op_type == "Resize" and k in (1, 2))]
        wrong = [t for t in (*tensors, *node.output) if t in types and types[t] != want]
        if wrong:
            problems.append(f"{node.op_type} {node.name!r}: {', '.join(wrong)} not {names[want]}")
    return problems


def qdq_placement(model: Any) -> set[tuple[str, int]]:
    """(node, input index) of every input read through a DequantizeLinear, Q/DQ nodes excluded: where INT8 goes in."""
    producers = {out: node for node in model.graph.node for out in node.output}
    return {
        (node.name, k)
        for node in model.graph.node
        if node.op_type not in _QDQ
        for k, name in enumerate(node.input)
        if name in producers and producers[name].op_type == "DequantizeLinear"
    }


def _subnormal_scales(model: Any) -> int:
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    scales = {n.input[1] for n in model.graph.node if n.op_type in _QDQ and n.input[1] in inits}
    return sum(int((np.abs(numpy_helper.to_array(inits[s])) < _FLOAT16_NORMAL_MIN).sum()) for s in scales)


def _set_contract_opset(model: Any, opset: int) -> None:
    """Record ``opset`` in ``model``'s contract metadata (JSON entry and flat key), which save_derived carries over."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = json.dumps({**json.loads(prop.value), "opset": opset}, sort_keys=True)
        elif prop.key == "opset":
            prop.value = str(opset)
