"""han-export end to end on han_small: artifacts, Q/DQ facts, optimised graph, manifest, gate, bad input."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
cv2 = pytest.importorskip("cv2")

from han_deploy.config import INPUT_NAME, OUTPUT_NAME, read_contract  # noqa: E402
from han_deploy.export import calibration, equalize, graph_checks, integer_means, manifest, parity  # noqa: E402
from han_deploy.export.cli import build_parser, main  # noqa: E402
from han_deploy.export.exporter import ExportOptions, run_export  # noqa: E402
from han_deploy.model import create_model, model_config, save_checkpoint  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:no --checkpoint")

ONNX_FILES = ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8-cpu.onnx")


def _crops(n: int, seed: int = 0) -> list[np.ndarray]:
    """Person-like crops without the synthetic generator: smooth colour blobs at varied sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = int(rng.integers(100, 200)), int(rng.integers(40, 90))
        base = rng.integers(0, 255, (4, 2, 3)).astype(np.uint8)
        out.append(cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC))
    return out


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("calib")
    for i, crop in enumerate(_crops(16)):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), crop)
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, calib_dir: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("export")
    opts = ExportOptions(variant="small", output=out, calib_data=calib_dir, calib_size=16, targets=("deepstream",))
    with pytest.warns(UserWarning, match="freshly initialised"):
        data = run_export(opts)
    return out, data


def _no_files(folder: Path) -> bool:
    return not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))


# ---- artifacts ---------------------------------------------------------------------------------


def test_every_onnx_runs_at_batch_1_7_32(exported: tuple[Path, dict]) -> None:
    out, data = exported
    rng = np.random.default_rng(0)
    for name in ONNX_FILES:
        sess = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        assert sess.get_inputs()[0].name == INPUT_NAME and sess.get_outputs()[0].name == OUTPUT_NAME
        assert sess.get_inputs()[0].type == "tensor(float)" and sess.get_outputs()[0].type == "tensor(float)"
        for batch in (1, 7, 32):
            y = sess.run(None, {INPUT_NAME: rng.standard_normal((batch, 3, 160, 64), dtype=np.float32)})[0]
            assert y.shape == (batch, 1024) and np.isfinite(y).all()
    gate = {r["artifact"]: r for r in data["parity"]["results"]}
    assert set(gate) == set(ONNX_FILES)
    assert all(set(r["per_batch"]) == {"1", "7", "32"} for r in gate.values())
    assert gate["model.onnx"]["value"] >= 0.99999 and gate["model.fp16.onnx"]["value"] >= 0.999


def test_contract_round_trips_through_every_artifact(exported: tuple[Path, dict]) -> None:
    out, data = exported
    expected = {"model.onnx": "fp32", "model.fp16.onnx": "fp16", "model.int8.onnx": "int8", "model.int8-cpu.onnx": "int8"}
    for name, precision in expected.items():
        meta = {p.key: p.value for p in onnx.load(str(out / name)).metadata_props}
        cfg, contract = read_contract(meta)
        assert cfg == model_config("small")
        assert contract["flops"] == data["flops"] and contract["embedding_dim"] == 1024
        assert meta["precision"] == precision and contract["precision"] == precision  # flat key and JSON agree
    assert {p.key: p.value for p in onnx.load(str(out / "model.int8.onnx")).metadata_props}["int8_flavour"] == "tensorrt"


def test_manifest_embeds_the_contract_the_onnx_carries(exported: tuple[Path, dict]) -> None:
    from han_deploy.runtime.backends import read_manifest_contract

    out, data = exported
    _, contract = read_contract({p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props})
    assert data["contract"] == {k: v for k, v in contract.items() if k != "precision"}  # each artifact records its own
    cfg, _, where = read_manifest_contract(out / "model.fp16.plan")  # an engine carries no metadata: the manifest speaks
    assert cfg == model_config("small") and where == out / "manifest.json"


def test_int8_models_have_symmetric_qdq_and_per_channel_weights(exported: tuple[Path, dict]) -> None:
    out, _ = exported
    trt = graph_checks.qdq_summary(onnx.load(str(out / "model.int8.onnx")))
    cpu = graph_checks.qdq_summary(onnx.load(str(out / "model.int8-cpu.onnx")))
    for s in (trt, cpu):
        assert s["quantize_linear"] > 20 and s["dequantize_linear"] > 20
        assert s["nonzero_zero_points"] == []
        assert s["per_channel_weights"] >= 30 and s["per_tensor_weights"] == 0
    assert trt["zero_point_types"] == ["int8"]  # signed only; biases stay float for TensorRT
    assert cpu["zero_point_types"] == ["int32", "int8", "uint8"]  # int32: quantized biases


