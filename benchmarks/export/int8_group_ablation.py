"""Which groups of quantized layers cost an INT8 artifact its cosine: each group back in float, one at a time.

The sensitivity pass (``han_deploy.export.sensitivity``) scores single layers; this scores whole levels and
attention modules of HAN (grouped by the module path in the ONNX node names, so it is a diagnostic for
han-deploy's own exports, not a graph rule), and prints the gain of each embedding head's BatchNorm1d
(gamma / sqrt(running var)), which scales whatever error reaches that head.

    python benchmarks/export/int8_group_ablation.py --checkpoint runs/synth200-small-e4/last.safetensors \
        --calib-data /tmp/synth200/bounding_box_train --probe-data /tmp/synth200/bounding_box_test \
        --flavour tensorrt --work /tmp/ablate-e4 --json benchmarks/export/results/group_ablation_e4_tensorrt.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from han_deploy.contract.preprocess import preprocess
from han_deploy.export import graph_checks, parity, quantize, sensitivity
from han_deploy.export.calibration import CropCalibrationReader, load_crops
from han_deploy.model.checkpoint import load_checkpoint

GROUP = re.compile(r"/(global_levels|local_levels|attention)\.(\d+)")
UNIONS = {"global levels": "global_levels", "local levels": "local_levels", "attention": "attention"}


def group_of(node: str) -> str:
    """``global_levels.0``, ``attention.2``, ... for a node of that module, else the node's own name."""
    match = GROUP.match(node)
    return f"{match.group(1)}.{match.group(2)}" if match else node


def head_gains(model: torch.nn.Module) -> dict[str, dict[str, float]]:
    """Median and max |gamma| / sqrt(running var + eps) of every BatchNorm1d: how much it scales its input's error."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            gain = (module.weight / torch.sqrt(module.running_var + module.eps)).abs().detach()
            out[name] = {"median": float(gain.median()), "max": float(gain.max())}
    return out


def artifacts(args: argparse.Namespace, model: torch.nn.Module) -> Path:
    """The FP32 export (han-export) and its INT8 flavour, without a sensitivity pass, under ``args.work``."""
    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.work / "model.onnx").exists():
        cmd = ["han-export", "--variant", model.cfg.variant, "--checkpoint", str(args.checkpoint)]
        subprocess.run([*cmd, "--precision", "fp32", "--output", str(args.work), "-q"], check=True)
    int8 = args.work / f"int8-{args.flavour}.onnx"
    if not int8.exists():
        reader = CropCalibrationReader(load_crops(args.calib_data, args.calib_size, 0), model.cfg.preprocess)
        quantize.quantize_int8(args.work / "model.onnx", int8, reader, args.flavour)
    return int8


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="trained safetensors checkpoint")
    p.add_argument("--calib-data", type=Path, required=True, help="folder of crops to calibrate on")
    p.add_argument("--probe-data", type=Path, required=True, help="folder of other crops to score on")
    p.add_argument("--probe-size", type=int, default=48, help="probe crops")
    p.add_argument("--calib-size", type=int, default=128, help="calibration crops")
    p.add_argument("--flavour", choices=quantize.FLAVOURS, default="tensorrt", help="INT8 flavour")
    p.add_argument("--work", type=Path, required=True, help="scratch folder for the exports (reused)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model, _ = load_checkpoint(args.checkpoint)
    model.eval()
    int8 = artifacts(args, model)
    x = preprocess(load_crops(args.probe_data, args.probe_size, 1), model.cfg.preprocess)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    session = parity.GATE_SESSIONS["int8" if args.flavour == "tensorrt" else "int8-cpu"]

    def runner(path: Path) -> Any:
        return parity.ort_infer(path, 2, session)

    import onnx

    graph = onnx.load(str(int8))
    groups: dict[str, list[str]] = {}
    for layer in graph_checks.quantized_layers(graph):
        groups.setdefault(group_of(layer), []).append(layer)
    for union, prefix in UNIONS.items():
        groups[union] = [n for g, ns in groups.items() if g.startswith(prefix + ".") for n in ns]
    baseline = sensitivity.score(graph, [], runner, x, reference)
    gains = {g: sensitivity.score(graph, ns, runner, x, reference) - baseline for g, ns in groups.items() if ns}
    result = {
        "checkpoint": str(args.checkpoint), "flavour": args.flavour, "session": session, "probe_crops": len(x),
        "baseline_cosine": baseline, "gain_with_group_float": gains, "layers": {g: len(ns) for g, ns in groups.items()},
        "head_batchnorm_gain": head_gains(model), "load_average": os.getloadavg(),
    }  # fmt: skip
    print(f"{args.flavour} ({session}): baseline mean cosine {baseline:.5f} on {len(x)} probe crops")
    for g, gain in sorted(gains.items(), key=lambda kv: -kv[1]):
        print(f"  {g:32s} {len(groups[g]):3d} layer(s) float: {gain:+.5f}")
    for name, gain in result["head_batchnorm_gain"].items():
        print(f"  {name}: BatchNorm1d gain median {gain['median']:.2f}, max {gain['max']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
