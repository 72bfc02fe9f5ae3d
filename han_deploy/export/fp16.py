"""FP16 ONNX: half-precision weights and compute with float32 inputs and outputs (the GPU artifact).

On an x86 CPU ONNX Runtime has no FP16 conv and inserts casts, so this model is slower there;
it is checked on the CPU for accuracy only (docs/export.md) and built into an FP16 TensorRT engine.
"""

from __future__ import annotations

import os
from pathlib import Path

from .graph_checks import topological_sort
from .onnx_export import save_derived


def convert_fp16(fp32_path: str | os.PathLike[str], out_path: str | os.PathLike[str], keep_io_types: bool = True) -> Path:
    """Write the FP16 version of ``fp32_path`` to ``out_path`` (temporary name, then rename).

    ``keep_io_types`` keeps the ``images`` input and ``embeddings`` output in float32, so callers feed
    the same arrays to every precision. The metadata (preprocessing contract) is carried over.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out_path = Path(out_path)
    model = onnx.load(str(fp32_path))
    half = convert_float_to_float16(model, keep_io_types=keep_io_types, disable_shape_infer=False)
    topological_sort(half)  # the converter appends its input/output casts at the end of the node list
    return save_derived(half, model, out_path, precision="fp16")
