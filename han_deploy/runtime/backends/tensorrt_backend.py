"""TensorRT engine backend (``.engine``/``.plan``/``.trt``), written against the TensorRT 10/11 runtime API.

UNVERIFIED: no NVIDIA GPU was available where this was written, so this module has never run on one. It is
type-checked against ``tensorrt-stubs`` (``.ci/typecheck-tensorrt``) and tested against a fake engine. Buffer
shapes come from the engine: the input's optimisation-profile maximum (``get_tensor_profile_shape``) and each
output's shape as the execution context infers it at that maximum. Every I/O tensor gets a device buffer and
an address (``enqueueV3`` needs them all), and every TensorRT call that reports failure through its return
value (``set_optimization_profile_async``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``)
is checked. It needs the full ``tensorrt`` package and ``cuda-python``: han-export does not build
version-compatible engines, so the lean runtime ``tensorrt_lean`` cannot load them (docs/export.md). The
contract comes from the ``manifest.json`` next to the engine. The GPU is checked *before* a ``Runtime`` is
created: without one the lean runtime (tried here) logged a CUDA error and the process then segfaulted
(docs/export.md, "TensorRT (unverified here)"); here you get a Python error instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...config import OUTPUT_NAME
from .base import BaseBackend, ModelFileError, read_manifest_contract, tensor_meta, wrong_kind_error

if TYPE_CHECKING:  # the types only; TensorRT itself is imported once a GPU has been seen
    import tensorrt

UNVERIFIED = "the TensorRT backend is written against the TensorRT 10/11 API but unverified (never run on a GPU)"


class TensorRTUnavailable(RuntimeError):
    """TensorRT, cuda-python or a GPU is missing: the engine cannot run on this machine."""


def _cudart() -> Any:
    """cuda-python's runtime bindings (module path changed in cuda-python 12.6)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise TensorRTUnavailable(f"running a TensorRT engine needs cuda-python (pip install cuda-python); {UNVERIFIED}")


