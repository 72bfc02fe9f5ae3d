"""``han-bench``: FLOPs against the paper's budgets (``--flops``), and latency / throughput / memory per backend.

Examples::

    han-bench --flops                                  # FLOPs table of every variant and block type
    han-bench --variant small --backend torch,onnxruntime --batch 1,8,32 --json out.json --plot out.png
    han-bench --variant large --backend onnxruntime --precision fp32,int8 --threads 2 --peak
    han-bench --engine han.onnx                        # an exported artifact (ONNX, TensorRT engine, checkpoint)
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

from ..cli_args import choice_list, positive_int_list, positive_number
from .flops import ROWS, flops_report, flops_table

ENGINE_KINDS = "an ONNX file (.onnx), a TensorRT engine (.engine/.plan/.trt) or a han-deploy checkpoint (.safetensors)"


def build_parser() -> argparse.ArgumentParser:
    """The ``han-bench`` parser: what to measure (``--flops`` / ``--variant`` / ``--engine``) and the latency options."""
    p = argparse.ArgumentParser(
        prog="han-bench",
        description="FLOPs/params of HAN against the paper's budgets, and latency/throughput/peak memory per backend, "
        "precision and batch size. The JSON schema is in docs/benchmarking.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    _add_mode_args(p)
    g = p.add_argument_group("latency benchmark (--variant / --engine)")
    _add_workload_args(g)
    _add_timing_args(g)
    _add_runtime_args(g)
    _add_output_args(g)
    return p


def _add_mode_args(p: argparse.ArgumentParser) -> None:
    """``--flops`` / ``--variant`` / ``--engine`` (one of them), and the ``--json`` / ``--rows`` output options."""
    from .models import VARIANTS

    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--flops",
        action="store_true",
        help="count MACs/FLOPs/params of every variant and block type "
        "(FLOPs = 2 x conv+linear multiply-adds, the paper's convention); exit 1 if any is outside +-2%% of its budget",
    )
    what.add_argument("--variant", choices=VARIANTS, help="benchmark a freshly built HAN variant (random weights, seed 0)")
    what.add_argument("--engine", metavar="PATH", type=Path, help=f"benchmark an artifact: {ENGINE_KINDS}")
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="OUT",
        help="with --flops: print one JSON object keyed by row name instead of the table; "
        "with --variant/--engine: write the results document to OUT (no OUT or '-': print it instead of the table)",
    )
    p.add_argument(
        "--rows", default=",".join(ROWS), help=f"with --flops: comma-separated rows (default: all of {', '.join(ROWS)})"
    )


def _add_workload_args(g: argparse._ArgumentGroup) -> None:
    """What each latency case runs: backends, precisions, block type and batch sizes."""
    from .runners import BACKENDS, PRECISIONS

    g.add_argument(
        "--backend",
        type=choice_list(BACKENDS, "backend"),
        help="comma-separated backends (default: torch for --variant, the artifact's own for --engine); ONNX Runtime exports "
        "the variant on the fly; tensorrt needs an engine (--engine X.trt) and a GPU",
    )
    g.add_argument(
        "--precision",
        type=choice_list(PRECISIONS, "precision"),
        default=["fp32"],
        help="comma-separated precisions (default fp32): int8 = the export stage's INT8 Q/DQ ONNX (CPU flavour on --device cpu), "
        "fp16 = FP16 ONNX or PyTorch autocast on CUDA; combinations a backend cannot run are reported as skipped",
    )
    g.add_argument("--block", choices=("depthwise", "inception", "residual"), default="depthwise", help="block type of --variant")
    g.add_argument(
        "--batch", type=positive_int_list("batch sizes"), default=[1, 8, 32], help="comma-separated batch sizes (default 1,8,32)"
    )


def _add_timing_args(g: argparse._ArgumentGroup) -> None:
    """How each case is timed: warm-up, iterations or duration, repeats and the noise flag."""
    g.add_argument(
        "--warmup", type=positive_number(int, "--warmup", allow_zero=True), default=10, help="untimed calls first (default 10)"
    )
    g.add_argument("--iters", type=positive_number(int, "--iters"), default=30, help="timed calls per repeat (default 30)")
    g.add_argument("--duration", type=positive_number(float, "--duration"), help="seconds per repeat instead of --iters")
    g.add_argument(
        "--repeats",
        type=positive_number(int, "--repeats"),
        default=5,
        help="repeats; p50 is the median of their medians (default 5)",
    )
    g.add_argument(
        "--noise-threshold",
        type=positive_number(float, "--noise-threshold"),
        default=0.10,
        help="flag a result NOISY when (max - min) / median of the repeat medians exceeds this (default 0.10)",
    )


def _add_runtime_args(g: argparse._ArgumentGroup) -> None:
    """How the backends run: threads, device, PyTorch memory format and compile mode, spinning, INT8 calibration."""
    from .runners import COMPILE_MODES

    g.add_argument(
        "--threads",
        type=positive_number(int, "--threads"),
        help="intra-op threads for PyTorch and ONNX Runtime (default: library default)",
    )
    g.add_argument(
        "--device",
        default=None,
        help="cpu (default; cuda for a TensorRT engine) or cuda[:N]; CUDA paths are written against the API, untested here",
    )
    g.add_argument("--channels-last", action="store_true", help="PyTorch: channels_last memory format for model and input")
    g.add_argument(
        "--compile",
        nargs="?",
        const="default",
        choices=COMPILE_MODES,
        metavar="MODE",
        help=f"PyTorch: torch.compile the model ({', '.join(COMPILE_MODES)}; reduce-overhead = CUDA graphs on a GPU)",
    )
    g.add_argument(
        "--spinning",
        action="store_true",
        help="let idle worker threads spin (ONNX Runtime allow_spinning, PyTorch's OpenMP wait policy); default off: "
        "session.intra_op.allow_spinning=0 and OMP_WAIT_POLICY=PASSIVE, fair when backends or processes share the CPU",
    )
    g.add_argument(
        "--calib-size",
        type=positive_number(int, "--calib-size"),
        default=64,
        help="synthetic crops for INT8 calibration (default 64)",
    )


def _add_output_args(g: argparse._ArgumentGroup) -> None:
    """What else a latency run measures or writes: the GEMM peak, a plot, the on-the-fly exports."""
    g.add_argument("--peak", action="store_true", help="also measure the machine's FP32/INT8 GEMM peak and report efficiency")
    g.add_argument("--plot", metavar="OUT.png", type=Path, help="write a PNG of latency and throughput against batch size")
    g.add_argument("--workdir", type=Path, help="keep on-the-fly exports here (default: a temporary folder)")


def flops_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    bad = [n for n in names if n not in ROWS]
    if bad:
        parser.error(f"unknown row(s) {', '.join(bad)}; choose from {', '.join(ROWS)}")
    reports = [flops_report(n) for n in names]
    if args.json:
        keep = ("macs", "flops", "params", "budget", "deviation", "within_budget")
        text = json.dumps({r.name: {k: r.to_dict()[k] for k in keep} for r in reports}, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    if args.json != "-":
        print(flops_table(reports))
        print(
            "MACs: conv+linear multiply-adds (fvcore); FLOPs = 2 x MACs (paper's convention, docs/architecture.md);"
            " torch FLOPs: torch.utils.flop_counter cross-check; input 1x3x160x64"
        )
    return 0 if all(r.within_budget for r in reports) else 1


def _check_engine(path: Path, parser: argparse.ArgumentParser) -> None:
    from ..runtime.backends import CHECKPOINT_SUFFIXES, ENGINE_SUFFIXES, ONNX_SUFFIXES

    if not path.exists():
        parser.error(f"--engine: file not found: {path}")
    if not path.is_file():
        parser.error(f"--engine: not a file: {path}")
    if path.suffix.lower() not in ONNX_SUFFIXES + ENGINE_SUFFIXES + CHECKPOINT_SUFFIXES:
        parser.error(f"--engine: unsupported file {path.name!r}; expected {ENGINE_KINDS}")


def _cases(args: argparse.Namespace, parser: argparse.ArgumentParser, workdir: Path) -> list[Any]:
    from ..runtime.backends import CHECKPOINT_SUFFIXES, ENGINE_SUFFIXES
    from .cases import RunOptions, artifact_case, module_cases
    from .models import create_han, model_info

    suffix = args.engine.suffix.lower() if args.engine is not None else ""
    device = args.device or ("cuda" if suffix in ENGINE_SUFFIXES else "cpu")
    if device != "cpu" and not device.startswith("cuda"):
        parser.error(f"--device must be cpu or cuda[:N], got {device!r}")
    opts = RunOptions(device, args.threads, args.channels_last, args.compile, args.spinning, args.calib_size)
    if args.engine is not None and suffix not in CHECKPOINT_SUFFIXES:
        if args.backend and args.backend != (["tensorrt"] if suffix in ENGINE_SUFFIXES else ["onnxruntime"]):
            parser.error(
                f"--backend {','.join(args.backend)} does not apply to {args.engine.name}: its backend is set by the file"
            )
        return [artifact_case(args.engine, opts)]
    if args.engine is not None:
        from ..model import load_checkpoint

        try:
            model, _meta = load_checkpoint(args.engine)
        except (ValueError, OSError) as exc:
            parser.error(f"--engine: cannot load checkpoint {args.engine}: {exc}")
        name = f"{args.engine.stem}"
    else:
        overrides = {} if args.block == "depthwise" else {"block": args.block}
        model = create_han(args.variant, **overrides)
        name = f"han_{args.variant}" + ("" if args.block == "depthwise" else f"_{args.block}")
    info = model_info(model.eval(), name)
    return module_cases(name, model, info, args.backend or ["torch"], args.precision, workdir, opts)


def bench_main(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str], policy: dict[str, Any]) -> int:
    from .machine import load_snapshot, machine_record
    from .measure import add_efficiency, measure_cases
    from .report import SCHEMA, legend, plot_latency_throughput, text_table, write_json
    from .timing import TimingPlan

    if args.engine is not None:
        _check_engine(args.engine, parser)
    plan = TimingPlan(
        args.warmup, None if args.duration else args.iters, args.duration, args.repeats, noise_threshold=args.noise_threshold
    )
    with tempfile.TemporaryDirectory(prefix="han-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        cases = _cases(args, parser, workdir)
        before = load_snapshot()
        peaks = None
        if args.peak:
            from .peak import measure_gemm_peaks

            peaks = measure_gemm_peaks(threads=args.threads)
        results = measure_cases(cases, args.batch, plan)
        after = load_snapshot()
    add_efficiency(results, (peaks or {}).get("fp32_peak_gflops"), (peaks or {}).get("int8_peak_gops"))
    doc = {
        "schema": SCHEMA,
        "command": "han-bench " + " ".join(shlex.quote(a) for a in argv),
        "machine": machine_record(),
        "load_before": before,
        "load_after": after,
        "timing": plan.describe(),
        "threads": args.threads,
        "spinning": {"onnxruntime_allow_spinning": args.spinning, **policy},
        "gemm_peak": peaks,
        "results": results,
    }
    if args.plot:
        if plot_latency_throughput(results, args.plot, title=doc["command"]) is None:
            print(f"no plot written to {args.plot}: nothing ran", file=sys.stderr)
    if args.json == "-":
        print(json.dumps(doc, indent=2, default=str))
    else:
        if args.json:
            write_json(doc, args.json)
        print(text_table(results))
        print(legend((peaks or {}).get("fp32_peak_gflops"), (peaks or {}).get("fp32_peak_library")))
        for res in results:
            note = (res.get("runner") or {}).get("note")
            if note and not (res.get("runner") or {}).get("verified", True):
                print(f"note: {res['key']}: {note}")
    return 1 if any(r["status"] == "failed" or any(b.get("status") == "failed" for b in r["batches"]) for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.flops:
        return flops_main(args, parser)
    if args.variant is None and args.engine is None:
        parser.error("nothing to do: pass --flops, --variant NAME or --engine PATH")
    policy = set_wait_policy(args.spinning)
    return bench_main(args, parser, argv, policy)


def set_wait_policy(spinning: bool) -> dict[str, Any]:
    """OpenMP's wait policy for PyTorch, matching ONNX Runtime's spinning setting; effective only before torch loads.

    Under oversubscription (another backend or process on the same cores) spinning OpenMP threads make
    PyTorch eager many times slower (measured here: 1.4 s vs 0.12 s per HAN-S forward at load 9 on 2 cores).
    """
    policy = "ACTIVE" if spinning else "PASSIVE"
    effective = "torch" not in sys.modules
    if effective:
        os.environ.setdefault("OMP_WAIT_POLICY", policy)
    return {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"), "set_before_torch_import": effective}


if __name__ == "__main__":
    sys.exit(main())
