"""Conv -> ReLU -> conv channel equalization: same function, every live channel on the widest one's range."""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from han_deploy.export.equalize import MIN_SCALE, channel_ranges, equalize_relu_pairs, relu_pairs  # noqa: E402

C = 6
GAINS = np.array([1.0, 0.5, 0.1, 2.0, 1e-4, 0.0], np.float32)  # channel 4 nearly silent, channel 5 dead


class _Reader:
    """The calibration reader protocol over fixed batches."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self.batches, self.i = batches, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        self.i += 1
        return {"x": self.batches[self.i - 1]} if self.i <= len(self.batches) else None

    def rewind(self) -> None:
        self.i = 0


def _pair_graph(
    second_reader: bool = False, group: int = C, relu_out: bool = False, bias: bool = True, chain: bool = False
) -> onnx.ModelProto:
    """x -> 1x1 conv (channel gains GAINS) -> ReLU -> 3x3 conv of ``group`` groups (C: depthwise, 1: dense) -> y.

    ``second_reader``: a Sigmoid also reads the ReLU output; ``relu_out``: the ReLU output is a graph output too;
    ``bias=False``: the first conv has none; ``chain``: y goes on through a ReLU and a dense 1x1 conv to z.
    """
    h, f = onnx.helper, onnx.TensorProto.FLOAT
    rng = np.random.default_rng(1)
    w1 = np.abs(rng.standard_normal((C, 3, 1, 1))).astype(np.float32) * GAINS[:, None, None, None]
    b1 = (rng.standard_normal(C).astype(np.float32) * 0.1 + 0.2) * GAINS
    w2 = rng.standard_normal((C, C // group, 3, 3)).astype(np.float32)
    b2 = rng.standard_normal(C).astype(np.float32)
    w3 = rng.standard_normal((4, C, 1, 1)).astype(np.float32)
    arrays = ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (w3, "w3"))
    inits = [onnx.numpy_helper.from_array(a, n) for a, n in arrays if bias or n != "b1"]
    nodes = [
        h.make_node("Conv", ["x", "w1", "b1" if bias else ""], ["c1"], name="conv1"),
        h.make_node("Relu", ["c1"], ["r"], name="relu"),
        h.make_node("Conv", ["r", "w2", "b2"], ["y"], name="dw", group=group, pads=[1, 1, 1, 1]),
    ]
    outs = [h.make_tensor_value_info("z" if chain else "y", f, None)]
    if chain:
        nodes += [h.make_node("Relu", ["y"], ["r2"], name="relu2"), h.make_node("Conv", ["r2", "w3"], ["z"], name="conv3")]
    if second_reader:
        nodes.append(h.make_node("Sigmoid", ["r"], ["s"], name="side"))
        outs.append(h.make_tensor_value_info("s", f, None))
    if relu_out:
        outs.append(h.make_tensor_value_info("r", f, None))
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", f, [None, 3, 5, 4])], outs, inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


def _batches() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.abs(rng.standard_normal((4, 3, 5, 4))).astype(np.float32) for _ in range(3)]


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([model.graph.output[0].name], {"x": x})[0]


@pytest.mark.parametrize(("group", "bias"), [(C, True), (1, True), (C, False)])
def test_equalized_pair_keeps_the_function_and_lifts_every_live_channel(group: int, bias: bool) -> None:
    model, reader = _pair_graph(group=group, bias=bias), _Reader(_batches())
    x = _batches()[1]
    before_y, before_r = _run(model, x), channel_ranges(model, ["r"], reader)["r"]
    done = equalize_relu_pairs(model, reader)
    assert done.pairs == {"dw": "conv1"} and done.depthwise == (group == C)
    np.testing.assert_allclose(_run(model, x), before_y, rtol=1e-5, atol=1e-5)
    after = channel_ranges(model, ["r"], reader)["r"]
    widest = before_r.max()
    np.testing.assert_allclose(after[:4], widest, rtol=1e-5)  # each live channel now spans the widest one's range
    np.testing.assert_allclose(after[4], before_r[4] / MIN_SCALE, rtol=1e-5)  # the near-silent one: lifted 100x only
    assert after[5] == before_r[5] == 0.0  # the dead one is left alone


def test_chained_pairs_are_each_equalized_against_the_ranges_measured_before_any_change() -> None:
    model, reader = _pair_graph(chain=True), _Reader(_batches())
    x = _batches()[2]
    before_z, before = _run(model, x), channel_ranges(model, ["r", "r2"], reader)
    done = equalize_relu_pairs(model, reader)
    assert done.pairs == {"dw": "conv1", "conv3": "dw"} and done.depthwise == 1  # dw: second of one, first of the other
    np.testing.assert_allclose(_run(model, x), before_z, rtol=1e-5, atol=1e-5)
    after = channel_ranges(model, ["r", "r2"], reader)
    for t in ("r", "r2"):
        live = before[t] > 0
        assert np.all(after[t][live] >= before[t][live] * (1 - 1e-5)) and after[t].max() == pytest.approx(before[t].max())
    np.testing.assert_allclose(after["r2"][before["r2"] > before["r2"].max() * MIN_SCALE], before["r2"].max(), rtol=1e-5)


@pytest.mark.parametrize("variant", [{"second_reader": True}, {"relu_out": True}, {"group": 2}])
def test_no_pair_where_the_rescaling_would_not_be_exact(variant: dict) -> None:
    """Another reader (or a graph output) would see the rescaled channels; a grouped conv mixes a group's channels."""
    model = _pair_graph(**variant)
    assert relu_pairs(model) == []
    weights = {t.name: onnx.numpy_helper.to_array(t).copy() for t in model.graph.initializer}
    assert equalize_relu_pairs(model, _Reader(_batches())).pairs == {}
    for t in model.graph.initializer:
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(t), weights[t.name])