def _qdq_readers(model: onnx.ModelProto) -> dict[str, str]:
    """Node name -> op type of every non-Q/DQ node that reads an activation through Q -> DQ."""
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name for t in model.graph.initializer}

    def through_qdq(name: str) -> bool:
        dq = producers.get(name)
        q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        return q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in inits

    return {
        n.name: n.op_type
        for n in model.graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(through_qdq(i) for i in n.input)
    }


def test_tensorrt_int8_quantizes_only_inputs_of_weighted_layers(exported: tuple[Path, dict]) -> None:
    out, _ = exported
    q = onnx.load(str(out / "model.int8.onnx"))
    readers = _qdq_readers(q)
    assert len(readers) >= 30 and set(readers.values()) <= {"Conv", "Gemm", "MatMul", "Add"}
    producers = {o: n for n in q.graph.node for o in n.output}
    for node in q.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in producers:
            # never a conv, Sigmoid or Flatten output (a Mul or ReduceMean output only as a conv's input, checked above)
            source = producers[node.input[0]].op_type
            assert source not in ("Conv", "Sigmoid", "Flatten", "QuantizeLinear", "DequantizeLinear"), node.name
    for node in q.graph.node:  # ...and no Q -> DQ -> Relu -> Q chain: a ReLU reads float
        assert node.op_type != "Relu" or producers[node.input[0]].op_type != "DequantizeLinear"


def test_tensorrt_int8_keeps_hard_attention_fc_and_tail_fully_float(exported: tuple[Path, dict]) -> None:
    out, _ = exported
    kept = graph_checks.kept_float_nodes(onnx.load(str(out / "model.onnx")))
    q = onnx.load(str(out / "model.int8.onnx"))
    producers = {o: n for n in q.graph.node for o in n.output}
    fcs = [n for n in q.graph.node if n.op_type in ("Gemm", "MatMul") and n.name in kept]
    assert len(fcs) == 5  # three hard-attention FCs, two head FCs
    for fc in fcs:
        assert all(producers[i].op_type not in ("QuantizeLinear", "DequantizeLinear") for i in fc.input if i in producers)


def test_residual_variant_quantizes_both_inputs_of_residual_adds(tmp_path: Path) -> None:
    from han_deploy.export.onnx_export import export_onnx
    from han_deploy.export.quantize import quantize_int8

    fp32 = export_onnx(create_model("small", block="residual").eval(), tmp_path / "res.onnx")
    adds = graph_checks.residual_adds(onnx.load(str(fp32)))
    assert len(adds) >= 6
    reader = calibration.CropCalibrationReader(_crops(4), model_config("small").preprocess)
    quantize_int8(fp32, tmp_path / "res.int8.onnx", reader, "tensorrt", "minmax")
    q = onnx.load(str(tmp_path / "res.int8.onnx"))
    assert set(adds) <= set(_qdq_readers(q))
    producers = {o: n for n in q.graph.node for o in n.output}
    for node in q.graph.node:
        if node.name in adds:
            assert [producers[i].op_type for i in node.input] == ["DequantizeLinear", "DequantizeLinear"]


def test_cpu_int8_uses_uint8_exactly_for_non_negative_tensors(exported: tuple[Path, dict]) -> None:
    out, _ = exported
    fp32 = onnx.load(str(out / "model.onnx"))
    nonneg = graph_checks.nonnegative_tensors(fp32)
    q = onnx.load(str(out / "model.int8-cpu.onnx"))
    inits = {t.name: t for t in q.graph.initializer}
    seen_u8 = 0
    for node in q.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            if inits[node.input[2]].data_type == onnx.TensorProto.UINT8:
                seen_u8 += 1
                assert node.input[0] in nonneg, f"{node.input[0]} is uint8 but may be negative"
    assert seen_u8 > 10


def test_cpu_int8_optimised_graph_has_no_float_conv_beyond_the_kept_ones(exported: tuple[Path, dict]) -> None:
    out, data = exported
    kept = next(a for a in data["artifacts"] if a["file"] == "model.int8-cpu.onnx")["quantization"]["kept_float_convs"]
    assert any("stem" in k for k in kept)
    optimised = graph_checks.optimized_graph(out / "model.int8-cpu.onnx")
    assert graph_checks.unexpected_float_convs(optimised, kept) == []
    assert len(graph_checks.float_convs(optimised)) == len(kept)
    assert sum(n.op_type == "QLinearConv" for n in optimised.graph.node) >= 30


def test_attention_means_rewritten_keep_the_fp32_function(exported: tuple[Path, dict]) -> None:
    out, _ = exported
    model = onnx.load(str(out / "model.onnx"))
    x = np.random.default_rng(0).standard_normal((2, 3, 160, 64), dtype=np.float32)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})
    assert integer_means.rewrite_means(model).counts() == {"GlobalAveragePool": 3, "Conv": 3}  # two per HA module
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})
    np.testing.assert_allclose(after[0], before[0], atol=1e-5)


