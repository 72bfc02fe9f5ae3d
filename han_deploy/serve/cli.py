"""``han-serve`` (or ``python -m han_deploy.serve``): write a Triton repository, prepare and run the bundled server.

Subcommands:

- ``repo OUT ARTIFACT...``: a Triton model repository from exported ONNX files / engines, with every
  batching and instance option (``han-export --target triton`` writes one with the defaults);
- ``prepare``: build the NumPy 1.x env the bundled python stub needs (once per venv; see stub_env);
- ``start REPO``: run the ``tritonserver`` of ``nvidia-pytriton`` on loopback until Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from ..cli_args import positive_int_list
from .triton import INSTANCE_KINDS, PRECISIONS, TritonArtifact, write_triton_repository


def _artifact(text: str) -> TritonArtifact:
    """``PATH[:precision[:max_batch[:flavour]]]``, e.g. ``model.fp16.plan:fp16:32``."""
    path, *rest = text.split(":")
    precision = rest[0] if rest and rest[0] else "fp32"
    max_batch = int(rest[1]) if len(rest) > 1 and rest[1] else None
    flavour = rest[2] if len(rest) > 2 and rest[2] else None
    try:
        return TritonArtifact(Path(path), precision=precision, max_batch=max_batch, flavour=flavour)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The ``han-serve`` parser: the ``repo``, ``prepare`` and ``start`` subcommands."""
    p = argparse.ArgumentParser(
        prog="han-serve",
        description="Serve HAN embeddings with NVIDIA Triton Inference Server: write a model repository, prepare and run "
        "the Triton bundled in nvidia-pytriton on 127.0.0.1. See docs/serving.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    _add_repo_command(sub)
    pr = sub.add_parser("prepare", help="build the NumPy 1.x env the bundled Triton's python stub needs")
    pr.add_argument("--env", type=Path, default=None, help="where (default: $HAN_TRITON_STUB_ENV or VENV/triton-stub-env)")
    _add_start_command(sub)
    return p


def _add_repo_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``repo OUT ARTIFACT...``: the arguments of :func:`write_triton_repository`."""
    r = sub.add_parser(
        "repo",
        help="write a Triton model repository",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Write a Triton model repository: onnxruntime_onnx models for ONNX files, tensorrt_plan models for "
        "engines, and python-backend models (tensor input, and encoded JPEG/PNG input) running han_deploy.runtime.",
    )
    r.add_argument("out", type=Path, help="repository folder to create")
    r.add_argument(
        "artifacts",
        nargs="+",
        type=_artifact,
        metavar="PATH[:PRECISION[:MAX_BATCH[:FLAVOUR]]]",
        help=f"exported files; PRECISION one of {', '.join(PRECISIONS)} (default fp32), MAX_BATCH an engine's profile "
        "max (required for engines), FLAVOUR e.g. tensorrt/cpu for the two INT8 ONNX files",
    )
    _add_batching_args(r)
    _add_python_model_args(r)
    r.add_argument("--name-prefix", default="han", help="prefix of every model name")
    r.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def _add_batching_args(r: argparse.ArgumentParser) -> None:
    """``repo``: dynamic batching, instances and the TensorRT block of the ONNX / engine models."""
    r.add_argument("--max-batch-size", type=int, default=32, help="Triton max_batch_size (engines: their MAX_BATCH)")
    r.add_argument(
        "--preferred-batch-sizes",
        type=positive_int_list("batch sizes"),
        default=(8, 16, 32),
        metavar="LIST",
        help="dynamic batcher sizes",
    )
    r.add_argument("--max-queue-delay-us", type=int, default=2000, help="dynamic batcher's max queue delay (microseconds)")
    r.add_argument("--instances", type=int, default=1, help="instances per GPU (or in all, for KIND_CPU) of ONNX/engine models")
    r.add_argument("--instance-kind", choices=INSTANCE_KINDS, default="KIND_GPU", help="instance kind of ONNX models")
    r.add_argument("--ort-tensorrt", action="store_true", help="add the TensorRT accelerator block to the ONNX models")


def _add_python_model_args(r: argparse.ArgumentParser) -> None:
    """``repo``: which python-backend models and ensembles to write, and how they run."""
    r.add_argument("--no-python", action="store_true", help="do not write the python-backend tensor model")
    r.add_argument("--no-jpeg", action="store_true", help="do not write the python-backend encoded-image model")
    r.add_argument("--no-ensembles", action="store_true", help="do not write han_preprocess and the JPEG ensembles")
    r.add_argument(
        "--ensemble-targets",
        default=None,
        metavar="LIST",
        help="comma list of tensor models the JPEG ensembles end in (default: the python model and every engine)",
    )
    r.add_argument("--python-source", type=Path, help="ONNX file the python models run (default: the FP32 ONNX artifact)")
    r.add_argument("--python-instances", type=int, default=1, help="instances (KIND_CPU) of each python model")
    r.add_argument("--python-threads", type=int, default=0, help="ONNX Runtime intra-op threads per python instance (0: default)")
    r.add_argument(
        "--python-spinning",
        choices=("0", "1"),
        default=None,
        help="ONNX Runtime allow_spinning in the python models (0 on a shared CPU; default: ONNX Runtime's)",
    )
    r.add_argument(
        "--sys-path",
        default=None,
        help="os.pathsep-separated folders the python models put on sys.path to find han_deploy and onnxruntime "
        "(default: where they are on this machine; '' where they are installed in Triton's own Python)",
    )


def _add_start_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``start REPO``: the models to load and the listeners of the bundled tritonserver."""
    s = sub.add_parser(
        "start",
        help="run the bundled tritonserver on loopback until Ctrl-C",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Run the tritonserver bundled in nvidia-pytriton (python backend only) with every listener on "
        "--host, in the foreground; Ctrl-C or SIGTERM stops it by its process id.",
    )
    s.add_argument("repository", type=Path, help="model repository (han-serve repo / han-export --target triton)")
    s.add_argument("--models", default="han_python,han_jpeg", help="comma list of models to load (python-backend ones)")
    s.add_argument("--host", default="127.0.0.1", help="address of every listener (keep loopback unless you mean it)")
    s.add_argument("--http-port", type=int, default=8000, help="HTTP port (0: a free one)")
    s.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (0: a free one)")
    s.add_argument("--metrics-port", type=int, default=8002, help="metrics port (0: a free one)")
    s.add_argument("--log-file", type=Path, default=None, help="server log (default: a temporary file)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "repo":
        sys_path = None if args.sys_path is None else [p for p in args.sys_path.split(os.pathsep) if p]
        root = write_triton_repository(
            args.out,
            args.artifacts,
            max_batch_size=args.max_batch_size,
            preferred_batch_sizes=tuple(args.preferred_batch_sizes),
            max_queue_delay_us=args.max_queue_delay_us,
            instances=args.instances,
            instance_kind=args.instance_kind,
            ort_tensorrt=args.ort_tensorrt,
            python_model=not args.no_python,
            python_source=args.python_source,
            python_instances=args.python_instances,
            python_threads=args.python_threads,
            python_spinning=None if args.python_spinning is None else args.python_spinning == "1",
            jpeg_model=not args.no_jpeg,
            ensembles=not args.no_ensembles,
            ensemble_targets=None if args.ensemble_targets is None else [t for t in args.ensemble_targets.split(",") if t],
            sys_path=sys_path,
            name_prefix=args.name_prefix,
            overwrite=args.overwrite,
        )
        print(f"wrote {root} ({', '.join(sorted(p.parent.name for p in root.glob('*/config.pbtxt')))})")
        return 0
    if args.command == "prepare":
        from .stub_env import prepare_stub_env

        print(f"stub env ready: {prepare_stub_env(args.env)}")
        return 0
    from .server import TritonServer

    server = TritonServer(
        args.repository,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_file=args.log_file,
        models=[m for m in args.models.split(",") if m],
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        print(f"tritonserver pid {server.pid}: HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {server.metrics_url}")
        print("Ctrl-C to stop", flush=True)
        try:
            while not stop.wait(1.0):
                if server.process is not None and server.process.poll() is not None:
                    print(f"tritonserver exited ({server.process.returncode}):\n{server.log_tail()}", file=sys.stderr)
                    return 1
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
