"""What keeping each part out of INT8 buys, and Percentile vs MinMax vs Entropy calibration.

For one checkpoint: export FP32 once, then quantize both flavours with every node group kept in
float (the shipped setting), with one group at a time quantized as well, and with each calibration
method; report per-sample cosine against PyTorch on held-out synthetic crops and, with
``--eval-data``, R1/mAP. Writes JSON and a Markdown table.

    python benchmarks/export/ablate_int8.py --checkpoint runs/synth-small/best.safetensors \\
        --eval-data runs/synth-data100 --out benchmarks/export/results/ablation_small.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path


def main() -> None:
    import torch

    from han_deploy.export import calibration, parity, quantize
    from han_deploy.export.onnx_export import export_onnx
    from han_deploy.model import create_model, load_checkpoint
    from han_deploy.runtime.preprocess import preprocess

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="trained weights (without: fresh weights, numbers say little)")
    p.add_argument("--variant", default="small", help="used only without --checkpoint")
    p.add_argument("--calib-size", type=int, default=128)
    p.add_argument("--samples", type=int, default=128, help="held-out synthetic crops for the cosine")
    p.add_argument("--eval-data", type=Path, help="Market-layout split for R1/mAP")
    p.add_argument("--out", type=Path, default=Path("benchmarks/export/results/ablation.json"))
    args = p.parse_args()

    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint)
        model.reset_classifier(0)
    else:
        torch.manual_seed(0)
        model = create_model(args.variant)
    model.eval()
    pre = model.cfg.preprocess
    x = preprocess(calibration.synthetic_crops(args.samples, seed=1), pre)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    reader = calibration.CropCalibrationReader(calibration.synthetic_crops(args.calib_size, seed=0), pre)
    split = parity.load_eval_split(args.eval_data, pre) if args.eval_data else None

    configs = [("shipped (all groups float)", quantize.KEEP_FLOAT, "percentile")]
    for group in quantize.KEEP_FLOAT:
        if group != "crop-grid":  # quantizing the crop coordinates is not an option we ship; see docs
            configs.append((f"also quantize {group}", tuple(g for g in quantize.KEEP_FLOAT if g != group), "percentile"))
    configs += [("minmax calibration", quantize.KEEP_FLOAT, "minmax"), ("entropy calibration", quantize.KEEP_FLOAT, "entropy")]

    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp32 = export_onnx(model, Path(tmp) / "model.onnx")
        base = parity.retrieval_metrics(parity.ort_infer(fp32), *split) if split else None
        for label, keep, method in configs:
            for flavour in quantize.FLAVOURS:
                path = Path(tmp) / f"{flavour}.onnx"
                quantize.quantize_int8(fp32, path, reader, flavour, method, keep_float=keep)
                infer = parity.ort_infer(path)
                cos = parity.cosine_rows(parity.run_batched(infer, x, 32), ref)
                row = {"config": label, "flavour": flavour, "cos_mean": float(cos.mean()), "cos_min": float(cos.min())}
                if split:
                    m = parity.retrieval_metrics(infer, *split)
                    row.update(R1=m["R1"], mAP=m["mAP"], map_drop=base["mAP"] - m["mAP"])
                rows.append(row)
                print(row, flush=True)
    data = {"checkpoint": str(args.checkpoint), "variant": model.cfg.variant, "fp32": base, "samples": args.samples, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    lines = ["| config | flavour | cosine mean | cosine min | mAP drop (pts) |", "|---|---|---|---|---|"]
    for r in rows:
        drop = f"{r['map_drop']:.2f}" if "map_drop" in r else "-"
        lines.append(f"| {r['config']} | {r['flavour']} | {r['cos_mean']:.5f} | {r['cos_min']:.5f} | {drop} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
