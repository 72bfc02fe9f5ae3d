"""Turn "this model, these backends and precisions" into :class:`~han_deploy.bench.measure.Case` s.

Shared by ``han-bench`` and the suite in ``benchmarks/``. Exports happen lazily, inside a case's
factory, so a failed export is reported as that case's failure, and the FP32 ONNX is exported once
per model and reused by its INT8 and FP16 cases.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import HANConfig
from .measure import Case
from .models import ModelInfo, engine_info, export_fp16, export_fp32, export_int8, info_from_contract, onnx_contract
from .runners import BACKENDS, PRECISIONS, BackendRunner, ForeignOnnxRunner, Runner, Skipped, TorchRunner

TENSORRT_FROM_MODEL = (
    "han-bench builds no TensorRT engine: build one with han-export (needs the TensorRT builder and an NVIDIA GPU, "
    "neither is available here) and time it with --engine X.trt; the TensorRT path is written against the API and unverified here"
)


@dataclass
class RunOptions:
    """How runners are set up: device, threads, PyTorch options, ONNX Runtime spinning, INT8 calibration size."""

    device: str = "cpu"
    threads: int | None = None
    channels_last: bool = False
    compile: str | None = None
    spinning: bool = False
    calib_size: int = 64


def _torch_suffix(opts: RunOptions) -> str:
    return ("+cl" if opts.channels_last else "") + (f"+compile-{opts.compile}" if opts.compile else "")


def module_cases(
    name: str,
    model: Any,
    info: ModelInfo,
    backends: list[str],
    precisions: list[str],
    workdir: Path,
    opts: RunOptions,
    onnx_files: dict[str, Path] | None = None,
) -> list[Case]:
    """Cases for an in-memory ``nn.Module``: PyTorch directly, ONNX Runtime on its exports, TensorRT skipped.

    ``onnx_files`` (precision -> path) supplies exports made elsewhere (e.g. by ``han-export``); the rest are
    exported here on first use.
    """
    is_han = isinstance(getattr(model, "cfg", None), HANConfig)
    exported: dict[str, Path] = dict(onnx_files or {})

    def onnx_path(precision: str) -> Path:
        if precision in exported:
            return exported[precision]
        if "fp32" not in exported:
            exported["fp32"] = export_fp32(model, workdir / f"{name}.fp32.onnx", info)
        if precision == "int8":
            if not is_han:
                raise Skipped("INT8 is exported for HAN only (the quantizer's float-kept nodes are HAN's)")
            flavour = "cpu" if opts.device == "cpu" else "tensorrt"
            exported["int8"] = export_int8(
                exported["fp32"], workdir / f"{name}.int8-{flavour}.onnx", model.cfg, flavour, opts.calib_size
            )
        elif precision == "fp16":
            exported["fp16"] = export_fp16(exported["fp32"], workdir / f"{name}.fp16.onnx")
        return exported[precision]

    def build(backend: str, precision: str, key: str) -> Runner:
        if backend == "torch":
            return TorchRunner(model, key, opts.device, precision, opts.channels_last, opts.compile, opts.threads)
        if backend == "tensorrt":
            raise Skipped(TENSORRT_FROM_MODEL)
        path = onnx_path(precision)
        if is_han:
            return BackendRunner(path, key, opts.device, opts.threads, spinning=opts.spinning, precision=precision)
        if opts.device != "cpu":
            raise Skipped(f"non-HAN ONNX models are timed on the CPU provider only (device {opts.device!r} asked for)")
        return ForeignOnnxRunner(path, key, opts.threads, opts.spinning)

    cases = []
    for backend in backends:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        for precision in precisions:
            if precision not in PRECISIONS:
                raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
            key = f"{name}/{backend}/{precision}" + (_torch_suffix(opts) if backend == "torch" else "")
            cases.append(Case(key, info, backend, precision, functools.partial(build, backend, precision, key)))
    return cases


def artifact_case(path: Path, opts: RunOptions) -> Case:
    """A case for an existing ONNX file or TensorRT engine, run through the runtime's ``load_backend``.

    An ONNX file without a HAN contract (another network) runs in a plain ONNX Runtime session instead.
    """
    from ..runtime.backends import ENGINE_SUFFIXES

    build: Callable[[], Runner]
    if path.suffix.lower() in ENGINE_SUFFIXES:
        info, precision = engine_info(path)
        build = functools.partial(BackendRunner, path, path.name, opts.device, precision=precision)
        return Case(f"{path.name}/tensorrt", info, "tensorrt", precision, build)
    contract, cfg, precision = onnx_contract(path)
    info = info_from_contract(path, contract, cfg)
    if cfg is None:
        build = functools.partial(ForeignOnnxRunner, path, path.name, opts.threads, opts.spinning)
    else:
        build = functools.partial(
            BackendRunner, path, path.name, opts.device, opts.threads, spinning=opts.spinning, precision=precision
        )
    return Case(f"{path.name}/onnxruntime", info, "onnxruntime", precision, build)
