#!/usr/bin/env python3
"""The benchmark suite: one run on one machine, every number in it comparable with every other.

CPU (default): HAN small / medium / large in PyTorch eager FP32, ONNX Runtime FP32 and ONNX Runtime
INT8 (the export stage's CPU-flavoured Q/DQ model, calibrated on synthetic crops), plus the ResNet50
and MobileNetV2 re-id baselines (eager + ONNX Runtime FP32), all at 160x64; the machine's GEMM peak
(numpy, PyTorch, ONNX Runtime MatMul; the best is the FP32 peak) measured at the start and the end of
the same run; efficiency = achieved FLOP/s / that peak. All cases are timed interleaved per batch
size, ``threads`` intra-op threads each, idle threads sleeping (ONNX Runtime allow_spinning=0,
OMP_WAIT_POLICY=PASSIVE). Writes ``<out>/<tag>.json``, ``<tag>.md``, ``<tag>-latency.png``,
``<tag>-throughput.png`` and the PyTorch-eager record ``<tag>-torch-eager.md``.

GPU (``--device cuda``, UNTESTED: written against the PyTorch 2.x API, no GPU in the task that wrote
it): PyTorch FP32 and FP16 autocast, channels_last, and ``torch.compile(mode="reduce-overhead")``
(CUDA graphs) for the same models, batch 1 to 1024, efficiency against the GPU's measured FP16 peak.

    python benchmarks/suite.py                       # the CPU suite, results in benchmarks/results/
    python benchmarks/suite.py --quick               # a smoke run with tiny iteration counts
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: PyTorch's OpenMP threads sleep when idle

HAN_VARIANTS = ("small", "medium", "large")
COMPARATOR_NAMES = ("resnet50", "mobilenetv2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results", help="results folder")
    p.add_argument("--tag", default=None, help="file name prefix (default: cpu-suite, or gpu-suite with --device cuda)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N] (untested here)")
    p.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,8,32 on CPU; 1..1024 on GPU)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for PyTorch and ONNX Runtime (default 2)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per case and batch before timing (default 3)")
    p.add_argument("--duration", type=float, default=1.0, help="seconds per timed block (default 1.0)")
    p.add_argument("--min-iters", type=int, default=3, help="timed calls per block at least (default 3)")
    p.add_argument(
        "--repeats", type=int, default=5, help="timed blocks per case and batch; p50 = median of block medians (default 5)"
    )
    p.add_argument("--calib-size", type=int, default=128, help="synthetic crops calibrating INT8 (default 128, as han-export)")
    p.add_argument(
        "--artifacts",
        type=Path,
        help="folder of han-export outputs to reuse (<folder>/han_small/model.onnx, ...), exported there when missing "
        "(default: export into a temporary folder)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: batch 1,2, 1 warm-up, 2 repeats of 2 calls, small GEMM")
    p.add_argument(
        "--models",
        default=",".join("han_" + v for v in HAN_VARIANTS) + "," + ",".join(COMPARATOR_NAMES),
        help="comma-separated subset of models (default: all five)",
    )
    args = p.parse_args(argv)
    args.tag = args.tag or ("gpu-suite" if args.device.startswith("cuda") else "cpu-suite")
    default_batches = "1,8,32,64,128,256,512,1024" if args.device.startswith("cuda") else "1,8,32"
    args.batches = [int(b) for b in (args.batches or ("1,2" if args.quick else default_batches)).split(",")]
    if any(b < 1 for b in args.batches):
        p.error(f"--batches: batch sizes must be positive, got {args.batches}")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    known = ["han_" + v for v in HAN_VARIANTS] + list(COMPARATOR_NAMES)
    if bad := [m for m in args.models if m not in known]:
        p.error(f"--models: unknown {', '.join(bad)}; choose from {', '.join(known)}")
    return args


def build_models(names: list[str]) -> dict[str, tuple[Any, Any]]:
    """name -> (eval-mode module, ModelInfo)."""
    from han_deploy.bench.models import create_han, model_info
    from han_deploy.model import create_model

    out = {}
    for name in names:
        model = create_han(name) if name.startswith("han_") else create_model(name).eval()
        out[name] = (model, model_info(model, name))
    return out


def han_export(name: str, artifacts: Path, calib_size: int) -> tuple[dict[str, Path], str]:
    """The shipped artifacts of ``name`` from the export stage (``han-export``): model.onnx and model.int8-cpu.onnx.

    Reused from ``artifacts/<name>/`` when an earlier ``han-export --variant V --precision fp32,int8 --output
    artifacts/<name>`` left them there, else exported there now. Same seed-0 weights as the eager model here
    (the exporter seeds fresh networks with 0 too). On failure the suite exports on the fly with the same
    exporter and quantizer APIs, and says so in the results.
    """
    from han_deploy.export.exporter import ExportOptions, run_export

    out = artifacts / name
    files = {"fp32": out / "model.onnx", "int8": out / "model.int8-cpu.onnx"}
    manifest = out / "manifest.json"
    if manifest.is_file() and all(p.is_file() for p in files.values()):
        how = "reused"
    else:
        how = "exported in this run"
        try:
            opts = ExportOptions(
                variant=name.removeprefix("han_"),
                output=out,
                precisions=("fp32", "int8"),
                calib_size=calib_size,
                seed=0,
                progress=False,
            )
            run_export(opts)
        except Exception as exc:  # noqa: BLE001 - reported, and the suite goes on with its own export
            return {}, f"han-export failed ({type(exc).__name__}: {exc}); exported by the bench with export_onnx + quantize_int8"
    data = json.loads(manifest.read_text())
    sums = {a.get("file", a.get("name")): str(a.get("sha256", ""))[:12] for a in data.get("artifacts", []) if isinstance(a, dict)}
    desc = ", ".join(f"{p.name} (sha256 {sums.get(p.name, '?')})" for p in files.values())
    return files, f"han-export artifacts {how} in {out}: {desc}; calibration {data.get('calibration')}"


def cpu_cases(models: dict[str, tuple[Any, Any]], workdir: Path, args: argparse.Namespace, exports: dict[str, str]) -> list[Any]:
    from han_deploy.bench.cases import RunOptions, module_cases

    opts = RunOptions("cpu", args.threads, spinning=False, calib_size=args.calib_size)
    cases = []
    for name, (model, info) in models.items():
        files: dict[str, Path] = {}
        if name.startswith("han_"):
            print(f"exporting {name} with han-export ...", file=sys.stderr, flush=True)
            files, exports[name] = han_export(name, args.artifacts or workdir, args.calib_size)
        cases += module_cases(name, model, info, ["torch"], ["fp32"], workdir, opts)
        precisions = ["fp32", "int8"] if name.startswith("han_") else ["fp32"]
        cases += module_cases(name, model, info, ["onnxruntime"], precisions, workdir, opts, onnx_files=files)
    return cases


def gpu_cases(models: dict[str, tuple[Any, Any]], workdir: Path, args: argparse.Namespace, exports: dict[str, str]) -> list[Any]:
    """UNTESTED (no GPU here): FP32, FP16 autocast, FP16 + channels_last, FP16 + CUDA-graph torch.compile."""
    from han_deploy.bench.cases import RunOptions, module_cases

    variants = [
        (RunOptions(args.device, threads=None), ["fp32", "fp16"]),
        (RunOptions(args.device, threads=None, channels_last=True), ["fp16"]),
        (RunOptions(args.device, threads=None, channels_last=True, compile="reduce-overhead"), ["fp16"]),
    ]
    cases = []
    for name, (model, info) in models.items():
        for opts, precisions in variants:
            cases += module_cases(name, model, info, ["torch"], precisions, workdir, opts)
    return cases


def _row(results: list[dict[str, Any]], key: str, batch: int) -> dict[str, Any] | None:
    for res in results:
        if res["key"] == key:
            for row in res["batches"]:
                if row["batch"] == batch and row.get("status") == "ok":
                    return row
    return None


def ratio_pairs() -> list[tuple[str, str, str]]:
    """(label, subject key, reference key) of every comparison the suite reports, CPU and GPU."""
    pairs = []
    for v in HAN_VARIANTS:
        han = f"han_{v}"
        pairs += [
            (f"{han}: ONNX Runtime FP32 vs PyTorch eager FP32", f"{han}/onnxruntime/fp32", f"{han}/torch/fp32"),
            (f"{han}: ONNX Runtime INT8 vs ONNX Runtime FP32", f"{han}/onnxruntime/int8", f"{han}/onnxruntime/fp32"),
            (f"{han}: ONNX Runtime INT8 vs PyTorch eager FP32", f"{han}/onnxruntime/int8", f"{han}/torch/fp32"),
        ]
        for base in COMPARATOR_NAMES:
            for backend in ("torch", "onnxruntime"):
                pairs.append((f"{han} vs {base}, both {backend} FP32", f"{han}/{backend}/fp32", f"{base}/{backend}/fp32"))
            pairs.append((f"{han} ORT INT8 vs {base} ORT FP32", f"{han}/onnxruntime/int8", f"{base}/onnxruntime/fp32"))
            pairs.append((f"{han} vs {base}, both PyTorch FP16 (GPU)", f"{han}/torch/fp16", f"{base}/torch/fp16"))
    for base in COMPARATOR_NAMES:
        pairs.append((f"{base}: ONNX Runtime FP32 vs PyTorch eager FP32", f"{base}/onnxruntime/fp32", f"{base}/torch/fp32"))
    for model in [f"han_{v}" for v in HAN_VARIANTS] + list(COMPARATOR_NAMES):
        fp16_cl = f"{model}/torch/fp16+cl"
        pairs += [
            (f"{model}: PyTorch FP16 vs FP32 (GPU)", f"{model}/torch/fp16", f"{model}/torch/fp32"),
            (f"{model}: FP16 channels_last vs FP16 (GPU)", fp16_cl, f"{model}/torch/fp16"),
            (
                f"{model}: FP16 channels_last + compile (CUDA graphs) vs eager (GPU)",
                f"{fp16_cl}+compile-reduce-overhead",
                fp16_cl,
            ),
        ]
    return pairs


def ratios(results: list[dict[str, Any]], batches: list[int]) -> list[dict[str, Any]]:
    """Speed-ups from the same run: time of the reference / time of the subject (> 1: the subject is faster).

    Only comparisons with at least one batch size where both cases ran are kept.
    """
    out = []
    for label, subject, reference in ratio_pairs():
        speedup = {}
        for b in batches:
            s, r = _row(results, subject, b), _row(results, reference, b)
            speedup[str(b)] = None if s is None or r is None else r["p50_ms"] / s["p50_ms"]
        if any(v is not None for v in speedup.values()):
            out.append({"label": label, "subject": subject, "reference": reference, "speedup": speedup})
    return out


def flops_ratios(models: dict[str, tuple[Any, Any]]) -> dict[str, float]:
    """FLOPs of each comparator over each HAN variant (how much more arithmetic the reference does)."""
    out = {}
    for base in COMPARATOR_NAMES:
        for v in HAN_VARIANTS:
            if base in models and f"han_{v}" in models:
                out[f"{base} / han_{v}"] = models[base][1].flops / models[f"han_{v}"][1].flops
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from han_deploy.bench.machine import load_snapshot, machine_record
    from han_deploy.bench.measure import add_efficiency, measure_cases
    from han_deploy.bench.peak import measure_gemm_peaks
    from han_deploy.bench.report import SCHEMA, write_json
    from han_deploy.bench.suite_report import suite_markdown, suite_plots, torch_eager_markdown
    from han_deploy.bench.timing import TimingPlan

    command = "python benchmarks/suite.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    gpu = args.device.startswith("cuda")
    if args.quick:
        plan = TimingPlan(warmup=1, iters=2, repeats=2)
    else:
        plan = TimingPlan(warmup=args.warmup, iters=None, duration=args.duration, repeats=args.repeats, min_iters=args.min_iters)
    import torch

    if gpu and not torch.cuda.is_available():
        print(f"--device {args.device}: no CUDA device visible to PyTorch here; the GPU suite needs one", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    t_start = time.time()
    before = load_snapshot(top=8)
    print(f"load before: {before['loadavg_1_5_15']}", file=sys.stderr)
    peak_kw: dict[str, Any] = {"size": 512, "repeats": 2} if args.quick else {}
    if gpu:
        from han_deploy.bench.peak import measure_cuda_peaks

        peak_fn = lambda: measure_cuda_peaks(args.device, **peak_kw)  # noqa: E731
    else:
        peak_fn = lambda: measure_gemm_peaks(threads=args.threads, **peak_kw)  # noqa: E731
    peak_start = peak_fn()
    models = build_models(args.models)
    with tempfile.TemporaryDirectory(prefix="han-suite-") as tmp:
        exports: dict[str, str] = {}
        cases = (gpu_cases if gpu else cpu_cases)(models, Path(tmp), args, exports)
        results = measure_cases(cases, args.batches, plan)
    peak_end = peak_fn()
    after = load_snapshot(top=8)
    print(f"load after: {after['loadavg_1_5_15']}", file=sys.stderr)
    peak_key = "fp16_peak_gflops" if gpu else "fp32_peak_gflops"
    best = max((peak_start, peak_end), key=lambda p: p.get(peak_key) or 0)
    peaks = {
        "efficiency_against": peak_key,
        "peak_gflops": best.get(peak_key),
        "library": best.get("fp32_peak_library") if not gpu else "torch_cuda_fp16",
        "int8_peak_gops": max(p.get("int8_peak_gops") or 0 for p in (peak_start, peak_end)) or None,
    }
    add_efficiency(results, peaks["peak_gflops"], peaks["int8_peak_gops"])
    doc = {
        "schema": SCHEMA,
        "suite": args.tag,
        "command": command,
        "wall_s": round(time.time() - t_start, 1),
        "machine": machine_record(),
        "load_before": before,
        "load_after": after,
        "timing": plan.describe(),
        "threads": args.threads,
        "spinning": {"onnxruntime_allow_spinning": False, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},
        "gemm_peak": {"used": peaks, "start": peak_start, "end": peak_end},
        "exports": exports,
        "results": results,
        "ratios": ratios(results, args.batches),
        "flops_ratios": flops_ratios(models),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(doc, args.out / f"{args.tag}.json")
    plots = suite_plots(doc, args.out, args.tag)
    (args.out / f"{args.tag}.md").write_text(suite_markdown(doc, plots))
    (args.out / f"{args.tag}-torch-eager.md").write_text(torch_eager_markdown(doc))
    print(f"wrote {args.out / (args.tag + '.md')} and friends in {doc['wall_s']} s", file=sys.stderr)
    failed = [r["key"] for r in results if r["status"] == "failed"]
    if failed:
        print(f"FAILED cases: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
