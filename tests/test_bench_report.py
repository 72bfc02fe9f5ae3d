"""Tables, suite ratios and Markdown, profile aggregation and the GEMM peak, on small known inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from han_deploy.bench.measure import add_efficiency
from han_deploy.bench.profiling import aggregate_ort_trace
from han_deploy.bench.report import markdown_table, text_table
from han_deploy.bench.suite_report import suite_markdown, torch_eager_markdown
from han_deploy.bench.timing import summarize

ROOT = Path(__file__).resolve().parents[1]


def _load_suite() -> Any:
    spec = importlib.util.spec_from_file_location("bench_suite", ROOT / "benchmarks" / "suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(name: str, backend: str, precision: str, p50s: dict[int, float], flops: float = 1e9) -> dict[str, Any]:
    rows = []
    for batch, p50 in p50s.items():
        stats = summarize([[p50 / 1e3]] * 3, batch).to_dict()
        rows.append(
            {"status": "ok", **stats, "memory": {"peak_rss_delta_mib": 1.0}, "achieved_gflops": flops * batch / p50 * 1e3 / 1e9}
        )
    model = {"name": name, "flops": flops, "params": 2e6, "macs": flops / 2}
    return {"key": f"{name}/{backend}/{precision}", "model": model, "backend": backend, "precision": precision, "status": "ok",
            "reason": "", "runner": {}, "batches": rows}  # fmt: skip


def test_ratios_are_reference_time_over_subject_time() -> None:
    suite = _load_suite()
    results = [
        _result("han_small", "torch", "fp32", {1: 30.0, 32: 600.0}),
        _result("han_small", "onnxruntime", "fp32", {1: 10.0, 32: 200.0}),
        _result("han_small", "onnxruntime", "int8", {1: 5.0, 32: 160.0}),
        _result("resnet50", "onnxruntime", "fp32", {1: 40.0}),
    ]
    ratios = {r["label"]: r["speedup"] for r in suite.ratios(results, [1, 32])}
    assert ratios["han_small: ONNX Runtime FP32 vs PyTorch eager FP32"] == {"1": pytest.approx(3.0), "32": pytest.approx(3.0)}
    assert ratios["han_small: ONNX Runtime INT8 vs ONNX Runtime FP32"] == {"1": pytest.approx(2.0), "32": pytest.approx(1.25)}
    assert ratios["han_small vs resnet50, both onnxruntime FP32"] == {"1": pytest.approx(4.0), "32": None}  # no batch-32 row
    assert "han_medium: ONNX Runtime FP32 vs PyTorch eager FP32" not in ratios  # not measured: left out


def test_skipped_and_failed_cases_carry_reasons_not_numbers() -> None:
    skipped = {**_result("han_small", "tensorrt", "fp16", {}), "status": "skipped", "reason": "no GPU here"}
    ok = _result("han_small", "torch", "fp32", {1: 12.5})
    ok["batches"].append({"batch": 64, "status": "failed", "reason": "MemoryError: out of memory"})
    for table in (text_table([ok, skipped]), markdown_table([ok, skipped])):
        assert "SKIPPED: no GPU here" in table and "FAILED: MemoryError: out of memory" in table and "12.50" in table
    add_efficiency([ok, skipped], peak_gflops=100.0)
    assert ok["batches"][0]["efficiency"] == pytest.approx(ok["batches"][0]["achieved_gflops"] / 100.0)
    assert "efficiency" not in ok["batches"][1] and skipped["batches"] == []


def test_suite_markdown_names_machine_load_and_the_eager_record() -> None:
    suite = _load_suite()
    results = [_result(f"han_{v}", "torch", "fp32", {1: 20.0, 32: 300.0}) for v in ("small", "medium", "large")]
    snap = {
        "utc": "2026-01-01T00:00:00+00:00",
        "loadavg_1_5_15": [3.5, 2.0, 1.0],
        "top_processes": [{"command": "python", "cpu_percent": 99.0}],
    }
    doc = {
        "suite": "cpu-suite", "command": "python benchmarks/suite.py", "wall_s": 1.0, "threads": 2,
        "spinning": {"OMP_WAIT_POLICY": "PASSIVE"},
        "machine": {
            "cpu": {"model": "Test CPU", "vendor": "V", "family_model_stepping": "1/2/3", "usable_cpus": 2, "logical_cpus": 2,
                    "hypervisor": True, "flags": {"avx2": True, "avx512f": False}},
            "gpu": {"devices": []}, "versions": {"python": "3.11", "torch": "2.13.0", "onnxruntime": "1.32.0"},
        },
        "load_before": snap, "load_after": snap,
        "timing": {"warmup": 5, "iters": None, "duration_s": 1.0, "repeats": 7, "min_iters": 3, "noise_threshold": 0.1},
        "gemm_peak": {"used": {"peak_gflops": 100.0, "library": "onnxruntime", "int8_peak_gops": 200.0},
                      "start": {"size": 8, "libraries": {"numpy": {"gflops": 50.0}}},
                      "end": {"libraries": {"numpy": {"gflops": 60.0}}}},
        "results": results, "ratios": suite.ratios(results, [1, 32]), "flops_ratios": {"resnet50 / han_small": 4.5},
    }  # fmt: skip
    md = suite_markdown(doc, [])
    assert "**Test CPU**" in md and "absent: avx512f" in md
    assert "Other processes were running" in md  # load 3.5 on 2 CPUs
    assert "| han_large | 1.000 | 2.00 | torch fp32 | 20.00 |" in md
    eager = torch_eager_markdown(doc)
    assert eager.count("| han_") == 6  # S/M/L x batch 1 and 32
    assert "| han_medium | 1.000 | 32 | 300.00 | 9.38 |" in eager


def test_ort_trace_aggregates_kernel_time_per_operator_kind() -> None:
    def node(op: str, dur: float, weight: list[int] | None = None) -> dict[str, Any]:
        shapes = [{"float": [1, 8, 4, 4]}] + ([{"float": weight}] if weight else [])
        return {"cat": "Node", "name": f"n_{op}_kernel_time", "dur": dur, "args": {"op_name": op, "input_type_shape": shapes}}

    events = [
        node("Conv", 60, [8, 8, 1, 1]),
        node("Conv", 20, [8, 1, 3, 3]),
        node("Conv", 40, [8, 8, 1, 1]),
        node("GridSample", 80),
        {"cat": "Node", "name": "n_fence_before", "dur": 999, "args": {"op_name": "Conv"}},  # not a kernel event
        {"cat": "Session", "name": "model_run", "dur": 500},
    ]
    ops = {r["op"]: r for r in aggregate_ort_trace(events, runs=2)}
    assert set(ops) == {"Conv 1x1", "Conv depthwise 3x3", "GridSample"}
    assert ops["Conv 1x1"]["ms_per_run"] == pytest.approx(0.05) and ops["Conv 1x1"]["calls_per_run"] == 1
    assert ops["GridSample"]["share"] == pytest.approx(0.4)
    assert sum(r["share"] for r in ops.values()) == pytest.approx(1.0)
    # ONNX Runtime's QLinearConv event does not show its prepacked weight: the kind comes from the graph, by node name
    q = {"cat": "Node", "name": "/l1/Conv_token_7_kernel_time", "dur": 10, "args": {"op_name": "QLinearConv"}}
    assert aggregate_ort_trace([q], 1, {"/l1/Conv": [8, 1, 3, 3]})[0]["op"] == "QLinearConv depthwise 3x3"
    assert aggregate_ort_trace([q], 1)[0]["op"] == "QLinearConv"


def test_gemm_peak_is_the_best_fp32_library() -> None:
    pytest.importorskip("onnxruntime")
    from han_deploy.bench.peak import measure_gemm_peaks

    peaks = measure_gemm_peaks(threads=1, size=64, warmup=1, repeats=2)
    libs = peaks["libraries"]
    fp32 = {k: v["gflops"] for k, v in libs.items() if "gflops" in v and not k.endswith("u8s8")}
    assert {"numpy", "onnxruntime"} <= set(fp32) and all(v > 0 for v in fp32.values())
    assert peaks["fp32_peak_gflops"] == max(fp32.values()) and peaks["fp32_peak_library"] in fp32
    assert peaks["int8_peak_gops"] == libs["onnxruntime_u8s8"]["gflops"] > 0
