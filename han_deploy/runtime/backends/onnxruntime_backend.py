"""ONNX Runtime backend: TensorRT EP, CUDA EP, then CPU where available (overridable), threads configurable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...config import INPUT_NAME, OUTPUT_NAME, HANConfig, read_contract
from .base import BaseBackend, ModelFileError, read_manifest_contract, tensor_meta, wrong_kind_error

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"
OPTIMIZATION_LEVELS = ("all", "extended", "basic", "none")
INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}  # what a float batch can feed


def create_session(
    source: str | os.PathLike[str] | bytes,
    providers: list[Any] | None = None,
    threads: int | None = None,
    spinning: bool | None = None,
    optimization: str = "all",
    *,
    quiet: bool = False,
    profile_prefix: str | None = None,
    optimized_model_path: str | os.PathLike[str] | None = None,
) -> Any:
    """The one place an ``onnxruntime.InferenceSession`` is built (runtime, parity gate, bench, graph checks).

    ``threads`` intra-op threads with one inter-op thread (None: ONNX Runtime's default); ``spinning``
    sets ``session.intra_op.allow_spinning`` (None: ORT's default); ``optimization`` is the graph
    optimisation level (``none`` runs a Q/DQ graph as written); ``quiet`` logs errors only;
    ``profile_prefix`` turns on ORT's profiler; ``optimized_model_path`` saves the optimised graph.
    """
    import onnxruntime as ort

    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, got {optimization!r}")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    if spinning is not None:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[optimization]
    if quiet:
        opts.log_severity_level = 3
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    if optimized_model_path is not None:
        opts.optimized_model_filepath = str(optimized_model_path)
    model = source if isinstance(source, bytes) else str(source)
    return ort.InferenceSession(model, sess_options=opts, providers=providers or [CPU_PROVIDER])


def default_providers(device: str, available: list[str]) -> list[str]:
    """Providers for ``device`` in preference order, among those this ONNX Runtime build has."""
    if device == "cpu":
        return [CPU_PROVIDER]
    if device == "auto" or device.startswith("cuda") or device == "gpu":
        chosen = [p for p in GPU_PROVIDERS if p in available]
        if not chosen and device != "auto":
            raise RuntimeError(
                f"device {device!r} asked for, but this ONNX Runtime has no GPU provider (has {', '.join(available)}); "
                "install onnxruntime-gpu or use device='cpu'"
            )
        return chosen + [CPU_PROVIDER]
    raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'")


class OnnxRuntimeBackend(BaseBackend):
    """An ``onnxruntime.InferenceSession`` on a han-deploy ONNX file (the contract is in its metadata).

    ``optimization="none"`` runs the graph as written (the parity gate's TensorRT Q/DQ simulation);
    ``quiet`` logs ONNX Runtime errors only. ``spinning=False`` sets ``session.intra_op.allow_spinning=0``:
    worker threads sleep instead of busy-waiting, which matters when the CPU is shared (with decode
    threads or another session). The options are checked when :meth:`activate` builds the session.
    """

    name = "onnxruntime"
    session: Any = None  # the InferenceSession while active

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        providers: list[str] | None = None,
        threads: int | None = None,
        spinning: bool | None = None,
        optimization: str = "all",
        quiet: bool = False,
    ) -> None:
        self.path = Path(path)
        self.device, self.requested_providers = device, providers
        self.threads, self.spinning, self.optimization, self.quiet = threads, spinning, optimization, quiet

    def _choose_providers(self, available: list[str]) -> list[Any]:
        """The providers asked for (all must exist), else the device's defaults with its ``device_id``."""
        if self.requested_providers is not None:
            missing = [p for p in self.requested_providers if p not in available]
            if missing:
                raise RuntimeError(f"ONNX Runtime providers not available: {', '.join(missing)} (has {', '.join(available)})")
            return list(self.requested_providers)
        chosen: list[Any] = default_providers(self.device, available)
        if ":" in self.device:
            dev_id = self.device.split(":", 1)[1]
            chosen = [(p, {"device_id": dev_id}) if p in GPU_PROVIDERS else p for p in chosen]
        return chosen

    def activate_impl(self) -> None:
        """Build the session, then read the contract and the input/output names, shapes and types from it."""
        import onnxruntime as ort

        chosen = self._choose_providers(ort.get_available_providers())
        try:
            self.session = create_session(self.path, chosen, self.threads, self.spinning, self.optimization, quiet=self.quiet)
        except ValueError:  # a bad option (create_session checks them) or provider list: not the file's fault
            raise
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf types
            raise wrong_kind_error(self.path, "ONNX model", str(exc).splitlines()[0] if str(exc) else exc) from exc
        self.config, self.contract = self._read_contract()
        self._inputs = {i.name: tensor_meta(i.shape, self._numpy_type(i.name, i.type)) for i in self.session.get_inputs()}
        self.input_name = self.contract.get("input_name", INPUT_NAME)
        if self.input_name not in self._inputs:
            if len(self._inputs) != 1:
                raise ModelFileError(f"{self.path}: no input named {self.input_name!r} (inputs: {list(self._inputs)})")
            self.input_name = next(iter(self._inputs))
        outputs = [o.name for o in self.session.get_outputs()]
        wanted = self.contract.get("output_name", OUTPUT_NAME)
        self.output_name = wanted if wanted in outputs else outputs[0]
        self.fixed_batch = self.max_batch = self._inputs[self.input_name].shape[0] or None
        self.providers = self.session.get_providers()

    def _read_contract(self) -> tuple[HANConfig, dict[str, Any]]:
        """The contract in the session's ``metadata_props``, else in a manifest beside the file."""
        try:
            return read_contract(dict(self.session.get_modelmeta().custom_metadata_map))
        except ValueError:
            try:
                config, contract, _ = read_manifest_contract(self.path)
            except ModelFileError as exc:
                raise ModelFileError(f"{self.path} has no han-deploy contract in its metadata_props, and {exc}") from None
            return config, contract

    def _numpy_type(self, name: str, onnx_type: str) -> np.dtype:
        """The numpy type of an input the session declares as ``tensor(float)`` or ``tensor(float16)``."""
        if onnx_type not in INPUT_TYPES:
            raise ModelFileError(f"{self.path.name}: input {name!r} is {onnx_type}; a han-deploy model takes float32 or float16")
        return np.dtype(INPUT_TYPES[onnx_type])

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        dtype = self._inputs[self.input_name].dtype
        if dtype != np.float32:  # a float16-I/O graph: the contract's float32 batch is cast at the model's boundary
            batch = batch.astype(dtype)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def deactivate_impl(self) -> None:
        self.session = None
