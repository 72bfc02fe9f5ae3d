"""Export stage: ONNX (FP32, FP16, INT8 Q/DQ), TensorRT engines, each gated by a parity check."""

from .onnx_export import MIN_OPSET, export_onnx

__all__ = ["MIN_OPSET", "export_onnx"]
