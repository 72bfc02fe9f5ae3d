"""INT8 Q/DQ ONNX in two flavours, with ONNX Runtime's ``quantize_static`` (QDQ format).

Why two (docs/export.md "INT8 flavours"): TensorRT wants symmetric signed INT8, placed where its
fusions expect it; ONNX Runtime's CPU kernels want uint8 activations around every op it runs in
integer. So:

* ``tensorrt`` (``model.int8.onnx``): Q/DQ only on the inputs of the weighted layers (Conv, Gemm,
  MatMul) and of residual Adds, as TensorRT's explicit-quantization guide places them: a conv's
  output is never quantized (Conv + ReLU + the next layer's Q fuse), and nothing else (ReLU,
  Sigmoid, Mul, ReduceMean, Flatten, GridSample, the kept-float nodes) reads a dequantized tensor.
  Symmetric int8 activations, per-channel symmetric weights (conv axis 0) as float behind a
  Q -> DQ pair, float biases: how TensorRT's parser takes explicit quantization;
* ``cpu`` (``model.int8-cpu.onnx``): uint8 for tensors that are non-negative by construction (zero
  point 0), int8 symmetric for the few signed ones (soft-attention maps), int8 per-channel weights,
  Q/DQ around every op ONNX Runtime can run in integer; the channels between consecutive convs are
  first equalized (:mod:`~han_deploy.export.equalize`) and the attention means rewritten as ops it
  runs in integer (:mod:`~han_deploy.export.integer_means`).

Both keep the stem conv, the crop-grid arithmetic and the embedding tail in float
(:func:`~han_deploy.export.graph_checks.kept_float_nodes`) and split shared DequantizeLinear nodes.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import equalize, graph_checks, integer_means
from .onnx_export import save_derived

FLAVOURS = ("tensorrt", "cpu")
KEEP_FLOAT = ("stem", "soft-spatial", "crop-grid", "embedding-tail")  # see graph_checks.kept_float_nodes
CALIB_METHODS = ("percentile", "minmax", "entropy")


@dataclass
class QuantizeReport:
    """What :func:`quantize_int8` did: flavour, calibration, what stayed float, Q/DQ facts."""

    flavour: str
    calib_method: str
    calib_size: int
    kept_float: dict[str, str]
    split_dequantize: int
    kept_convs: list[str] = field(default_factory=list)
    qdq: dict[str, Any] = field(default_factory=dict)
    rewritten_means: dict[str, int] = field(default_factory=dict)  # CPU flavour: integer_means.rewrite_means
    equalized: dict[str, Any] = field(default_factory=dict)  # CPU flavour: equalize.equalize_relu_pairs

    def to_dict(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for reason in self.kept_float.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        return {
            "flavour": self.flavour,
            "calib_method": self.calib_method,
            "calib_size": self.calib_size,
            "kept_float_nodes": reasons,
            "kept_float_convs": sorted(self.kept_convs),
            "split_dequantize": self.split_dequantize,
            "qdq": self.qdq,
            "rewritten_means": self.rewritten_means,
            "equalized": self.equalized,
        }


@contextmanager
def _float64_histograms() -> Iterator[None]:
    """Let ONNX Runtime's histogram calibrators (percentile, entropy) build histograms in float64.

    They call ``np.histogram`` on float32 activations, and numpy refuses (``Too many bins for data
    range``) when a tensor's values span fewer than 2048 float32 steps, e.g. a soft-attention sigmoid
    that sits at 0.5 for every calibration crop. Measured on a 2-epoch checkpoint; float64 bins fix it.
    """
    from onnxruntime.quantization import calibrate

    real = calibrate.np

    class _Numpy:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        @staticmethod
        def histogram(a: Any, *args: Any, **kwargs: Any) -> Any:
            # bins in float64, edges back in the data's dtype: ONNX Runtime's TensorData takes float16/32 only
            counts, edges = real.histogram(real.asarray(a, dtype=real.float64), *args, **kwargs)
            return counts, edges.astype(real.float32)

    calibrate.np = _Numpy()  # type: ignore[assignment]
    try:
        yield
    finally:
        calibrate.np = real


def _calibrate_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    try:
        return {
            "percentile": CalibrationMethod.Percentile,
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
        }[name]
    except KeyError:
        raise ValueError(f"calibration method must be one of {CALIB_METHODS}, got {name!r}") from None


def _cpu_overrides(model: Any) -> dict[str, Any]:
    """CPU flavour: uint8 with zero point 0 for non-negative tensors, symmetric int8 for the signed ones."""
    from onnxruntime.quantization import QuantType

    nonneg = graph_checks.nonnegative_tensors(model)
    activations = {o for n in model.graph.node for o in n.output if o} - {o.name for o in model.graph.output}
    signed = activations - nonneg
    # an integer conv reads and writes one type: a conv with a signed output reads int8 too
    # (a conv followed only by a ReLU writes the ReLU's output: the ReLU folds into the uint8 range)
    relu_of = graph_checks.sole_relu_consumers(model)
    for node in model.graph.node:
        if node.op_type in graph_checks.CONV_OPS and relu_of.get(node.output[0], node.output[0]) in signed:
            signed.add(node.input[0])
    signed -= set(relu_of)
    return {name: [{"quant_type": QuantType.QInt8, "symmetric": True}] for name in sorted(signed & activations)}


def _quantizer_settings(model: Any, flavour: str, kept: dict[str, str]) -> tuple[list[str] | None, dict[str, Any]]:
    """``nodes_to_quantize`` (None: every op ONNX Runtime can quantize) and ``extra_options`` for ``flavour``."""
    extra: dict[str, Any] = {
        "WeightSymmetric": True,
        "ActivationSymmetric": flavour == "tensorrt",
        "DedicatedQDQPair": False,  # split below, after the fact, only where a DQ really is shared
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},  # FC weights (K, N): one scale per output column
    }
    if flavour == "cpu":
        extra["TensorQuantOverrides"] = _cpu_overrides(model)
        return None, extra
    # TensorRT: Q/DQ on the inputs of weighted layers and residual Adds only, never on their outputs;
    # float weights behind a Q -> DQ pair (TensorRT folds it) and float biases (it has no INT32 DequantizeLinear)
    extra.update(
        AddQDQPairToWeight=True,
        QuantizeBias=False,
        OpTypesToExcludeOutputQuantization=sorted(graph_checks.CONV_OPS | graph_checks.FC_OPS | {"Add"}),
    )
    return graph_checks.tensorrt_quantized_nodes(model, kept), extra


def quantize_int8(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    reader: Any,
    flavour: str = "tensorrt",
    calib_method: str = "percentile",
    percentile: float = 99.99,
    keep_float: tuple[str, ...] = KEEP_FLOAT,
    extra_float: tuple[str, ...] = (),
    rewrite_means: bool = True,
    equalize_channels: bool = True,
) -> QuantizeReport:
    """Quantize the FP32 ONNX at ``fp32_path`` into ``out_path`` (written via a temporary name).

    ``reader`` is an ONNX Runtime ``CalibrationDataReader`` (e.g. :class:`CropCalibrationReader`).
    Metadata (the preprocessing contract) is carried over, with ``precision`` and ``int8_flavour`` added.
    ``keep_float`` names the groups of nodes left in float (all by default; fewer only for ablations);
    ``extra_float`` lists further node names to leave in float (the sensitivity pass, ablations).
    ``rewrite_means=False`` leaves the CPU flavour's attention means as float ReduceMean (speed ablation);
    ``equalize_channels=False`` skips its conv -> ReLU -> conv channel equalization (accuracy ablation).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if flavour not in FLAVOURS:
        raise ValueError(f"INT8 flavour must be one of {FLAVOURS}, got {flavour!r}")
    method = _calibrate_method(calib_method)
    out_path = Path(out_path)
    model = onnx.load(str(fp32_path))
    graph_checks.fold_constant_identities(model)  # --no-simplify graphs
    graph_checks.unshare_initializers(model)
    equalized = equalize.equalize_relu_pairs(model, reader) if flavour == "cpu" and equalize_channels else None
    means = integer_means.rewrite_means(model) if flavour == "cpu" and rewrite_means else None
    kept = {n: r for n, r in graph_checks.kept_float_nodes(model).items() if r in keep_float}
    kept.update({name: "sensitivity" for name in extra_float if name not in kept})
    nodes_to_quantize, extra = _quantizer_settings(model, flavour, kept)
    if means is not None:
        extra["TensorQuantOverrides"].update(integer_means.weight_overrides(model, means))
    extra["CalibPercentile"] = percentile
    with tempfile.TemporaryDirectory(prefix="han-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        onnx.save(model, str(prepared))
        staged = Path(tmp) / "quantized.onnx"
        reader.rewind()
        # ONNX Runtime's calibrators print progress to stdout, where han-export --json writes the manifest
        with _float64_histograms(), contextlib.redirect_stdout(sys.stderr):
            quantize_static(
                str(prepared),
                str(staged),
                reader,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8 if flavour == "tensorrt" else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                nodes_to_quantize=nodes_to_quantize,
                nodes_to_exclude=sorted(kept),
                calibrate_method=method,
                extra_options=extra,
            )
        quantized = onnx.load(str(staged))
    if nodes_to_quantize is None:
        graph_checks.read_shapes_after_quantize(quantized)
    else:  # TensorRT: whatever else read a quantized tensor reads the float one again
        readers = graph_checks.float_readers_of_qdq(quantized, nodes_to_quantize)
        graph_checks.bypass_qdq(quantized, readers)
    split = graph_checks.split_shared_dequantize(quantized)
    save_derived(quantized, model, out_path, precision="int8", int8_flavour=flavour)
    kept_convs = [n.name for n in model.graph.node if n.name in kept and n.op_type in graph_checks.CONV_OPS]
    rewritten = means.counts() if means is not None else {}
    balanced = equalized.to_dict() if equalized is not None else {}
    summary = graph_checks.qdq_summary(quantized)
    return QuantizeReport(flavour, calib_method, len(reader), kept, split, kept_convs, summary, rewritten, balanced)
