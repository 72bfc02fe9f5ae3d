"""ONNX Runtime backend: TensorRT EP, CUDA EP, then CPU where available (overridable), threads configurable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...config import INPUT_NAME, OUTPUT_NAME, read_contract
from .base import BaseBackend, ModelFileError, read_manifest_contract, wrong_kind_error

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"
OPTIMIZATION_LEVELS = ("all", "extended", "basic", "none")


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
    threads or another session).
    """

    name = "onnxruntime"

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
        import onnxruntime as ort

        if optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(f"optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, got {optimization!r}")
        self.path = Path(path)
        available = ort.get_available_providers()
        if providers is None:
            chosen: list[Any] = default_providers(device, available)
            if ":" in device:
                dev_id = device.split(":", 1)[1]
                chosen = [(p, {"device_id": dev_id}) if p in GPU_PROVIDERS else p for p in chosen]
        else:
            missing = [p for p in providers if p not in available]
            if missing:
                raise RuntimeError(f"ONNX Runtime providers not available: {', '.join(missing)} (has {', '.join(available)})")
            chosen = list(providers)
        try:
            self.session = create_session(self.path, chosen, threads, spinning, optimization, quiet=quiet)
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf types
            raise wrong_kind_error(self.path, "ONNX model", str(exc).splitlines()[0] if str(exc) else exc) from exc
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        try:
            self.config, self.contract = read_contract(meta)
        except ValueError:
            try:
                self.config, self.contract, _ = read_manifest_contract(self.path)
            except ModelFileError as exc:
                raise ModelFileError(f"{self.path} has no han-deploy contract in its metadata_props, and {exc}") from None
        inputs = self.session.get_inputs()
        names = [i.name for i in inputs]
        self.input_name = self.contract.get("input_name", INPUT_NAME)
        if self.input_name not in names:
            if len(inputs) != 1:
                raise ModelFileError(f"{self.path}: no input named {self.input_name!r} (inputs: {names})")
            self.input_name = names[0]
        outputs = [o.name for o in self.session.get_outputs()]
        wanted = self.contract.get("output_name", OUTPUT_NAME)
        self.output_name = wanted if wanted in outputs else outputs[0]
        batch_dim = next(i for i in inputs if i.name == self.input_name).shape[0]
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.max_batch = self.fixed_batch
        self.providers = self.session.get_providers()
        in_type = next(i for i in inputs if i.name == self.input_name).type
        self._input_dtype = np.float16 if "float16" in in_type else np.float32

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._input_dtype is not np.float32:
            batch = batch.astype(self._input_dtype)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
