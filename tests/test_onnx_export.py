"""ONNX export at opset 17 with a dynamic batch axis matches PyTorch in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from han_deploy.config import INPUT_NAME, OUTPUT_NAME, read_contract  # noqa: E402
from han_deploy.export import export_onnx  # noqa: E402
from han_deploy.model import create_model  # noqa: E402


@pytest.mark.parametrize("variant", ["small", "medium", "large"])
def test_onnx_matches_pytorch_at_several_batches(variant: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(variant).eval()
    path = export_onnx(model, tmp_path / "m.onnx", opset=17)
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 17
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].name == INPUT_NAME and sess.get_outputs()[0].name == OUTPUT_NAME
    for batch in (1, 3, 8):
        x = torch.randn(batch, 3, 160, 64)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {INPUT_NAME: x.numpy()})[0]
        assert got.shape == (batch, 1024)
        assert np.abs(got - ref).max() <= 1e-4


def test_contract_round_trips_through_metadata(tmp_path: Path) -> None:
    model = create_model("small", cail=False)
    path = export_onnx(model, tmp_path / "m.onnx", flops=123)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    cfg, contract = read_contract(meta)
    assert cfg == model.cfg and contract["flops"] == 123 and contract["embedding_dim"] == 1024


def test_opset_below_16_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="GridSample"):
        export_onnx(create_model("small"), tmp_path / "m.onnx", opset=15)
    assert list(tmp_path.iterdir()) == []
