"""``han-bench`` latency mode: the documented JSON fields, skipped backends without numbers, clear argument errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("fvcore")

from han_deploy.bench.cli import main  # noqa: E402
from han_deploy.bench.report import SCHEMA, text_table  # noqa: E402

TINY = ["--warmup", "1", "--iters", "2", "--repeats", "2", "--threads", "1"]
BATCH_FIELDS = {
    "batch", "status", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "throughput_ips",
    "repeat_p50_ms", "spread", "noisy", "iters", "repeats", "warmup", "memory", "achieved_gflops", "efficiency",
}  # fmt: skip
MODEL_FIELDS = {"name", "input_size", "macs", "flops", "params", "budget", "deviation", "within_budget", "flops_source"}
RESULT_FIELDS = {"key", "model", "backend", "precision", "status", "reason", "runner", "batches"}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "small.json"
    plot = out.with_suffix(".png")
    argv = [
        "--variant",
        "small",
        "--backend",
        "torch,onnxruntime,tensorrt",
        "--batch",
        "1,2",
        "--json",
        str(out),
        "--plot",
        str(plot),
    ]
    assert main(argv + TINY) == 0
    assert plot.stat().st_size > 0
    return json.loads(out.read_text())


def test_json_has_the_documented_fields_for_backends_that_run(small_run: dict) -> None:
    doc = small_run
    assert doc["schema"] == SCHEMA
    assert {"command", "machine", "load_before", "load_after", "timing", "threads", "spinning", "gemm_peak", "results"} <= set(
        doc
    )
    assert doc["command"].startswith("han-bench --variant small")
    assert doc["machine"]["cpu"]["flags"] and doc["machine"]["versions"]["onnxruntime"]
    ran = {r["backend"]: r for r in doc["results"] if r["status"] == "ok"}
    assert set(ran) == {"torch", "onnxruntime"}
    for res in ran.values():
        assert set(res) == RESULT_FIELDS
        assert set(res["model"]) == MODEL_FIELDS
        assert res["model"]["name"] == "han_small" and res["model"]["flops"] == 2 * res["model"]["macs"]
        assert res["model"]["budget"] == 3.68e8 and res["model"]["within_budget"] is True
        assert [b["batch"] for b in res["batches"]] == [1, 2]
        for row in res["batches"]:
            assert set(row) == BATCH_FIELDS
            assert 0 < row["min_ms"] <= row["p50_ms"] <= row["max_ms"]
            assert row["p50_ms"] <= row["p99_ms"] + 1e-9 or row["repeats"] > 1
            assert row["throughput_ips"] == pytest.approx(row["batch"] / row["p50_ms"] * 1e3)
            assert row["iters"] == 4 and row["repeats"] == 2 and len(row["repeat_p50_ms"]) == 2
            assert row["achieved_gflops"] == pytest.approx(res["model"]["flops"] * row["throughput_ips"] / 1e9)
            assert row["efficiency"] is None  # no --peak
            assert {"peak_rss_mib", "rss_before_mib", "peak_rss_delta_mib", "peak_reset", "cuda_peak_mib"} == set(row["memory"])
    assert ran["onnxruntime"]["runner"]["precision"] == "fp32"
    assert "spinning False" in ran["onnxruntime"]["runner"]["note"]


def test_tensorrt_is_skipped_with_a_reason_never_a_number(small_run: dict) -> None:
    (trt,) = [r for r in small_run["results"] if r["backend"] == "tensorrt"]
    assert trt["status"] == "skipped"
    assert "TensorRT" in trt["reason"] and "unverified" in trt["reason"]
    assert trt["batches"] == [] and trt["runner"] is None
    table = text_table(small_run["results"])
    line = next(ln for ln in table.splitlines() if " tensorrt " in ln)
    assert "SKIPPED" in line and "ms" not in line.split("SKIPPED")[0]


def test_engine_onnx_and_missing_tensorrt_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from han_deploy.bench.models import create_han, export_fp32, model_info

    model = create_han("small")
    onnx_path = export_fp32(model, tmp_path / "han.onnx", model_info(model, "han_small"))
    out = tmp_path / "engine.json"
    assert main(["--engine", str(onnx_path), "--batch", "1", "--json", str(out), *TINY]) == 0
    (res,) = json.loads(out.read_text())["results"]
    assert res["status"] == "ok" and res["backend"] == "onnxruntime"
    assert res["model"]["flops_source"] == "contract metadata" and res["model"]["within_budget"] is True
    assert res["batches"][0]["p50_ms"] > 0

    # a TensorRT engine with its manifest: no TensorRT / GPU here -> skipped, with the reason, exit 0
    engine = tmp_path / "model.fp16.plan"
    engine.write_bytes(b"\x00" * 64)
    meta = {p.key: p.value for p in __import__("onnx").load(str(onnx_path)).metadata_props}
    (tmp_path / "manifest.json").write_text(json.dumps({"contract": json.loads(meta["han_deploy.contract"])}))
    out2 = tmp_path / "trt.json"
    assert main(["--engine", str(engine), "--batch", "1", "--json", str(out2), *TINY]) == 0
    (trt,) = json.loads(out2.read_text())["results"]
    assert trt["status"] == "skipped" and trt["batches"] == []
    assert "unverified" in trt["reason"] or "GPU" in trt["reason"] or "TensorRT" in trt["reason"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--variant", "tiny"], "invalid choice: 'tiny'"),
        (["--variant", "small", "--batch", "0"], "batch sizes must be positive integers, got 0"),
        (["--variant", "small", "--batch", "1,-4"], "batch sizes must be positive integers"),
        (["--variant", "small", "--batch", "two"], "batch sizes must be positive integers, got 'two'"),
        (["--variant", "small", "--backend", "openvino"], "unknown backend openvino"),
        (["--variant", "small", "--precision", "int4"], "unknown precision int4"),
        (["--variant", "small", "--iters", "0"], "--iters must be > 0"),
        (["--engine", "/nonexistent/han.onnx"], "--engine: file not found: /nonexistent/han.onnx"),
        (["--variant", "small", "--engine", "x.onnx"], "not allowed with argument"),
        ([], "nothing to do"),
    ],
)
def test_bad_arguments_give_clear_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_engine_with_an_unsupported_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "weights.pt"
    bogus.write_bytes(b"PK\x03\x04")
    with pytest.raises(SystemExit):
        main(["--engine", str(bogus)])
    assert "unsupported file 'weights.pt'" in capsys.readouterr().err