def test_channel_equalization_keeps_the_fp32_function(exported: tuple[Path, dict]) -> None:
    out, data = exported
    model = onnx.load(str(out / "model.onnx"))
    x = np.random.default_rng(0).standard_normal((2, 3, 160, 64), dtype=np.float32)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})
    reader = calibration.CropCalibrationReader(_crops(4), model_config("small").preprocess)
    done = equalize.equalize_relu_pairs(model, reader)
    # every depthwise unit (3 per global level, 1 per local), each global unit's depthwise conv into the next
    # unit's 1x1 (2 per level), and each channel attention's squeeze-excitation pair (1 per HA module)
    assert (len(done.pairs), done.depthwise) == (12 + 6 + 3, 12)
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})
    np.testing.assert_allclose(after[0], before[0], atol=1e-5)
    reports = {a["file"]: a.get("quantization") for a in data["artifacts"]}
    assert reports["model.int8-cpu.onnx"]["equalized"]["pairs"] == 21 and reports["model.int8.onnx"]["equalized"] == {}


def test_cpu_int8_runs_the_attention_means_in_integer(exported: tuple[Path, dict]) -> None:
    out, data = exported
    report = next(a for a in data["artifacts"] if a["file"] == "model.int8-cpu.onnx")["quantization"]
    assert report["rewritten_means"] == {"GlobalAveragePool": 3, "Conv": 3}
    ops = Counter(n.op_type for n in graph_checks.optimized_graph(out / "model.int8-cpu.onnx").graph.node)
    assert ops["QLinearGlobalAveragePool"] == 3  # soft channel attention's pooling, one per HA module
    assert ops["ReduceMean"] == 2  # only the heads' pooling (no kept dims), which stays float
    q = onnx.load(str(out / "model.int8-cpu.onnx"))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in q.graph.initializer}
    mean_weights = [n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("mean_weight_quantized")]
    assert len(mean_weights) == 3
    for dq in mean_weights:  # 1/C stored exactly as int8 ones (no 127s to saturate AVX2's 16-bit sums)
        w, scale = inits[dq.input[0]], inits[dq.input[1]]
        assert w.dtype == np.int8 and (w == 1).all()
        np.testing.assert_allclose(scale, 1.0 / w.shape[1], rtol=1e-6)


def test_kept_float_nodes_are_stem_grid_and_tail(exported: tuple[Path, dict]) -> None:
    out, _ = exported
    model = onnx.load(str(out / "model.onnx"))
    kept = graph_checks.kept_float_nodes(model)
    by_name = {n.name: n for n in model.graph.node}
    ops = {reason: {by_name[n].op_type for n, r in kept.items() if r == reason} for reason in set(kept.values())}
    assert ops["stem"] == {"Conv"}
    assert {"Tanh", "Gemm", "Add"} <= ops["crop-grid"] and "Conv" not in ops["crop-grid"] and "GridSample" not in ops["crop-grid"]
    assert {"MatMul", "BatchNormalization", "ReduceL2", "Div", "Concat"} <= ops["embedding-tail"] and "Conv" not in ops[
        "embedding-tail"
    ]


def test_manifest_hashes_match_and_detect_changes(exported: tuple[Path, dict], tmp_path: Path) -> None:
    out, data = exported
    assert json.loads((out / "manifest.json").read_text())["artifacts"] == data["artifacts"]
    assert manifest.verify_manifest(out / "manifest.json") == []
    assert {a["file"] for a in data["artifacts"]} == set(ONNX_FILES)
    assert data["versions"]["onnxruntime"] == ort.__version__ and data["profile"]["max"] == [32, 3, 160, 64]
    assert all("--stronglyTyped" in e["trtexec"] and not e["built"] for e in data["engines"])
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / "model.int8.onnx", "ab") as f:
        f.write(b"\0")
    assert manifest.verify_manifest(copy / "manifest.json") == ["model.int8.onnx: size or sha256 differs from the manifest"]


def test_output_holds_no_staging_or_temporary_files(exported: tuple[Path, dict]) -> None:
    out, _ = exported
    names = {p.name for p in out.rglob("*")}
    assert not any(n.startswith(".han-export-") or n.endswith(".tmp") for n in names)


def test_deepstream_recipe(exported: tuple[Path, dict]) -> None:
    out, data = exported
    text = (out / "deepstream" / "config_tracker_reid.yml").read_text()
    assert "inferDims: [3, 160, 64]" in text and "reidFeatureSize: 1024" in text
    assert "offsets: [123.6750, 116.2800, 103.5300]" in text
    ds = data["recipes"]["deepstream"]
    assert ds["netScaleFactor"] == pytest.approx(1 / (255 * np.mean([0.229, 0.224, 0.225])))
    assert f"netScaleFactor: {ds['netScaleFactor']:.8f}" in text
    assert 0.99 < ds["single_scale_cosine_vs_exact"]["mean"] <= 1.0


