"""TensorRT engines from the precision-baked ONNX files (TensorRT 10.x and 11.x Python API).

**Unverified here**: this module is written against NVIDIA's documented TensorRT 10/11 Python API
and type-checked in CI against the ``tensorrt-stubs`` package (``.ci/typecheck-tensorrt``), but it
has never run: the machines this project is built on have no GPU and the full TensorRT builder is
not installable from PyPI there (docs/export.md). Tests that need it skip with that reason.

What it does: a strongly typed network (precision comes from the ONNX: FP16 weights, INT8 Q/DQ,
and for ``model.int8-fp16.onnx`` INT8 Q/DQ with float16 scales and an FP16 body, so the layers
outside the INT8 ones run in FP16 rather than FP32, see export/mixed_precision.py; TensorRT 11 is
always strongly typed and ignores the flag), parsed by the ONNX parser, one
optimisation profile min/opt/max over the batch axis, a timing cache loaded from a file before and
saved back to it after every build (so later builds, of other precisions or in later exports, reuse
the measured tactics), and the serialised plan written via a temporary name. The return values
TensorRT reports failure through (``parse_from_file``, ``add_optimization_profile``,
``create_timing_cache``, ``set_timing_cache``, ``build_serialized_network``) are checked.
:func:`trtexec_command` gives the equivalent command line.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import INPUT_NAME

if TYPE_CHECKING:  # the types only: the module itself is imported where a build needs it
    import tensorrt

log = logging.getLogger(__name__)


def tensorrt_module() -> Any | None:
    """The ``tensorrt`` module if it has a builder, else None.

    ``tensorrt-stubs`` (and the PyPI placeholder) make ``import tensorrt`` succeed as an empty
    namespace package, so an ImportError test is not enough (docs/export.md).
    """
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return trt if hasattr(trt, "Builder") else None


def gpu_name() -> str | None:
    """Name of the first NVIDIA GPU (from ``nvidia-smi``), or None."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    names = out.stdout.strip().splitlines()
    return names[0].strip() if names else None


@dataclass(frozen=True)
class BatchProfile:
    """The optimisation profile over the batch axis (input ``(N, 3, H, W)``)."""

    min_batch: int
    opt_batch: int
    max_batch: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"need 1 <= min-batch <= opt-batch <= batch, got {self.min_batch}, {self.opt_batch}, {self.max_batch}"
            )

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, 3, self.height, self.width)

    def to_dict(self) -> dict[str, list[int]]:
        return {
            "min": list(self.shape(self.min_batch)),
            "opt": list(self.shape(self.opt_batch)),
            "max": list(self.shape(self.max_batch)),
        }


def trtexec_command(
    onnx_path: str | os.PathLike[str],
    engine_path: str | os.PathLike[str],
    profile: BatchProfile,
    workspace_mib: int,
    timing_cache: str | os.PathLike[str] | None = None,
    input_name: str = INPUT_NAME,
) -> str:
    """The ``trtexec`` command line that builds the same engine as :func:`build_engine`.

    The ONNX and engine appear by file name (run it in the output folder), the timing cache as given.
    """

    def dims(batch: int) -> str:
        return f"{input_name}:" + "x".join(map(str, profile.shape(batch)))

    args = [
        "trtexec",
        f"--onnx={Path(onnx_path).name}",
        f"--saveEngine={Path(engine_path).name}",
        "--stronglyTyped",
        f"--minShapes={dims(profile.min_batch)}",
        f"--optShapes={dims(profile.opt_batch)}",
        f"--maxShapes={dims(profile.max_batch)}",
        f"--memPoolSize=workspace:{workspace_mib}M",
    ]
    if timing_cache is not None:
        args.append(f"--timingCacheFile={os.fspath(timing_cache)}")
    return shlex.join(args)


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX file or build the engine."""


def build_engine(
    onnx_path: str | os.PathLike[str],
    engine_path: str | os.PathLike[str],
    profile: BatchProfile,
    workspace_mib: int = 4096,
    timing_cache: str | os.PathLike[str] | None = None,
    input_name: str = INPUT_NAME,
) -> Path:
    """Build a strongly typed engine from ``onnx_path`` and write the serialised plan to ``engine_path``.

    ``timing_cache`` is a file the builder's tactic timings are loaded from (when it exists) and saved
    back to. Unverified (no GPU or TensorRT builder where this was written): see the module docstring.
    """
    if tensorrt_module() is None:
        raise EngineBuildError("TensorRT with a builder is not installed (import tensorrt has no Builder)")
    import tensorrt as trt  # typed: CI checks these calls against tensorrt-stubs

    engine_path = Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if hasattr(creation, "STRONGLY_TYPED"):  # 10.x: opt in; 11.x: kept for compatibility, always on
        flags |= 1 << int(creation.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    opt_profile = builder.create_optimization_profile()
    shapes = [trt.Dims(list(profile.shape(b))) for b in (profile.min_batch, profile.opt_batch, profile.max_batch)]
    opt_profile.set_shape(input_name, *shapes)
    if config.add_optimization_profile(opt_profile) < 0:  # -1: TensorRT found the profile invalid
        raise EngineBuildError(f"TensorRT refused the optimisation profile {profile.to_dict()} for input {input_name!r}")

    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache = None if cache_path is None else _attach_timing_cache(config, cache_path)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    _write_atomic(engine_path, bytes(memoryview(plan)))
    if cache is not None and cache_path is not None:
        _write_atomic(cache_path, bytes(memoryview(cache.serialize())))  # the build added its timings to it in place
    return engine_path


def _attach_timing_cache(config: tensorrt.IBuilderConfig, path: Path) -> tensorrt.ITimingCache:
    """Give ``config`` the timing cache saved at ``path``, or a fresh one when there is none or TensorRT refuses it.

    The caller keeps the returned cache until the build is over (TensorRT does not own it).
    """
    saved = path.read_bytes() if path.is_file() else b""
    if saved:
        cache = config.create_timing_cache(saved)
        if cache is not None and config.set_timing_cache(cache, False):
            return cache
        log.warning("TensorRT refused the timing cache %s (another TensorRT version or GPU?): a fresh one replaces it", path)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        raise EngineBuildError(f"TensorRT refused an empty timing cache (for {path})")
    return cache


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` via a temporary name beside ``path``, so no half-written file is ever left there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
