"""The CPU INT8 flavour with and without channel equalization (``han_deploy.export.equalize``), like for like.

Both artifacts are quantized from the same FP32 ONNX with the same calibration crops (no sensitivity pass,
nothing kept float beyond the fixed groups) and compared to FP32 on the same crops held apart from
calibration: mean and worst per-sample cosine, and each half of the embedding (global, local).

    python benchmarks/export/equalize_ablation.py --fp32 /tmp/exp-e4-default/model.onnx \
        --crops /tmp/synth200/bounding_box_train --work /tmp/equalize-e4 --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from han_deploy.config import PreprocessConfig
from han_deploy.contract.decode import read_image
from han_deploy.contract.preprocess import preprocess
from han_deploy.export import calibration, parity, quantize


def embed(path: Path, x: np.ndarray) -> np.ndarray:
    """Embeddings of ``x`` through the runtime's ONNX Runtime backend, as the export gate runs an artifact."""
    return parity.run_batched(parity.ort_infer(path), x, 32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fp32", type=Path, required=True, help="the FP32 ONNX (han-export's model.onnx)")
    p.add_argument("--crops", type=Path, required=True, help="folder of .jpg person crops (training crops)")
    p.add_argument("--work", type=Path, required=True, help="scratch folder for the two INT8 artifacts")
    p.add_argument("--calib", type=int, default=128, help="calibration crops")
    p.add_argument("--held", type=int, default=64, help="crops held apart for the comparison")
    p.add_argument("--seed", type=int, default=0, help="which crops (a seeded draw from --crops)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    files = sorted(args.crops.glob("*.jpg"))
    if len(files) < args.calib + args.held:
        raise SystemExit(f"--crops {args.crops}: needs {args.calib + args.held} .jpg crops, found {len(files)}")
    args.work.mkdir(parents=True, exist_ok=True)
    pre = PreprocessConfig()
    pick = np.random.default_rng(args.seed).choice(len(files), args.calib + args.held, replace=False)
    calib = [read_image(files[i]) for i in pick[: args.calib]]
    held = preprocess([read_image(files[i]) for i in pick[args.calib :]], pre)
    reference = embed(args.fp32, held)
    load_before, rows = os.getloadavg(), {}
    for equalized in (False, True):
        out = args.work / f"model.int8-cpu.equalized-{str(equalized).lower()}.onnx"
        reader = calibration.CropCalibrationReader(calib, pre)
        report = quantize.quantize_int8(args.fp32, out, reader, "cpu", equalize_channels=equalized)
        got = embed(out, held)
        whole = parity.cosine_rows(got, reference)
        glob, local = parity.cosine_rows(got[:, :512], reference[:, :512]), parity.cosine_rows(got[:, 512:], reference[:, 512:])
        rows["equalized" if equalized else "not equalized"] = {
            "mean_cosine": float(whole.mean()),
            "min_cosine": float(whole.min()),
            "global_half": float(glob.mean()),
            "local_half": float(local.mean()),
            "equalized": report.equalized,
        }
        halves = f"global {glob.mean():.5f}, local {local.mean():.5f}"
        print(f"equalized={equalized}: mean cosine {whole.mean():.5f} (worst {whole.min():.4f}; {halves})")
    result = {
        "command": "python benchmarks/export/equalize_ablation.py " + " ".join(sys.argv[1:]),
        "versions": {"python": platform.python_version(), "onnxruntime": ort.__version__},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "results": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