def test_gate_compares_on_held_out_crops_and_simulates_tensorrt(exported: tuple[Path, dict]) -> None:
    _, data = exported
    assert "held apart from calibration" in data["parity"]["inputs"] and data["calibration"]["size"] == 12  # 16 - 4
    gate = {r["artifact"]: r for r in data["parity"]["results"]}
    assert gate["model.int8.onnx"]["session"] == "qdq-simulated"
    assert set(gate["model.int8.onnx"]["reported"]) == {"ort-default"}  # the x86 figure, next to it
    assert gate["model.int8-cpu.onnx"]["session"] == "ort-default" and gate["model.int8-cpu.onnx"]["reported"] == {}
    for name in ("model.int8.onnx", "model.int8-cpu.onnx"):
        sens = next(a for a in data["artifacts"] if a["file"] == name)["quantization"]["sensitivity"]
        assert sens["kept"] == [] and sens["baseline"] >= sens["target"]  # fresh weights: nothing to keep float


# ---- building blocks ---------------------------------------------------------------------------


def test_sensitivity_pass_keeps_the_layers_that_gain_most(exported: tuple[Path, dict]) -> None:
    from han_deploy.contract.preprocess import preprocess
    from han_deploy.export import sensitivity

    out, _ = exported
    x = preprocess(_crops(8, seed=3), model_config("small").preprocess)
    ref = parity.ort_infer(out / "model.onnx")(x)
    report = sensitivity.keep_most_harmful(
        out / "model.int8.onnx", x, ref, 1.5, 2, lambda m: parity.ort_infer(m, session="qdq-simulated")
    )
    assert len(report.gains) >= 30 and 1 <= len(report.kept) <= 2  # 1.5 is unreachable: stops at max_layers
    order = sorted(report.gains, key=lambda n: -report.gains[n])
    assert report.kept[0] == order[0] and report.kept == [n for n in order if n in report.kept]
    assert report.final > report.baseline


def test_sensitivity_pass_skips_a_layer_that_hurts_beside_those_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from han_deploy.export import sensitivity

    # alone, each of a, b, c raises the cosine; b beside a lowers it (as an attention Mul did beside three nodes on HAN-L)
    scores = {(): 0.90, ("a",): 0.95, ("b",): 0.94, ("c",): 0.92, ("a", "b"): 0.80, ("a", "c"): 0.96}
    monkeypatch.setattr(sensitivity, "score", lambda model, nodes, *_: scores[tuple(nodes)])
    monkeypatch.setattr(sensitivity.graph_checks, "quantized_layers", lambda model: ["a", "b", "c"])
    model = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    onnx.save(model, tmp_path / "m.onnx")
    report = sensitivity.keep_most_harmful(tmp_path / "m.onnx", np.zeros(1), np.zeros(1), 0.99, 3, lambda m: None)
    assert report.kept == ["a", "c"] and report.final == 0.96


def test_select_data_gate_and_calibration_sources(tmp_path: Path, calib_dir: Path) -> None:
    import warnings

    from han_deploy.export.exporter import _select_data

    cfg = model_config("small")
    opts = ExportOptions(variant="small", precisions=("fp32", "int8"), calib_size=4)
    with pytest.warns(UserWarning, match="SYNTHETIC people"):
        data = _select_data(opts, cfg)
    assert data.calib_source == "synthetic" and "synthetic crops" in data.gate_source and len(data.gate_inputs) == 32
    assert data.probe is not None and len(data.probe) == 32 and data.calib is not None
    assert not {c.tobytes() for c in data.probe} & {c.tobytes() for c in data.calib}  # another seed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _select_data(ExportOptions(precisions=("fp32", "int8"), calib_size=4, calib_data="synthetic"), cfg).calib
    held = _select_data(ExportOptions(precisions=("fp32", "int8"), calib_size=64, calib_data=calib_dir), cfg)
    # 16 crops: a quarter held apart, split between the gate and the sensitivity pass's probe
    assert held.calib is not None and len(held.calib) == 12 and len(held.gate_inputs) == 2
    assert held.probe is not None and len(held.probe) == 2
    calib_set = {c.tobytes() for c in held.calib}
    apart = calibration.split_crops(calib_dir, 64, 64)[1]
    assert not calib_set & {c.tobytes() for c in apart}  # gate and probe both held apart from calibration
    assert {c.tobytes() for c in held.probe} == {c.tobytes() for c in apart[1::2]}
    fp32_only = _select_data(ExportOptions(precisions=("fp32",), calib_data=calib_dir), cfg)
    assert fp32_only.calib is None and fp32_only.probe is None


