"""Which nodes to keep out of INT8, and which calibration: measured on one checkpoint.

Exports FP32 once, then quantizes with the shipped setting and with one change at a time (one more
group quantized, or one more part kept in float, or another calibration), and reports the
per-sample cosine against PyTorch on held-out synthetic crops (seed 1; calibration on synthetic
crops, seed 0). Writes JSON and a Markdown table.

    python benchmarks/export/ablate_int8.py --checkpoint runs/synth-small/best.safetensors \\
        --out benchmarks/export/results/ablation_small.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import warnings
from pathlib import Path


def main() -> None:
    import onnx
    import torch

    from han_deploy.contract.preprocess import preprocess
    from han_deploy.export import calibration, parity, quantize
    from han_deploy.export.onnx_export import export_onnx
    from han_deploy.model import create_model, load_checkpoint

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="trained weights (without: fresh weights, numbers say little)")
    p.add_argument("--variant", default="small", help="used only without --checkpoint")
    p.add_argument("--calib-size", type=int, default=128)
    p.add_argument("--samples", type=int, default=64, help="held-out synthetic crops for the cosine")
    p.add_argument("--flavour", choices=quantize.FLAVOURS, default="cpu", help="flavour of the single-change rows")
    p.add_argument("--out", type=Path, default=Path("benchmarks/export/results/ablation.json"))
    args = p.parse_args()
    logging.getLogger().setLevel(logging.ERROR)

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

    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp32 = export_onnx(model, Path(tmp) / "model.onnx")
        names = [n.name for n in onnx.load(str(fp32)).graph.node]

        def float_where(prefix: str) -> tuple[str, ...]:
            return tuple(n for n in names if n.startswith(prefix))

        without = {g: tuple(k for k in quantize.KEEP_FLOAT if k != g) for g in quantize.KEEP_FLOAT}
        configs = [
            ("shipped", {}),
            ("shipped, TensorRT flavour", {"flavour": "tensorrt"}),
            ("also quantize the stem", {"keep_float": without["stem"]}),
            ("also quantize the head FCs + embedding tail", {"keep_float": without["embedding-tail"]}),
            ("+ attention modules float", {"extra_float": float_where("/attention.")}),
            ("+ global levels float", {"extra_float": float_where("/global_levels")}),
            ("+ local levels float", {"extra_float": float_where("/local_levels")}),
            ("percentile 99.999", {"percentile": 99.999}),
            ("minmax calibration", {"calib_method": "minmax"}),
            ("entropy calibration", {"calib_method": "entropy"}),
        ]
        for label, change in configs:
            kwargs = {"flavour": args.flavour, **change}
            path = Path(tmp) / "int8.onnx"
            quantize.quantize_int8(fp32, path, reader, **kwargs)
            cos = parity.cosine_rows(parity.run_batched(parity.ort_infer(path), x, 32), ref)
            row = {"config": label, "flavour": kwargs["flavour"], "cos_mean": float(cos.mean()), "cos_min": float(cos.min())}
            rows.append(row)
            print(row, flush=True)
    data = {
        "checkpoint": str(args.checkpoint),
        "variant": model.cfg.variant,
        "samples": args.samples,
        "calib_size": args.calib_size,
    }
    data["rows"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    lines = ["| change from the shipped setting | flavour | cosine mean | cosine min |", "|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['flavour']} | {r['cos_mean']:.5f} | {r['cos_min']:.5f} |" for r in rows]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
