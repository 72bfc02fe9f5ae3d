"""Export stage: ONNX (FP32, FP16, INT8 Q/DQ), TensorRT engines, each gated by a parity check.

``run_export(ExportOptions(...))`` is what ``han-export`` runs; the building blocks live in their own
modules (``fp16``, ``quantize``, ``calibration``, ``graph_checks``, ``parity``, ``tensorrt_build``,
``manifest``, ``deepstream``). See docs/export.md.
"""

from .exporter import ExportError, ExportOptions, RefusedArtifactsError, run_export
from .fp16 import convert_fp16
from .onnx_export import MIN_OPSET, export_onnx
from .parity import ParityGateError
from .quantize import quantize_int8

__all__ = [
    "MIN_OPSET",
    "ExportError",
    "ExportOptions",
    "ParityGateError",
    "RefusedArtifactsError",
    "convert_fp16",
    "export_onnx",
    "quantize_int8",
    "run_export",
]