def test_no_simplify_graph_and_entropy_calibration_quantize(tmp_path: Path) -> None:
    from han_deploy.export.onnx_export import export_onnx
    from han_deploy.export.quantize import quantize_int8

    fp32 = export_onnx(create_model("small").eval(), tmp_path / "raw.onnx", simplify=False)
    assert any(n.op_type == "Identity" for n in onnx.load(str(fp32)).graph.node)  # biases read through Identity
    reader = calibration.CropCalibrationReader(_crops(4), model_config("small").preprocess)
    report = quantize_int8(fp32, tmp_path / "raw.int8-cpu.onnx", reader, "cpu", "entropy")
    optimised = graph_checks.optimized_graph(tmp_path / "raw.int8-cpu.onnx")
    assert graph_checks.unexpected_float_convs(optimised, report.kept_convs) == []


def test_crash_is_not_a_failed_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from han_deploy.export import exporter

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(exporter, "export_onnx", broken)
    code, err = _run_cli(["--precision", "fp32", "--output", str(tmp_path / "out")], capsys)
    assert code == 3 and "boom" in err and "crashed" in err and _no_files(tmp_path / "out")


def test_split_shared_dequantize_gives_each_consumer_its_own_dq() -> None:
    h = onnx.helper
    x = h.make_tensor_value_info("x", onnx.TensorProto.INT8, [1, 4])
    outs = [
        h.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [1, 4]),
        h.make_tensor_value_info("b", onnx.TensorProto.INT64, [2]),
        h.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [1, 4]),
    ]
    inits = [h.make_tensor("s", onnx.TensorProto.FLOAT, [], [0.1]), h.make_tensor("z", onnx.TensorProto.INT8, [], [0])]
    nodes = [
        h.make_node("DequantizeLinear", ["x", "s", "z"], ["d"], name="dq"),
        h.make_node("Relu", ["d"], ["a"], name="r"),
        h.make_node("Shape", ["d"], ["b"], name="sh"),
        h.make_node("Abs", ["d"], ["c"], name="ab"),
    ]
    model = h.make_model(h.make_graph(nodes, "g", [x], outs, inits))
    assert graph_checks.split_shared_dequantize(model) == 2
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dqs) == 3 and len({n.output[0] for n in dqs}) == 3
    readers = [n.input[0] for n in model.graph.node if n.op_type != "DequantizeLinear"]
    assert sorted(readers) == sorted(n.output[0] for n in dqs)
    onnx.checker.check_model(model)


def test_nonnegative_tensors_follow_relu_and_stop_at_conv(exported: tuple[Path, dict]) -> None:
    out, _ = exported
    model = onnx.load(str(out / "model.onnx"))
    nonneg = graph_checks.nonnegative_tensors(model)
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("Relu", "Sigmoid"):
            assert node.output[0] in nonneg
        has_negative_constant = any((consts[i] < 0).any() for i in node.input if i in consts)
        if node.op_type == "Tanh" or (node.op_type in ("Conv", "Gemm") and has_negative_constant):
            assert node.output[0] not in nonneg
        if node.op_type == "GridSample":  # crops of non-negative features are non-negative
            assert node.output[0] in nonneg


def test_calibration_reader_yields_runtime_preprocessing_and_rewinds() -> None:
    from han_deploy.contract.preprocess import preprocess

    crops = _crops(10)
    pre = model_config("small").preprocess
    reader = calibration.CropCalibrationReader(crops, pre, batch_size=4)
    batches = list(iter(reader.get_next, None))
    assert [b[INPUT_NAME].shape[0] for b in batches] == [2] * 5 and len(reader) == 10  # equal batches
    np.testing.assert_array_equal(np.concatenate([b[INPUT_NAME] for b in batches]), preprocess(crops, pre))
    reader.rewind()
    assert reader.get_next() is not None


def test_gate_judges_thresholds_and_enforcement() -> None:
    per_batch = {1: {"mean": 0.993, "min": 0.98}, 7: {"mean": 0.992, "min": 0.97}, 32: {"mean": 0.994, "min": 0.98}}
    cpu = parity.judge("model.int8-cpu.onnx", "int8-cpu", per_batch, enforce=True)
    assert not cpu.passed and cpu.value == 0.992 and "worst at batch 7" in cpu.failures[0]
    assert parity.judge("model.int8-cpu.onnx", "int8-cpu", per_batch, enforce=False).passed  # reported, not enforced
    assert parity.judge("model.int8.onnx", "int8", per_batch, enforce=True).passed
    dropped = parity.judge("model.int8.onnx", "int8", per_batch, True, {"R1": 80.0, "mAP": 60.0, "map_drop": 1.5})
    assert not dropped.passed and "mAP drop 1.50" in dropped.failures[0]
    assert not parity.judge("model.onnx", "fp32", per_batch, enforce=False).passed  # FP32 is always enforced


