"""Where an INT8 artifact's embedding error lies: common to every crop (a shift) or per crop, global or local half.

Runs a han-export folder's ``model.onnx`` and one INT8 artifact through the runtime's ONNX Runtime backend
(the gate's session for the flavour) on calibration crops and on held-out crops, and reports:
* the mean per-sample cosine, over the whole embedding and over each 512-D half;
* the share of the error energy that is one vector common to every crop (``|mean e|^2 / mean |e|^2``):
  a shift that bias correction could remove;
* the cosine after subtracting the mean error measured on the calibration crops (what bias
  correction of the last layer would reach at best).

    python benchmarks/export/int8_error_anatomy.py --export-dir EXPORT --artifact model.int8.onnx \\
        --calib-data TRAIN_CROPS --eval-data TEST_CROPS --json OUT.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx

from han_deploy.config import read_contract
from han_deploy.contract.preprocess import preprocess
from han_deploy.export import calibration, parity

HALVES = {"global": slice(0, 512), "local": slice(512, 1024)}


def anatomy(fp32: tuple[np.ndarray, np.ndarray], int8: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Error statistics of ``int8`` against ``fp32`` embeddings, each (calibration crops, held-out crops)."""
    shift = (int8[0] - fp32[0]).mean(0)
    error = int8[1] - fp32[1]
    out = {
        "cosine": parity.cosine_rows(int8[1], fp32[1]).mean(),
        "common_mode_energy": (error.mean(0) ** 2).sum() / (error**2).sum(1).mean(),
        "cosine_less_calibration_shift": parity.cosine_rows(int8[1] - shift, fp32[1]).mean(),
    }
    for half, cols in HALVES.items():
        out[f"cosine_{half}"] = parity.cosine_rows(int8[1][:, cols], fp32[1][:, cols]).mean()
        out[f"cosine_{half}_less_calibration_shift"] = parity.cosine_rows(int8[1][:, cols] - shift[cols], fp32[1][:, cols]).mean()
    return {k: float(v) for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--export-dir", type=Path, required=True, help="a han-export output folder holding model.onnx")
    p.add_argument("--artifact", default="model.int8.onnx", help="the INT8 file in it (default: model.int8.onnx)")
    p.add_argument("--calib-data", required=True, help="crops the shift is estimated on (the calibration folder)")
    p.add_argument("--eval-data", required=True, help="held-out crops the error is measured on")
    p.add_argument("--crops", type=int, default=64, help="crops drawn from each folder (default: 64)")
    p.add_argument("--json", type=Path, help="write the statistics here as well as to stdout")
    args = p.parse_args()
    metadata = onnx.load(str(args.export_dir / "model.onnx"), load_external_data=False).metadata_props
    pre = read_contract({m.key: m.value for m in metadata})[0].preprocess
    folders = ((args.calib_data, 0), (args.eval_data, 1))
    inputs = [preprocess(calibration.load_crops(folder, args.crops, seed), pre) for folder, seed in folders]
    kind = "int8-cpu" if "cpu" in args.artifact else "int8"
    runs = []
    for name, session in (("model.onnx", "ort-default"), (args.artifact, parity.GATE_SESSIONS[kind])):
        infer = parity.ort_infer(args.export_dir / name, threads=1, session=session)
        runs.append(tuple(parity.run_batched(infer, x, 32) for x in inputs))
    result = {"export_dir": str(args.export_dir), "artifact": args.artifact, "session": parity.GATE_SESSIONS[kind],
              "crops": args.crops, **anatomy(*runs)}  # fmt: skip
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
