"""``han-export``: PyTorch HAN -> ONNX (FP32, FP16, two INT8 Q/DQ flavours), TensorRT engines, recipes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
import warnings
from pathlib import Path

from ..cli_args import choice_list, positive_number
from . import calibration, parity, quantize
from .exporter import DEFAULT_PRECISIONS, PRECISIONS, TARGETS, ExportError, ExportOptions, RefusedArtifactsError, run_export


def _calib_source(value: str) -> Path | str:
    """``--calib-data``: the word ``synthetic`` asks for the generator, anything else is a folder."""
    return calibration.SYNTHETIC if value == calibration.SYNTHETIC else Path(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="han-export",
        description="Export a HAN re-id model to ONNX (FP32, FP16, INT8 Q/DQ for TensorRT and for the ONNX Runtime CPU), "
        "optionally TensorRT engines and Triton / DeepStream recipes. Every artifact passes a parity gate against "
        "PyTorch. Exit status: 0 all passed; 1 a gate failed (the artifacts that passed are written and the failed ones "
        "refused, named in the output and the manifest; nothing is written when FP32 fails or with --strict); 2 bad "
        "input; 3 a step crashed. See docs/export.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_model_args(p)
    _add_int8_args(p)
    _add_qat_args(p)
    _add_tensorrt_args(p)
    _add_gate_and_output_args(p)
    return p


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from ..model import list_models  # the registry also names the benchmark's comparators: offer HAN variants only

    han = list_models("han_*")
    short = [name.removeprefix("han_") for name in han]
    p.add_argument(
        "--variant",
        default="medium",
        choices=short + han,
        metavar="NAME",
        help=f"HAN variant: {', '.join(short)} (or {', '.join(han)})",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="trained safetensors checkpoint (han-train); without it a freshly "
        "initialised network is exported (for FLOPs/latency only) and reduced-precision gates are not enforced",
    )
    p.add_argument(
        "--precision",
        type=choice_list(PRECISIONS, "precision"),
        default=DEFAULT_PRECISIONS,
        metavar="LIST",
        help="comma list of fp32, fp16, int8 (int8 writes both INT8 flavours), int8-fp16 (the TensorRT INT8 model with "
        "its unquantized layers in FP16, opset 19; also writes int8); FP32 is always written",
    )
    p.add_argument("--fp16-io", action="store_true", help="model.fp16.onnx takes and returns float16 (default: float32 I/O)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 16: GridSample)")
    p.add_argument(
        "--simplify", action=argparse.BooleanOptionalAction, default=True, help="simplify the FP32 graph with onnxslim"
    )


def _add_int8_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--calib-data",
        type=_calib_source,
        metavar="DIR",
        help="folder of person crops from the target cameras for INT8 calibration (without --eval-data a part is held "
        "apart for the gate); 'synthetic' calibrates on generated people on purpose; default: synthetic with a warning",
    )
    p.add_argument("--calib-method", choices=quantize.CALIB_METHODS, default="percentile", help="INT8 range calibration")
    p.add_argument("--calib-size", type=int, default=128, metavar="N", help="number of calibration crops")
    p.add_argument(
        "--sensitivity-layers",
        type=int,
        default=12,
        metavar="N",
        help="when an INT8 flavour misses its target on probe crops held apart from calibration, keep up to N most "
        "harmful layers float (0: off)",
    )


def _add_qat_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--qat-epochs",
        type=positive_number(int, "--qat-epochs", allow_zero=True),
        default=0,
        metavar="N",
        help="quantization-aware fine-tuning: also write model.int8-qat.onnx, a copy of the checkpoint fake-quantized "
        "where model.int8.onnx has Q/DQ and distilled N epochs toward the FP32 model's embeddings, gated like it "
        "(needs --checkpoint, int8 and a folder of crops; 0: off)",
    )
    p.add_argument(
        "--qat-data",
        type=Path,
        metavar="DIR",
        help="--qat-epochs: folder of person crops to fine-tune on (any images, recursive, no labels; the gate's crops "
        "are left out); none: the --calib-data folder",
    )
    p.add_argument(
        "--qat-lr",
        type=positive_number(float, "--qat-lr"),
        metavar="LR",
        help="--qat-epochs: Adam's peak learning rate, cosine-decayed; none: 1e-5",
    )
    p.add_argument(
        "--qat-scales",
        metavar="MODE",
        help="--qat-epochs: fixed = keep model.int8.onnx's calibrated activation scales (none: fixed); learned = "
        "fine-tune them too, from those (LSQ step-size gradient on each scale's log, Adam lr 1e-2)",
    )


def _add_tensorrt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch", type=int, default=32, metavar="N", help="max batch of the dynamic TensorRT profile (and of the recipes)"
    )
    p.add_argument("--min-batch", type=int, default=1, metavar="N", help="min batch of the TensorRT profile")
    p.add_argument("--opt-batch", type=int, metavar="N", help="batch TensorRT optimises for (default: half of --batch)")
    p.add_argument(
        "--engine", action="store_true", help="build TensorRT engines (needs TensorRT 10/11 and a GPU; unverified here)"
    )
    p.add_argument("--workspace", type=int, default=4096, metavar="MIB", help="TensorRT builder workspace in MiB")
    p.add_argument(
        "--timing-cache",
        type=Path,
        metavar="PATH",
        help="where the TensorRT timing cache is loaded from and saved to, so later builds reuse tactic timings "
        "(default: timing.cache inside the output folder)",
    )


def _add_gate_and_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--eval-data",
        type=Path,
        metavar="DIR",
        help="Market-1501-layout split: adds R1/mAP of every artifact to the gate (INT8 may lose --max-map-drop)",
    )
    p.add_argument(
        "--max-map-drop",
        type=float,
        default=parity.MAX_MAP_DROP,
        metavar="PTS",
        help="mAP points an INT8 artifact may lose against FP32 on --eval-data",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="all or nothing: any failed gate writes no artifact (for CI pipelines); default: write what passed",
    )
    p.add_argument(
        "--target",
        type=choice_list(TARGETS, "target"),
        default=(),
        metavar="LIST",
        help="also write deployment recipes: triton and/or deepstream (comma list)",
    )
    p.add_argument("--output", type=Path, default=Path("export-out"), metavar="DIR", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed for fresh weights and the calibration / gate crops")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON instead of a summary")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def _gate_lines(results: list[dict]) -> list[str]:
    lines = ["  gate (per-sample cosine vs PyTorch, worst of batch 1/7/32):"]
    for r in results:
        status = "ok" if not r["failures"] else ("FAIL" if r["enforced"] else "below threshold, not enforced")
        lines.append(
            f"    {r['artifact']:<22} {r['statistic']} {r['value']:.6f} (>= {r['threshold']}, {r['session']}) {status}"
            + _retrieval_text(r["retrieval"])
        )
        for session, other in r.get("reported", {}).items():
            text = f"    {'':<22} {r['statistic']} {other[r['statistic']]:.6f} ({session}, reported)"
            lines.append(text + _retrieval_text(other["retrieval"]))
    return lines


def _retrieval_text(retrieval: dict | None) -> str:
    return "" if not retrieval else f"  R1 {retrieval['R1']:.1f} mAP {retrieval['mAP']:.1f} (drop {retrieval['map_drop']:+.2f})"


def _summary(data: dict) -> str:
    lines = [f"han_{data['variant']} -> {len(data['artifacts'])} artifact(s)", f"  gate inputs: {data['parity']['inputs']}"]
    if data["calibration"]:
        lines.append(f"  INT8 calibration: {data['calibration']['size']} crops of {data['calibration']['source']}")
    for a in data["artifacts"]:
        kept = a.get("quantization", {}).get("sensitivity", {}).get("kept")
        if kept:
            lines.append(f"  {a['file']}: kept float by the sensitivity pass: {', '.join(kept)}")
        qat = a.get("quantization", {}).get("qat")
        if qat:
            cos = qat["probe_cosine"]
            lines.append(
                f"  {a['file']}: QAT {qat['epochs']} epoch(s) on {qat['crops']} crops at lr {qat['lr']:g}; mean cosine vs FP32 "
                f"on the {cos['crops']} gate crops: PTQ {cos['ptq']:.4f}, QAT {cos['qat']:.4f} "
                f"({cos['qat_vs_own_fp32']:.4f} vs its own weights)"
            )
    lines += _gate_lines(data["parity"]["results"])
    for name in data["parity"]["refused"]:
        lines.append(f"  {name}: REFUSED (failed its gate, not written)")
    for e in data["engines"]:
        lines.append(f"  engine {e['file']}: {'built' if e['built'] else 'not built'}; trtexec: {e['trtexec']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # progress on our own logger; ONNX Runtime's quantizer logs generic advice on the root logger: keep that quiet
    ours = logging.getLogger("han_deploy")
    if not any(getattr(h, "han_export", False) for h in ours.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("han-export: %(message)s"))
        handler.han_export = True  # type: ignore[attr-defined]
        ours.addHandler(handler)
    ours.setLevel(logging.WARNING if args.quiet else logging.INFO)
    ours.propagate = False
    logging.getLogger().setLevel(logging.ERROR)
    warnings.simplefilter("default")
    opts = ExportOptions(
        variant=args.variant,
        output=args.output,
        checkpoint=args.checkpoint,
        precisions=tuple(dict.fromkeys(("fp32", *args.precision))),
        calib_data=args.calib_data,
        calib_method=args.calib_method,
        calib_size=args.calib_size,
        batch=args.batch,
        min_batch=args.min_batch,
        opt_batch=args.opt_batch,
        opset=args.opset,
        simplify=args.simplify,
        engine=args.engine,
        workspace=args.workspace,
        timing_cache=args.timing_cache,
        fp16_io=args.fp16_io,
        eval_data=args.eval_data,
        max_map_drop=args.max_map_drop,
        targets=tuple(args.target),
        seed=args.seed,
        sensitivity_layers=args.sensitivity_layers,
        qat_epochs=args.qat_epochs,
        qat_data=args.qat_data,
        qat_lr=args.qat_lr,
        qat_scales=args.qat_scales,
        strict=args.strict,
        progress=not args.quiet,
    )
    try:
        data = run_export(opts)
    except RefusedArtifactsError as exc:
        print(json.dumps(exc.manifest, indent=2) if args.json else _summary(exc.manifest))
        refused = ", ".join(exc.manifest["parity"]["refused"])
        print(f"han-export: {exc}\nrefused {refused}; wrote the rest and {Path(args.output) / 'manifest.json'}", file=sys.stderr)
        return 1
    except parity.ParityGateError as exc:
        print("\n".join(_gate_lines([r.to_dict() for r in exc.results])), file=sys.stderr)
        print(f"han-export: {exc}\nnothing was written to {args.output}", file=sys.stderr)
        return 1
    except ExportError as exc:
        print(f"han-export: error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # a crash is not a failed gate: its own status, with the traceback
        traceback.print_exc()
        print(
            f"han-export: an export step crashed (a bug, please report it); nothing was written to {args.output}", file=sys.stderr
        )
        return 3
    print(json.dumps(data, indent=2) if args.json else _summary(data))
    print(f"wrote {Path(args.output) / 'manifest.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
