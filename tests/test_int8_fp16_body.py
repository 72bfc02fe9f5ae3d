"""model.int8-fp16.onnx: the TensorRT INT8 Q/DQ model with an FP16 body, on han_small with fresh weights.

What is checked here is what ONNX and ONNX Runtime's CPU provider can show: types, Q/DQ placement,
opset, metadata, that it runs, that it stays close to model.int8.onnx, and han-export's wiring.
What TensorRT makes of it (FP16 kernels, speed) is not testable without a GPU (docs/export.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, numpy_helper  # noqa: E402

from han_deploy.config import read_contract  # noqa: E402
from han_deploy.export import calibration, graph_checks, parity  # noqa: E402
from han_deploy.export.mixed_precision import (  # noqa: E402
    MIXED_OPSET,
    convert_int8_fp16,
    float32_nodes,
    precision_problems,
    qdq_placement,
)
from han_deploy.model import create_model, model_config  # noqa: E402

# per-sample cosine of the FP16 body against the FP32 body of the same Q/DQ model, fresh weights
# (measured on 16 synthetic crops: min 0.9990, mean 0.9997; a fresh HAN amplifies small changes, docs/export.md)
MIN_COSINE_VS_INT8 = 0.998
MEAN_COSINE_VS_INT8 = 0.9995


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """(model.int8.onnx, model.int8-fp16.onnx, conversion report) of a fresh han_small, minmax on 4 synthetic crops."""
    import torch

    from han_deploy.export.onnx_export import export_onnx
    from han_deploy.export.quantize import quantize_int8

    folder = tmp_path_factory.mktemp("mixed")
    torch.manual_seed(0)
    fp32 = export_onnx(create_model("small").eval(), folder / "model.onnx")
    reader = calibration.CropCalibrationReader(calibration.synthetic_crops(4), model_config("small").preprocess)
    quantize_int8(fp32, folder / "model.int8.onnx", reader, "tensorrt", "minmax")
    report = convert_int8_fp16(folder / "model.int8.onnx", folder / "model.int8-fp16.onnx")
    return folder / "model.int8.onnx", folder / "model.int8-fp16.onnx", report


def _typed(path: Path) -> Any:
    return onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True)


def test_opset_io_and_metadata(models: tuple[Path, Path, dict[str, Any]]) -> None:
    _, mixed, report = models
    model = onnx.load(str(mixed))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [MIXED_OPSET] == [report["opset"]]
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT  # callers feed every precision the same arrays
    meta = {p.key: p.value for p in model.metadata_props}
    _, contract = read_contract(meta)
    assert meta["precision"] == contract["precision"] == "int8"
    assert meta["int8_flavour"] == contract["int8_flavour"] == "tensorrt-fp16"
    assert contract["opset"] == MIXED_OPSET and meta["opset"] == str(MIXED_OPSET)


def test_body_is_float16_and_only_the_chosen_nodes_stay_float32(models: tuple[Path, Path, dict[str, Any]]) -> None:
    int8, mixed, report = models
    source = onnx.load(str(int8))
    kept = float32_nodes(source)
    groups = graph_checks.kept_float_nodes(source)
    assert {n for n, why in groups.items() if why in ("crop-grid", "embedding-tail")} <= set(kept)
    assert {n.name for n in source.graph.node if n.op_type == "ReduceMean"} <= set(kept)
    assert not {n for n, why in groups.items() if why in ("stem", "soft-spatial")} & set(kept)  # float in INT8, FP16 here
    assert report["float32_nodes"] == {why: list(kept.values()).count(why) for why in set(kept.values())}
    typed = _typed(mixed)
    assert precision_problems(typed, kept) == []
    assert precision_problems(_typed(int8), kept)  # the check sees an FP32 body
    casts = [n for n in typed.graph.node if n.op_type == "Cast"]
    assert len(casts) == report["casts"] and len(casts) < 24  # borders only: no float16 round trip between FP32 nodes


def test_qdq_placement_zero_points_and_float16_scales(models: tuple[Path, Path, dict[str, Any]]) -> None:
    int8, mixed, report = models
    source, model = onnx.load(str(int8)), onnx.load(str(mixed))
    assert qdq_placement(model) == qdq_placement(source) and len(qdq_placement(source)) > 30
    assert graph_checks.quantized_layers(model) == graph_checks.quantized_layers(source)

    def qdq(m: Any) -> dict[str, tuple[str, Any, Any]]:
        inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
        return {
            n.name: (n.op_type, inits[n.input[1]], inits[n.input[2]])
            for n in m.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear")
        }

    before, after = qdq(source), qdq(model)
    assert set(before) == set(after)
    for name, (op, scale, zero) in after.items():
        assert op == before[name][0] and scale.dtype == np.float16 and zero.dtype == np.int8
        np.testing.assert_array_equal(zero, before[name][2])
        np.testing.assert_allclose(scale, before[name][1], rtol=2**-10)  # float16 rounding only
    assert report["subnormal_scales"] == 0


@pytest.mark.parametrize("session", parity.SESSIONS)
def test_onnx_runtime_runs_it_close_to_the_int8_model(models: tuple[Path, Path, dict[str, Any]], session: str) -> None:
    from han_deploy.contract.preprocess import preprocess

    int8, mixed, _ = models
    x = preprocess(calibration.synthetic_crops(7, seed=1), model_config("small").preprocess)
    ref = parity.ort_infer(int8, session=session)(x)
    fp32 = parity.ort_infer(int8.with_name("model.onnx"))(x)
    for batch in (1, 7):
        got = parity.run_batched(parity.ort_infer(mixed, session=session), x, batch)
        assert got.dtype == np.float32 and got.shape == ref.shape and np.isfinite(got).all()
        cos = parity.cosine_rows(got, ref)
        assert cos.min() >= MIN_COSINE_VS_INT8 and cos.mean() >= MEAN_COSINE_VS_INT8
        # against FP32 (what the gate measures) the FP16 body costs next to nothing on top of INT8
        assert parity.cosine_rows(got, fp32).mean() >= parity.cosine_rows(ref, fp32).mean() - 2e-4


@pytest.mark.filterwarnings("ignore:no --checkpoint", "ignore:INT8 is calibrated on SYNTHETIC")
def test_han_export_writes_gates_and_describes_it(tmp_path: Path) -> None:
    from han_deploy.export.exporter import ExportOptions, _triton, run_export

    out = tmp_path / "out"
    opts = ExportOptions(
        variant="small", output=out, precisions=("fp32", "int8-fp16"), calib_data=calibration.SYNTHETIC, calib_size=8
    )
    data = run_export(opts)
    assert {"model.int8.onnx", "model.int8-cpu.onnx", "model.int8-fp16.onnx"} <= {p.name for p in out.iterdir()}
    entry = next(a for a in data["artifacts"] if a["file"] == "model.int8-fp16.onnx")
    assert entry["precision"] == "int8" and entry["int8_flavour"] == "tensorrt-fp16" and entry["gate"] == "int8"
    assert entry["quantization"]["fp16_body"]["opset"] == MIXED_OPSET
    gate = next(r for r in data["parity"]["results"] if r["artifact"] == "model.int8-fp16.onnx")
    assert gate["session"] == "qdq-simulated" and set(gate["reported"]) == {"ort-default"}
    engine = next(e for e in data["engines"] if e["precision"] == "int8-fp16")
    assert engine["source"] == "model.int8-fp16.onnx" and "--onnx=model.int8-fp16.onnx" in engine["trtexec"]
    assert "--stronglyTyped" in engine["trtexec"] and not engine["built"]  # no TensorRT here

    # Triton: the int8-fp16 engine is served as an int8 model named after its source's flavour
    engines = [{"file": f"model.{p}.plan", "precision": p, "source": s, "built": True} for p, s in
               (("int8", "model.int8.onnx"), ("int8-fp16", "model.int8-fp16.onnx"))]  # fmt: skip
    for e in engines:
        (out / e["file"]).write_bytes(b"stand-in plan")
    files = ["model.onnx", "model.int8.onnx", "model.int8-fp16.onnx"]
    repo = out / _triton(out, opts, model_config("small"), files, engines)["repository"]
    names = {p.name for p in repo.iterdir()}
    assert {"han_trt_int8", "han_trt_int8_tensorrt-fp16", "han_onnx_int8_tensorrt-fp16"} <= names


def test_refusing_it_removes_its_stale_copy_and_engine_only(tmp_path: Path) -> None:
    from han_deploy.export.exporter import _publish

    stage, out = tmp_path / "stage", tmp_path / "out"
    stage.mkdir()
    out.mkdir()
    for name in ("model.int8-fp16.onnx", "model.int8-fp16.plan", "model.int8.onnx", "model.int8.plan"):
        (out / name).write_bytes(b"left by an earlier export")
    _publish(stage, out, ["model.int8-fp16.onnx"])
    assert {p.name for p in out.iterdir()} == {"model.int8.onnx", "model.int8.plan"}
