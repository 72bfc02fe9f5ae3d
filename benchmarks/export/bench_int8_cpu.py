"""CPU latency / throughput of FP32 vs both INT8 ONNX models (ONNX Runtime), S/M/L, batch 1 and 32.

Also times the CPU flavour without its attention-mean rewrite (float ReduceMean; same calibration) to
show what the rewrite gains.

All sessions of a variant and batch size are timed interleaved in one process (round-robin within
each round, the order rotated every round), with ``session.intra_op.allow_spinning=0`` so idle
sessions do not steal cores; numbers are medians over rounds. Writes JSON and a Markdown table.

    python benchmarks/export/bench_int8_cpu.py --out benchmarks/export/results/int8_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

MODELS = {"fp32": "model.onnx", "int8-trt": "model.int8.onnx", "int8-cpu": "model.int8-cpu.onnx"}
# the CPU flavour without the attention-mean rewrite (float ReduceMean), same calibration: the rewrite's gain
ABLATION = {"int8-cpu-reducemean": "model.int8-cpu-reducemean.onnx"}


def _cpu_report(out: Path) -> dict | None:
    """The CPU flavour's quantization report in ``out/manifest.json``, if that export exists."""
    path = out / "manifest.json"
    if not all((out / f).is_file() for f in MODELS.values()) or not path.is_file():
        return None
    artifacts = json.loads(path.read_text())["artifacts"]
    return next(a for a in artifacts if a["file"] == MODELS["int8-cpu"])["quantization"]


def export_variant(variant: str, root: Path, calib_size: int, checkpoint: Path | None) -> Path:
    """Export FP32 + both INT8 models of ``variant`` under ``root/variant`` (reused when present and current),
    and the CPU flavour again without the attention-mean rewrite: same calibration, same layers kept float."""
    from han_deploy.export import calibration, quantize
    from han_deploy.export.exporter import ExportOptions, run_export
    from han_deploy.model import model_config

    out = root / variant
    report = _cpu_report(out)
    if report is None or "rewritten_means" not in report:  # absent, or exported before the rewrite
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opts = ExportOptions(
                variant=variant, output=out, precisions=("fp32", "int8"), calib_size=calib_size, checkpoint=checkpoint
            )
            run_export(opts)
        report = _cpu_report(out)
    ablation = out / ABLATION["int8-cpu-reducemean"]
    if not ablation.is_file():
        # the export's own calibration crops when no calibration folder is given (synthetic, ExportOptions' seed)
        crops = calibration.synthetic_crops(calib_size, ExportOptions.seed)
        reader = calibration.CropCalibrationReader(crops, model_config(variant).preprocess)
        kept = tuple(report["sensitivity"]["kept"]) if report.get("sensitivity") else ()
        quantize.quantize_int8(out / MODELS["fp32"], ablation, reader, "cpu", extra_float=kept, rewrite_means=False)
    return out


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def bench(paths: dict[str, Path], batch: int, rounds: int, min_time: float, threads: int) -> dict[str, dict[str, float]]:
    """Median per-call latency (ms) and throughput (images/s) per model, timed interleaved."""
    x = np.random.default_rng(0).standard_normal((batch, 3, 160, 64), dtype=np.float32)
    sessions = {k: session(p, threads) for k, p in paths.items()}
    calls = {}
    for name, sess in sessions.items():  # warm up and size the per-round call count
        sess.run(None, {"images": x})
        t = time.perf_counter()
        sess.run(None, {"images": x})
        calls[name] = max(2, int(min_time / max(time.perf_counter() - t, 1e-4)))
    samples: dict[str, list[float]] = {k: [] for k in sessions}
    order = list(sessions)
    for r in range(rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            sess = sessions[name]
            t = time.perf_counter()
            for _ in range(calls[name]):
                sess.run(None, {"images": x})
            samples[name].append((time.perf_counter() - t) / calls[name])
    out = {}
    for name, s in samples.items():
        med = statistics.median(s)
        out[name] = {
            "latency_ms": 1e3 * med,
            "throughput": batch / med,
            "spread": (max(s) - min(s)) / med,
            "calls_per_round": calls[name],
        }
    return out


def main() -> None:
    import onnxruntime as ort

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="small,medium,large")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds; medians over them")
    p.add_argument("--min-time", type=float, default=0.4, help="seconds of calls per model per round")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--calib-size", type=int, default=64)
    p.add_argument("--checkpoint", type=Path, action="append", default=[], help="VARIANT=PATH trained weights (optional)")
    p.add_argument("--export-dir", type=Path, default=Path("/tmp/han-bench-export"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/export/results/int8_cpu.json"))
    args = p.parse_args()
    ckpts = dict(str(c).split("=", 1) for c in args.checkpoint)

    load_before = os.getloadavg()
    results = {}
    for variant in args.variants.split(","):
        ckpt = Path(ckpts[variant]) if variant in ckpts else None
        folder = export_variant(variant, args.export_dir, args.calib_size, ckpt)
        paths = {k: folder / f for k, f in {**MODELS, **ABLATION}.items()}
        for batch in map(int, args.batches.split(",")):
            r = bench(paths, batch, args.rounds, args.min_time, args.threads)
            for k in ("int8-trt", "int8-cpu", *ABLATION):
                r[k]["speedup_vs_fp32"] = r[k]["throughput"] / r["fp32"]["throughput"]
            results[f"{variant}/b{batch}"] = r
            print(variant, batch, {k: f"{v['throughput']:.1f} img/s" for k, v in r.items()}, flush=True)
    data = {
        "command": "python benchmarks/export/bench_int8_cpu.py "
        + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("out", "checkpoint")),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "results": results,
    }
    try:
        data["machine"]["cpu"] = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    rows = [
        "| variant | batch | FP32 img/s | INT8-TRT img/s (x FP32) | INT8-CPU img/s (x FP32) "
        "| INT8-CPU, float ReduceMean (x FP32) | FP32 ms/call | INT8-CPU ms/call |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        v, b = key.split("/b")
        fp32, cpu = r["fp32"], r["int8-cpu"]
        speed = " | ".join(
            f"{r[k]['throughput']:.1f} ({r[k]['speedup_vs_fp32']:.2f}x)" for k in ("int8-trt", "int8-cpu", *ABLATION)
        )
        rows.append(f"| {v} | {b} | {fp32['throughput']:.1f} | {speed} | {fp32['latency_ms']:.2f} | {cpu['latency_ms']:.2f} |")
    args.out.with_suffix(".md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
