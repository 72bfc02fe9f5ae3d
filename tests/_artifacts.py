"""Model artifacts for the integrity tests: an ONNX file changed after export, and a manifest recording a sha256."""

from __future__ import annotations

import json
from pathlib import Path

from han_deploy.runtime.backends import sha256_file


def tampered_copy(onnx_path: Path, folder: Path) -> Path:
    """A copy of the ONNX file with one weight of one float initializer changed, under the same name."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(onnx_path))
    init = next(i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT)
    weights = numpy_helper.to_array(init).copy()
    weights.flat[0] += 0.5
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / onnx_path.name
    onnx.save(proto, str(out))
    return out


def write_manifest(folder: Path, onnx_path: Path) -> Path:
    """A han-export style manifest beside ``folder``'s model, recording ``onnx_path``'s sha256."""
    entry = {"file": onnx_path.name, "bytes": onnx_path.stat().st_size, "sha256": sha256_file(onnx_path)}
    path = folder / "manifest.json"
    path.write_text(json.dumps({"artifacts": [entry]}))
    return path
