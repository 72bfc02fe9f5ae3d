"""The CPU INT8 flavour's rewrite of attention means: same function, ops ONNX Runtime quantizes, nothing else touched."""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from han_deploy.export import graph_checks  # noqa: E402
from han_deploy.export.integer_means import rewrite_means  # noqa: E402

# name: (axes, keepdims attribute or None for the default 1, output shape for x (N, 6, 5, 4))
MEANS = {
    "hw": ([-1, -2], None, [None, 6, 1, 1]),
    "c": ([1], 1, [None, 1, 5, 4]),
    "flat": ([2, 3], 0, [None, 6]),
    "h": ([2], 1, [None, 6, 1, 4]),
}


def _means_graph(opset: int, channels: int | str = 6, extra_init: str | None = None) -> onnx.ModelProto:
    """x -> ReLU -> the ReduceMeans of MEANS (axes as attribute before opset 18, as input from 18)."""
    h = onnx.helper
    f = onnx.TensorProto.FLOAT
    x = h.make_tensor_value_info("x", f, [None, channels, 5, 4])
    outs = [h.make_tensor_value_info(n, f, shape) for n, (_, _, shape) in MEANS.items()]
    inits = [h.make_tensor(extra_init, f, [1], [0.5])] if extra_init else []
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu")]
    for name, (axes, keep, _) in MEANS.items():
        kwargs = {} if keep is None else {"keepdims": keep}
        if opset >= 18:
            inits.append(h.make_tensor(f"{name}_axes", onnx.TensorProto.INT64, [len(axes)], axes))
            nodes.append(h.make_node("ReduceMean", ["r", f"{name}_axes"], [name], name=f"mean_{name}", **kwargs))
        else:
            nodes.append(h.make_node("ReduceMean", ["r"], [name], name=f"mean_{name}", axes=axes, **kwargs))
    if extra_init:
        outs.append(h.make_tensor_value_info("extra", f, [1]))
        nodes.append(h.make_node("Identity", [extra_init], ["extra"], name="keep_extra"))
    graph = h.make_graph(nodes, "g", [x], outs, inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=8)


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


@pytest.mark.parametrize("opset", [17, 18])
def test_kept_dims_means_become_pool_and_conv_with_the_same_outputs(opset: int) -> None:
    model = _means_graph(opset)
    x = np.random.default_rng(0).standard_normal((3, 6, 5, 4), dtype=np.float32)
    before = _run(model, x)
    done = rewrite_means(model)
    assert (done.pools, list(done.convs)) == (["mean_hw"], ["mean_c"])
    onnx.checker.check_model(model, full_check=True)
    ops = {n.name: n.op_type for n in model.graph.node}
    assert ops == {
        "relu": "Relu",
        "mean_hw": "GlobalAveragePool",
        "mean_c": "Conv",
        "mean_flat": "ReduceMean",
        "mean_h": "ReduceMean",
    }
    assert {t.name for t in model.graph.initializer} == {done.convs["mean_c"]} | (
        {"flat_axes", "h_axes"} if opset >= 18 else set()
    )  # the rewritten means' axes inputs are gone
    for a, b in zip(before, _run(model, x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_a_symbolic_channel_count_leaves_the_channel_mean_alone() -> None:
    model = _means_graph(17, channels="C")
    done = rewrite_means(model)
    assert (done.pools, done.convs) == (["mean_hw"], {})


def test_the_new_weight_does_not_take_an_existing_name() -> None:
    model = _means_graph(17, extra_init="mean_c/mean_weight")
    done = rewrite_means(model)
    assert done.convs["mean_c"] != "mean_c/mean_weight"
    kept = next(t for t in model.graph.initializer if t.name == "mean_c/mean_weight")
    assert list(kept.dims) == [1]


def test_the_channel_mean_conv_is_non_negative_on_a_non_negative_input() -> None:
    model = _means_graph(17)
    rewrite_means(model)
    assert "c" in graph_checks.nonnegative_tensors(model)  # so the CPU flavour keeps reading the ReLU output as uint8


@pytest.mark.parametrize("negative", ["weight", "bias"])
def test_a_conv_with_a_negative_constant_is_not_non_negative(negative: str) -> None:
    model = _means_graph(17)
    done = rewrite_means(model)
    weight = next(t for t in model.graph.initializer if t.name == done.convs["mean_c"])
    if negative == "weight":
        values = onnx.numpy_helper.to_array(weight).copy()
        values[0, 2] = -0.1
        weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    else:
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([-0.1], np.float32), "bias"))
        next(n for n in model.graph.node if n.name == "mean_c").input.append("bias")
    assert "c" not in graph_checks.nonnegative_tensors(model)
