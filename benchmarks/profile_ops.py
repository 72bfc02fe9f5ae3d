#!/usr/bin/env python3
"""Where the time goes in the slowest HAN variant: ONNX Runtime FP32 and INT8 per-operator profiles, PyTorch eager's.

The variant is the one with the highest ONNX Runtime FP32 latency in a suite result (``--suite``), or
``--variant``. Same settings as the suite (2 threads, no spinning). Writes ``profile-<model>.json`` and
``profile-<model>.md`` to ``--out``.

    python benchmarks/profile_ops.py --suite benchmarks/results/cpu-suite.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as in the suite


def slowest_variant(suite: dict[str, Any], batch: int) -> str:
    """The HAN variant with the highest ONNX Runtime FP32 p50 at ``batch`` in a suite document."""
    best, worst = None, -1.0
    for res in suite["results"]:
        if res["key"].startswith("han_") and res["key"].endswith("/onnxruntime/fp32"):
            row = next((r for r in res["batches"] if r["batch"] == batch and r.get("status") == "ok"), None)
            if row and row["p50_ms"] > worst:
                best, worst = res["model"]["name"].removeprefix("han_"), row["p50_ms"]
    if best is None:
        raise SystemExit(f"no ONNX Runtime FP32 HAN result at batch {batch} in the suite file")
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", type=Path, help="suite JSON to pick the slowest variant from")
    p.add_argument("--variant", choices=("small", "medium", "large"), help="profile this variant instead")
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--runs", type=int, default=10, help="profiled runs after warm-up (default 10)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    p.add_argument("--artifacts", type=Path, help="reuse <folder>/han_<variant>/model.onnx and model.int8-cpu.onnx (han-export)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results", help="results folder")
    args = p.parse_args(argv)
    if args.batch < 1 or args.runs < 1:
        p.error("--batch and --runs must be >= 1")
    if args.variant is None and args.suite is None:
        p.error("pass --suite RESULT.json or --variant NAME")
    variant = args.variant or slowest_variant(json.loads(args.suite.read_text()), args.batch)

    import torch

    from han_deploy.bench.machine import load_snapshot, machine_record
    from han_deploy.bench.models import create_han, export_fp32, export_int8, model_info
    from han_deploy.bench.profiling import ops_markdown, profile_onnxruntime, profile_torch

    torch.set_num_threads(args.threads)
    name = f"han_{variant}"
    model = create_han(variant)
    info = model_info(model, name)
    before = load_snapshot()
    with tempfile.TemporaryDirectory(prefix="han-prof-") as tmp:
        shipped = args.artifacts / name if args.artifacts else None
        if shipped and (shipped / "model.onnx").is_file() and (shipped / "model.int8-cpu.onnx").is_file():
            fp32, int8 = shipped / "model.onnx", shipped / "model.int8-cpu.onnx"
        else:
            fp32 = export_fp32(model, Path(tmp) / "fp32.onnx", info)
            int8 = export_int8(fp32, Path(tmp) / "int8-cpu.onnx", model.cfg, "cpu", calib_size=128)
        profiles = {
            "onnxruntime_fp32": profile_onnxruntime(fp32, args.batch, args.runs, threads=args.threads),
            "onnxruntime_int8": profile_onnxruntime(int8, args.batch, args.runs, threads=args.threads),
            "torch_eager_fp32": profile_torch(model, args.batch, max(2, args.runs // 2)),
        }
    after = load_snapshot()
    command = "python benchmarks/profile_ops.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    doc = {
        "command": command,
        "model": info.to_dict(),
        "batch": args.batch,
        "threads": args.threads,
        "machine": machine_record(),
        "load_before": before,
        "load_after": after,
        "profiles": profiles,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"profile-{name}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    md = [
        f"# Profile of {name} at batch {args.batch} ({args.threads} threads)",
        "",
        f"Command: `{command}`; load average before {before['loadavg_1_5_15']}, after {after['loadavg_1_5_15']}.",
        "Operator time summed per type over the profiled runs (kernel time only; ONNX Runtime's own per-node trace, "
        "PyTorch's self CPU time), convolutions split by kernel kind.",
        "",
    ]
    titles = {
        "onnxruntime_fp32": "ONNX Runtime FP32",
        "onnxruntime_int8": "ONNX Runtime INT8 (CPU flavour)",
        "torch_eager_fp32": "PyTorch eager FP32",
    }
    for key, prof in profiles.items():
        if prof.get("median_run_ms"):
            run = f", median run {prof['median_run_ms']:.1f} ms"
        else:
            run = f", operator self time {sum(r['ms_per_run'] for r in prof['ops']):.1f} ms per run"
        md += [f"## {titles[key]}{run}", "", ops_markdown(prof["ops"]), ""]
    (args.out / f"profile-{name}.md").write_text("\n".join(md))
    print(f"wrote {args.out / f'profile-{name}.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
