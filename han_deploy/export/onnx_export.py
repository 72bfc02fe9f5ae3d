"""FP32 ONNX export of a HAN: dynamic batch axis, fixed tensor names, contract in ``metadata_props``."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from ..config import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, contract_metadata

MIN_OPSET = 16  # GridSample enters the default domain at opset 16


def export_onnx(model: Any, path: str | os.PathLike[str], opset: int = 17, simplify: bool = True, **metadata: Any) -> Path:
    """Export ``model`` (eval mode, embeddings output) to ``path`` and return it.

    The file is written under a temporary name and renamed, so a failure leaves nothing half-written.
    Extra keyword arguments are added to the contract (e.g. ``flops=...``).
    """
    import onnx
    import torch

    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: HAN needs GridSample, which ONNX has from opset {MIN_OPSET}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    model = model.eval()
    h, w = model.cfg.preprocess.input_size
    dummy = torch.zeros(2, 3, h, w)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                model,
                (dummy,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        if simplify:
            import onnxslim

            proto = onnxslim.slim(proto)
        _save_checked(proto, contract_metadata(model.cfg, opset=opset, **metadata), path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_derived(proto: Any, source: Any, out_path: str | os.PathLike[str], **props: str) -> Path:
    """Write ``proto`` (e.g. the FP16 or INT8 version of ``source``) with ``source``'s contract carried over.

    ``props`` replace the same-named metadata keys, in the flat entries and inside the contract JSON,
    so a derived model never claims its parent's precision. Checked, then written atomically.
    """
    meta: dict[str, str] = {}
    for prop in source.metadata_props:
        value = prop.value
        if prop.key == METADATA_KEY:
            value = json.dumps({**json.loads(value), **props}, sort_keys=True)
        meta[prop.key] = value
    return _save_checked(proto, {**meta, **props}, out_path)


def _save_checked(proto: Any, metadata: dict[str, str], path: str | os.PathLike[str]) -> Path:
    """Replace ``proto``'s metadata, run the ONNX checker, and write it to ``path`` atomically (temp name, rename)."""
    import onnx

    path = Path(path)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "han-deploy"
    onnx.checker.check_model(proto)
    tmp = path.with_name(path.name + ".tmp")
    try:
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