def test_help_documents_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    text = build_parser().format_help()
    for flag in (
        "--variant", "--checkpoint", "--precision", "--calib-data", "--calib-method", "--calib-size", "--batch",
        "--min-batch", "--opt-batch", "--opset", "--simplify", "--no-simplify", "--engine", "--workspace", "--timing-cache",
        "--eval-data", "--output", "--seed", "--target", "--sensitivity-layers", "--strict",
    ):  # fmt: skip
        assert flag in text


def test_tensorrt_profile_and_trtexec_command() -> None:
    from han_deploy.export.tensorrt_build import BatchProfile, trtexec_command

    profile = BatchProfile(1, 8, 32, 160, 64)
    cmd = trtexec_command("model.int8.onnx", "model.int8.plan", profile, 2048, "timing.cache")
    assert "--minShapes=images:1x3x160x64" in cmd and "--optShapes=images:8x3x160x64" in cmd
    assert "--maxShapes=images:32x3x160x64" in cmd and "--memPoolSize=workspace:2048M" in cmd
    assert cmd.endswith("--timingCacheFile=timing.cache")
    shared = trtexec_command("model.onnx", "model.fp32.plan", profile, 2048, "/caches/trt cache/a.cache")
    assert shlex.split(shared)[-1] == "--timingCacheFile=/caches/trt cache/a.cache"  # a user's path, whole
    with pytest.raises(ValueError, match="min-batch"):
        BatchProfile(4, 2, 32, 160, 64)


def test_engine_entries_name_the_timing_cache(tmp_path: Path) -> None:
    from han_deploy.export.exporter import _engines
    from han_deploy.export.tensorrt_build import BatchProfile

    profile = BatchProfile(1, 8, 32, 160, 64)
    default = _engines(tmp_path, ExportOptions(output=tmp_path), profile, ["model.onnx"])
    mine = _engines(tmp_path, ExportOptions(output=tmp_path, timing_cache=Path("c/trt.cache")), profile, ["model.onnx"])
    assert shlex.split(default[0]["trtexec"])[-1] == "--timingCacheFile=timing.cache"  # run in the output folder
    assert shlex.split(mine[0]["trtexec"])[-1] == f"--timingCacheFile={Path('c/trt.cache').resolve()}"


class _FakeTimingCache:
    def __init__(self, blob: bytes) -> None:
        self.blob = bytes(blob)

    def serialize(self) -> bytes:
        return self.blob


class _FakeBuilderConfig:
    """IBuilderConfig as build_engine uses it; a cache whose bytes start with b"stale" is refused, like another GPU's."""

    def __init__(self, profile_index: int = 0, refuse_caches: bool = False) -> None:
        self.profile_index, self.refuse_caches, self.cache = profile_index, refuse_caches, None

    def set_memory_pool_limit(self, pool: int, size: int) -> None:
        pass

    def add_optimization_profile(self, profile: object) -> int:
        return self.profile_index

    def create_timing_cache(self, blob: bytes) -> _FakeTimingCache:
        return _FakeTimingCache(blob)

    def set_timing_cache(self, cache: _FakeTimingCache, ignore_mismatch: bool) -> bool:
        if self.refuse_caches or cache.blob.startswith(b"stale"):
            return False
        self.cache = cache
        return True


class _FakeBuilder:
    """The builder calls of build_engine; a build adds its tactic timings (b"t") to the attached cache, in place."""

    def __init__(self, config: _FakeBuilderConfig) -> None:
        self.config = config

    def create_network(self, flags: int) -> object:
        return object()

    def create_builder_config(self) -> _FakeBuilderConfig:
        return self.config

    def create_optimization_profile(self) -> SimpleNamespace:
        return SimpleNamespace(set_shape=lambda name, *shapes: None)

    def build_serialized_network(self, network: object, config: _FakeBuilderConfig) -> bytes:
        if config.cache is not None:
            config.cache.blob += b"t"
        return b"plan"


def _fake_tensorrt_builder(**config: Any) -> ModuleType:
    """A ``tensorrt`` module with the calls build_engine makes (there is no TensorRT here)."""
    trt = ModuleType("tensorrt")
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, severity: None})
    trt.Builder = lambda logger: _FakeBuilder(_FakeBuilderConfig(**config))
    trt.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=1)
    trt.OnnxParser = lambda network, logger: SimpleNamespace(parse_from_file=lambda path: True, num_errors=0)
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE=0)
    trt.Dims = tuple
    return trt


