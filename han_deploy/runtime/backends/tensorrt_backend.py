"""TensorRT engine backend (``.engine``/``.plan``/``.trt``), written against the TensorRT 10 runtime API.

UNVERIFIED: no NVIDIA GPU was available where this was written, so this module has never run. It uses
the TensorRT 10/11 name-based I/O API (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``),
the optimisation profile's bounds from ``get_tensor_profile_shape``, and ``cuda-python`` for device memory
and the stream. It accepts the full ``tensorrt`` package or the lean runtime ``tensorrt_lean`` (which
can only run engines built version-compatible). The contract comes from the ``manifest.json`` next to
the engine. The GPU is checked *before* a ``Runtime`` is created: without one the lean runtime logs a
CUDA error and the process then segfaults (docs/runtime.md, "TensorRT: what is unverified"); here you get a Python error instead.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ...config import OUTPUT_NAME
from .base import BaseBackend, ModelFileError, read_manifest_contract, wrong_kind_error

UNVERIFIED = "the TensorRT backend is written against the TensorRT 10 API but unverified (never run on a GPU)"


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


def _tensorrt() -> ModuleType:
    """The full ``tensorrt`` module if it is real (stubs make an empty namespace package), else ``tensorrt_lean``."""
    for name in ("tensorrt", "tensorrt_lean"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(mod, "Runtime"):
            return mod
    raise TensorRTUnavailable(f"neither tensorrt nor tensorrt_lean is installed (pip install tensorrt-lean-cu13); {UNVERIFIED}")


def gpu_count() -> int:
    """Number of CUDA devices cuda-python sees (0 when no driver / no GPU)."""
    cudart = _cudart()
    try:
        err, count = cudart.cudaGetDeviceCount()
    except Exception:  # a missing driver library surfaces as various errors
        return 0
    return int(count) if int(err) == 0 else 0


class TensorRTBackend(BaseBackend):
    """A deserialised TensorRT engine with one execution context and device buffers sized for the profile max.

    UNVERIFIED (see the module docstring).
    """

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda", profile: int = 0) -> None:
        self.path = Path(path)
        if device == "cpu":
            raise TensorRTUnavailable(f"{self.path.name} is a TensorRT engine: it runs on an NVIDIA GPU only, not device='cpu'")
        self.config, self.contract, self.manifest_path = read_manifest_contract(self.path)
        cudart = _cudart()
        if gpu_count() == 0:
            raise TensorRTUnavailable(f"no CUDA GPU found: cannot run TensorRT engine {self.path.name}; {UNVERIFIED}")
        dev_id = int(device.split(":", 1)[1]) if ":" in device else 0
        _check(cudart.cudaSetDevice(dev_id))
        trt = _tensorrt()
        self._cudart, self._trt = cudart, trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if hasattr(self._runtime, "engine_host_code_allowed"):
            self._runtime.engine_host_code_allowed = True  # version-compatible engines embed the lean runtime
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise wrong_kind_error(self.path, "TensorRT engine for this TensorRT version and GPU", "deserialization failed")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise ModelFileError(f"{self.path}: expected one input and an output tensor, found {inputs} -> {outputs}")
        self.input_name = inputs[0]
        wanted = self.contract.get("output_name", OUTPUT_NAME)
        self.output_name = wanted if wanted in outputs else outputs[0]
        if profile:
            self.context.set_optimization_profile_async(profile, 0)
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        if shape[0] == -1:
            lo, _opt, hi = self.engine.get_tensor_profile_shape(self.input_name, profile)
            self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        else:
            self.min_batch = self.max_batch = int(shape[0])
        self.fixed_batch = self.max_batch if self.min_batch == self.max_batch else None
        self._in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self._out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        h, w = self.config.preprocess.input_size
        dim = self.config.embedding_dim
        self._stream = _check(cudart.cudaStreamCreate())
        self._d_in = _check(cudart.cudaMalloc(self.max_batch * 3 * h * w * self._in_dtype.itemsize))
        self._d_out = _check(cudart.cudaMalloc(self.max_batch * dim * self._out_dtype.itemsize))
        self.context.set_tensor_address(self.input_name, int(self._d_in))
        self.context.set_tensor_address(self.output_name, int(self._d_out))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        n = batch.shape[0]
        real = n
        if n < self.min_batch:  # below the profile's minimum: pad
            batch = np.concatenate([batch, np.zeros((self.min_batch - n, *batch.shape[1:]), np.float32)])
            n = self.min_batch
        host_in = np.ascontiguousarray(batch, dtype=self._in_dtype)
        self.context.set_input_shape(self.input_name, tuple(host_in.shape))
        host_out = np.empty((n, self.config.embedding_dim), dtype=self._out_dtype)
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaMemcpyAsync(self._d_in, host_in.ctypes.data, host_in.nbytes, h2d, self._stream))
        if not self.context.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"TensorRT execute_async_v3 failed on {self.path.name} (batch {n})")
        _check(cudart.cudaMemcpyAsync(host_out.ctypes.data, self._d_out, host_out.nbytes, d2h, self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        return host_out[:real].astype(np.float32)

    def close(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for ptr in (getattr(self, "_d_in", None), getattr(self, "_d_out", None)):
            if ptr is not None:
                cudart.cudaFree(ptr)
        if getattr(self, "_stream", None) is not None:
            cudart.cudaStreamDestroy(self._stream)
        self._d_in = self._d_out = self._stream = None
        self.context = self.engine = None
        self._cudart = None