def _check(result: Any) -> Any:
    """cuda-python returns (error, value...) tuples: raise on error, return the value(s)."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else rest


def _require_tensorrt() -> None:
    """Raise :class:`TensorRTUnavailable` unless the real ``tensorrt`` package is importable.

    ``tensorrt-stubs`` (and PyPI's placeholder) make ``import tensorrt`` succeed as an empty namespace
    package, so an ImportError test is not enough (docs/export.md, "TensorRT (unverified here)").
    """
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # OSError: the package is there, its libraries are not
        raise TensorRTUnavailable(f"TensorRT 10/11 is not installed or does not load ({exc}); {UNVERIFIED}") from exc
    if not hasattr(trt, "Runtime"):
        raise TensorRTUnavailable(f"the installed tensorrt package is empty (type stubs or a placeholder); {UNVERIFIED}")


def gpu_count() -> int:
    """Number of CUDA devices cuda-python sees (0 when no driver / no GPU)."""
    cudart = _cudart()
    try:
        err, count = cudart.cudaGetDeviceCount()
    except Exception:  # a missing driver library surfaces as various errors
        return 0
    return int(count) if int(err) == 0 else 0


def buffer_shape(name: str, engine_shape: Sequence[int], largest: Sequence[int] | None = None) -> tuple[int, ...]:
    """The shape to allocate for an I/O tensor: its engine shape when static, else ``largest`` (the bound TensorRT gives).

    ``largest`` is the profile maximum for an input and the inferred shape at that maximum for an output;
    a dynamic axis without such a bound (or a data-dependent one, still -1) cannot be allocated up front.
    """
    shape = tuple(int(d) for d in engine_shape)
    if all(d >= 0 for d in shape):
        return shape
    bound = None if largest is None else tuple(int(d) for d in largest)
    if bound is None or len(bound) != len(shape) or any(d < 0 for d in bound):
        raise ModelFileError(f"TensorRT tensor {name!r} has dynamic shape {shape} and no upper bound ({bound})")
    if any(s >= 0 and s != b for s, b in zip(shape, bound, strict=True)):
        raise ModelFileError(f"TensorRT tensor {name!r}: bound {bound} contradicts its static shape {shape}")
    return bound


def _ints(dims: Any) -> tuple[int, ...]:
    """A TensorRT ``Dims`` (indexable, with a length) as a tuple of ints."""
    return tuple(int(dims[i]) for i in range(len(dims)))


class TensorRTBackend(BaseBackend):
    """A deserialised TensorRT engine: one execution context, a device buffer bound to every I/O tensor.

    UNVERIFIED (see the module docstring).
    """

    name = "tensorrt"
    min_batch = 1
    _logger: tensorrt.Logger | None = None
    _runtime: tensorrt.Runtime | None = None
    _engine: tensorrt.ICudaEngine | None = None
    _context: tensorrt.IExecutionContext | None = None

    def __init__(self, path: str | Path, device: str = "cuda", profile: int = 0) -> None:
        self.path = Path(path)
        if device == "cpu":
            raise TensorRTUnavailable(f"{self.path.name} is a TensorRT engine: it runs on an NVIDIA GPU only, not device='cpu'")
        self.device, self.profile = device, profile
        self._stream: Any = None
        self._buffers: dict[str, int] = {}

    def activate_impl(self) -> None:
        """Read the manifest's contract, check for a GPU and TensorRT, then open the engine on the device."""
        self.config, self.contract, self.manifest_path = read_manifest_contract(self.path)
        self._cudart = cudart = _cudart()
        if gpu_count() == 0:
            raise TensorRTUnavailable(f"no CUDA GPU found: cannot run TensorRT engine {self.path.name}; {UNVERIFIED}")
        _require_tensorrt()
        _check(cudart.cudaSetDevice(int(self.device.split(":", 1)[1]) if ":" in self.device else 0))
        self._open(self.profile)

    def _open(self, profile: int) -> None:
        """Deserialise the engine, select ``profile``, and bind a buffer sized from the engine to every I/O tensor."""
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self._logger, self._runtime = logger, runtime
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise wrong_kind_error(self.path, "TensorRT engine for this TensorRT version and GPU", "deserialization failed")
        context = engine.create_execution_context()
        if context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {self.path.name} (out of GPU memory?)")
        self._engine, self._context = engine, context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise ModelFileError(f"{self.path}: expected one input and an output tensor, found {inputs} -> {outputs}")
        self.input_name, self.output_name = inputs[0], self._pick_output(outputs)
        self._stream = _check(self._cudart.cudaStreamCreate())
        self._select_profile(engine, context, profile)
        shapes = self._largest_shapes(engine, context, profile, outputs)
        self._check_contract(shapes)
        try:
            dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        except TypeError as exc:  # BF16, FP8, INT4 I/O: no numpy type to hold them
            raise ModelFileError(f"{self.path.name}: an I/O tensor has a type numpy cannot hold ({exc})") from exc
        self._inputs = {n: tensor_meta(_ints(engine.get_tensor_shape(n)), dtypes[n]) for n in inputs}
        self._out_dtype = dtypes[self.output_name]
        self._bind(context, shapes, dtypes)

    def _pick_output(self, outputs: list[str]) -> str:
        """The output the contract names; an engine with a single output may call it something else."""
        wanted = str(self.contract.get("output_name", OUTPUT_NAME))
        if wanted in outputs:
            return wanted
        if len(outputs) == 1:
            return outputs[0]
        raise ModelFileError(f"{self.path.name}: no output {wanted!r} (named by its manifest's contract) among {outputs}")

    def _select_profile(self, engine: tensorrt.ICudaEngine, context: tensorrt.IExecutionContext, profile: int) -> None:
        """Make ``profile`` the context's optimisation profile (an engine may hold several)."""
        count = engine.num_optimization_profiles
        if not 0 <= profile < count:
            raise ValueError(f"{self.path.name} has {count} optimisation profile(s): profile={profile} does not exist")
        if not context.set_optimization_profile_async(profile, int(self._stream)):
            raise RuntimeError(f"TensorRT refused to select optimisation profile {profile} of {self.path.name}")

    def _largest_shapes(
        self, engine: tensorrt.ICudaEngine, context: tensorrt.IExecutionContext, profile: int, outputs: list[str]
    ) -> dict[str, tuple[int, ...]]:
        """Every I/O tensor's largest shape: the input's profile maximum, each output's shape inferred at it.

        Also sets ``min_batch`` / ``max_batch`` / ``fixed_batch`` from the input's batch axis.
        """
        import tensorrt as trt

        name = self.input_name
        static = _ints(engine.get_tensor_shape(name))
        if all(d >= 0 for d in static):
            lo = hi = static
        else:
            lo, _opt, hi = (_ints(d) for d in engine.get_tensor_profile_shape(name, profile))
        largest = buffer_shape(name, static, hi)
        self.min_batch, self.max_batch = lo[0], largest[0]
        self.fixed_batch = self.max_batch if self.min_batch == self.max_batch else None
        if not context.set_input_shape(name, trt.Dims(list(largest))):
            raise RuntimeError(f"TensorRT rejected {name} shape {largest}, the maximum of its own profile, in {self.path.name}")
        shapes = {name: largest}
        for out in outputs:
            shapes[out] = buffer_shape(out, _ints(engine.get_tensor_shape(out)), _ints(context.get_tensor_shape(out)))
        return shapes

    def _check_contract(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """The engine must take and give the tensors its manifest's contract describes."""
        h, w = self.config.preprocess.input_size
        got_in, got_out = shapes[self.input_name][1:], shapes[self.output_name][1:]
        if got_in != (3, h, w) or got_out != (self.embedding_dim,):
            raise ModelFileError(
                f"{self.path.name} maps {self.input_name} (N, {', '.join(map(str, got_in))}) to {self.output_name} "
                f"(N, {', '.join(map(str, got_out))}), but its manifest {self.manifest_path.name} describes "
                f"(N, 3, {h}, {w}) -> (N, {self.embedding_dim})"
            )

    def _bind(self, context: tensorrt.IExecutionContext, shapes: dict[str, tuple[int, ...]], dtypes: dict[str, np.dtype]) -> None:
        """A device buffer for every I/O tensor, its address given to TensorRT (``enqueueV3`` needs them all)."""
        for name, shape in shapes.items():
            nbytes = int(np.prod(shape)) * dtypes[name].itemsize
            self._buffers[name] = int(_check(self._cudart.cudaMalloc(nbytes)))
            if not context.set_tensor_address(name, self._buffers[name]):
                raise RuntimeError(f"TensorRT rejected the device address of {name} in {self.path.name}")

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        """One chunk that fits the profile: padded up to its minimum batch, copied in, run, copied out."""
        import tensorrt as trt

        context, cudart = self._context, self._cudart
        assert context is not None  # infer() runs infer_impl only while active
        real = batch.shape[0]
        if real < self.min_batch:  # below the profile's minimum: pad
            batch = np.concatenate([batch, np.zeros((self.min_batch - real, *batch.shape[1:]), np.float32)])
        host_in = np.ascontiguousarray(batch, dtype=self._inputs[self.input_name].dtype)
        if not context.set_input_shape(self.input_name, trt.Dims(list(host_in.shape))):
            raise RuntimeError(
                f"TensorRT rejected input shape {host_in.shape} for {self.path.name} "
                f"(profile batch {self.min_batch}..{self.max_batch})"
            )
        out_shape = _ints(context.get_tensor_shape(self.output_name))
        if out_shape != (host_in.shape[0], self.embedding_dim):
            raise RuntimeError(f"{self.path.name}: TensorRT gives {self.output_name} {out_shape} for input {host_in.shape}")
        host_out = np.empty(out_shape, dtype=self._out_dtype)
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaMemcpyAsync(self._buffers[self.input_name], host_in.ctypes.data, host_in.nbytes, h2d, self._stream))
        if not context.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"TensorRT execute_async_v3 failed on {self.path.name} (batch {host_in.shape[0]})")
        _check(cudart.cudaMemcpyAsync(host_out.ctypes.data, self._buffers[self.output_name], host_out.nbytes, d2h, self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        return host_out[:real].astype(np.float32)

    def deactivate_impl(self) -> None:
        """Release the context, engine and runtime (in that order), then the device buffers and the stream."""
        self._context = None
        self._engine = None
        self._runtime = None
        for ptr in self._buffers.values():
            self._cudart.cudaFree(ptr)  # best effort: close never raises
        self._buffers = {}
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