def test_engine_build_loads_extends_and_saves_the_timing_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from han_deploy.export.tensorrt_build import BatchProfile, EngineBuildError, build_engine

    cache = tmp_path / "caches" / "trt.cache"

    def build(**fake: Any) -> bytes:
        monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt_builder(**fake))
        build_engine(tmp_path / "m.onnx", tmp_path / "m.plan", BatchProfile(1, 8, 32, 160, 64), 64, cache)
        return cache.read_bytes()

    assert build() == b"t" and (tmp_path / "m.plan").read_bytes() == b"plan"  # no cache yet: a fresh one, saved
    assert build() == b"tt"  # the saved cache is loaded, and the next build extends it
    cache.write_bytes(b"stale")
    assert build() == b"t"  # refused (another TensorRT version or GPU): a fresh one replaces it
    with pytest.raises(EngineBuildError, match="empty timing cache"):
        build(refuse_caches=True)
    with pytest.raises(EngineBuildError, match="optimisation profile"):
        build(profile_index=-1)
    assert not list(tmp_path.rglob("*.tmp"))


def test_tensorrt_engine_build(tmp_path: Path, exported: tuple[Path, dict]) -> None:
    from han_deploy.export.tensorrt_build import BatchProfile, build_engine, gpu_name, tensorrt_module

    if tensorrt_module() is None or gpu_name() is None:
        pytest.skip("needs TensorRT 10/11 with a builder and an NVIDIA GPU (unverified here)")
    out, _ = exported
    engine = build_engine(out / "model.fp16.onnx", tmp_path / "m.plan", BatchProfile(1, 8, 32, 160, 64), 1024, tmp_path / "cache")
    assert engine.stat().st_size > 0 and (tmp_path / "cache").stat().st_size > 0


# ---- bad input: clear error, nothing written ---------------------------------------------------


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--variant", "small", "--calib-size", "4", "-q", *args])
    return code, capsys.readouterr().err


def test_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run_cli(["--checkpoint", str(tmp_path / "nope.safetensors"), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and "checkpoint not found" in err and "nope.safetensors" in err
    assert _no_files(tmp_path / "out")


def test_checkpoint_of_another_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = save_checkpoint(tmp_path / "medium.safetensors", create_model("medium"))
    code, err = _run_cli(["--checkpoint", str(ckpt), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and "han_medium" in err and "--variant is small" in err
    assert _no_files(tmp_path / "out")


@pytest.mark.parametrize("name", ["resnet50", "mobilenetv2"])
def test_comparator_networks_are_not_export_variants(name: str) -> None:
    from han_deploy.export.exporter import ExportError, load_model

    with pytest.raises(ExportError, match=f"--variant {name} is not a HAN variant .*han_small"):
        load_model(ExportOptions(variant=name))  # the registry builds them for the benchmark, han-export refuses them
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--variant", name])


def test_empty_calibration_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code, err = _run_cli(["--calib-data", str(tmp_path / "empty"), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and "holds no images" in err and "empty" in err
    assert _no_files(tmp_path / "out")


def test_unreadable_calibration_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"{i}.jpg").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="unreadable"):
        code, err = _run_cli(["--calib-data", str(bad), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and "no readable image" in err
    assert _no_files(tmp_path / "out")


def test_missing_calibration_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run_cli(["--calib-data", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and "not found" in err and _no_files(tmp_path / "out")


def test_opset_below_16(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run_cli(["--opset", "15", "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and "GridSample" in err and _no_files(tmp_path / "out")


def test_failed_gate_exits_nonzero_names_the_artifact_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(parity.THRESHOLDS, "fp32", parity.Threshold("mean", 1.5))  # unreachable: forces a failure
    code, err = _run_cli(["--precision", "fp32", "--output", str(tmp_path / "out")], capsys)
    assert code == 1 and "model.onnx: mean cosine" in err and "< 1.5" in err
    assert _no_files(tmp_path / "out")


@pytest.mark.parametrize("strict", [False, True])
def test_failed_reduced_precision_gate_writes_what_passed_unless_strict(
    strict: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(parity.THRESHOLDS, "fp16", parity.Threshold("min", 1.5))  # unreachable: FP16 fails
    ckpt = save_checkpoint(tmp_path / "small.safetensors", create_model("small"))  # weights given: gates enforced
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.fp16.onnx").write_bytes(b"left by an earlier export")
    args = ["--checkpoint", str(ckpt), "--precision", "fp32,fp16", "--output", str(out)] + (["--strict"] if strict else [])
    code, err = _run_cli(args, capsys)
    assert code == 1 and "model.fp16.onnx: min cosine" in err and "< 1.5" in err
    if strict:
        assert "nothing was written" in err and {p.name for p in out.iterdir()} == {"model.fp16.onnx"}  # untouched
        return
    assert "refused model.fp16.onnx" in err and not (out / "model.fp16.onnx").exists()  # the stale copy is gone too
    data = json.loads((out / "manifest.json").read_text())
    assert data["parity"]["refused"] == ["model.fp16.onnx"] and [a["file"] for a in data["artifacts"]] == ["model.onnx"]
    assert [e["precision"] for e in data["engines"]] == ["fp32"] and manifest.verify_manifest(out / "manifest.json") == []


def test_refused_int8_keeps_its_quantization_report_in_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for kind in ("int8", "int8-cpu"):
        monkeypatch.setitem(parity.THRESHOLDS, kind, parity.Threshold("mean", 1.5))  # unreachable: both INT8 fail
    ckpt = save_checkpoint(tmp_path / "small.safetensors", create_model("small"))
    args = ["--checkpoint", str(ckpt), "--precision", "fp32,int8", "--calib-data", "synthetic", "--sensitivity-layers", "0"]
    code, err = _run_cli([*args, "--calib-size", "8", "--output", str(tmp_path / "out")], capsys)
    assert code == 1 and "refused model.int8.onnx, model.int8-cpu.onnx" in err
    data = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [a["file"] for a in data["artifacts"]] == ["model.onnx"]
    reports = data["parity"]["refused_quantization"]
    assert {name: r["flavour"] for name, r in reports.items()} == {"model.int8.onnx": "tensorrt", "model.int8-cpu.onnx": "cpu"}
    assert all(r["sensitivity"]["kept"] == [] and r["calib_size"] == 8 for r in reports.values())


def test_fp16_io_variant_takes_and_returns_float16(exported: tuple[Path, dict], tmp_path: Path) -> None:
    from han_deploy.export.fp16 import convert_fp16

    out, _ = exported
    half = convert_fp16(out / "model.onnx", tmp_path / "half-io.onnx", keep_io_types=False)
    sess = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(float16)" and sess.get_outputs()[0].type == "tensor(float16)"
    x = np.random.default_rng(1).standard_normal((7, 3, 160, 64), dtype=np.float32)
    ref = parity.ort_infer(out / "model.onnx")(x)
    assert parity.cosine_rows(parity.ort_infer(half)(x), ref).min() > 0.999


def test_json_output_is_the_manifest_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # ONNX Runtime's calibrators print progress; on stdout it would corrupt the JSON a pipeline reads
    code = main(["--variant", "small", "--calib-size", "4", "--precision", "fp32,int8", "--json", "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out)["artifacts"][0]["file"] == "model.onnx"


@pytest.mark.parametrize(
    ("dtype", "zero", "relu_back"),
    [
        (onnx.TensorProto.UINT8, 0, True),  # the CPU flavour's ReLU outputs
        (onnx.TensorProto.UINT8, None, True),  # no zero point: uint8 0
        (onnx.TensorProto.INT8, -128, True),
        (onnx.TensorProto.INT8, 0, False),  # symmetric int8 (TensorRT flavour): no ReLU was dropped
    ],
)
def test_bypass_puts_back_the_relu_a_saturating_q_stood_for(dtype: int, zero: int | None, relu_back: bool) -> None:
    h = onnx.helper
    inits = [h.make_tensor("s", onnx.TensorProto.FLOAT, [], [0.1])]
    params = ["s"] if zero is None else ["s", "z"]
    if zero is not None:
        inits.append(h.make_tensor("z", dtype, [], [zero]))
    nodes = [
        h.make_node("Neg", ["x"], ["pre"], name="conv"),  # stands for a conv whose ReLU the quantizer dropped
        # holds the name the bypass's ReLU would take first: it must pick another
        h.make_node("Identity", ["pre"], ["pre_bypass_relu"], name="taken"),
        h.make_node("QuantizeLinear", ["pre", *params], ["q"], name="q"),
        h.make_node("DequantizeLinear", ["q", *params], ["dq"], name="dq"),
        h.make_node("Add", ["dq", "pre_bypass_relu"], ["y"], name="reader"),
    ]
    io = [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [4]) for n in ("x", "y")]
    graph = h.make_graph(nodes, "g", io[:1], io[1:], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    assert graph_checks.bypass_qdq(model, ["reader"]) == 1
    onnx.checker.check_model(model)
    assert not {"QuantizeLinear", "DequantizeLinear"} & {n.op_type for n in model.graph.node}
    ort = pytest.importorskip("onnxruntime")
    x = np.array([-1.0, -0.05, 0.3, 2.0], dtype=np.float32)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    # float, and clipped only where the Q clipped
    np.testing.assert_allclose(y, (np.maximum(-x, 0) if relu_back else -x) - x)
