"""What gets timed: one runner per (model, backend, precision, device), each handing out a zero-argument call per batch.

- :class:`TorchRunner` runs an in-memory ``nn.Module`` in PyTorch eager, optionally ``channels_last``,
  ``torch.compile`` (CUDA graphs with ``mode="reduce-overhead"`` on a GPU) and FP16 autocast on CUDA.
- :class:`BackendRunner` runs a han-deploy artifact through the runtime's one interface,
  :func:`han_deploy.runtime.backends.load_backend` (ONNX Runtime for ``.onnx``, TensorRT for engines).
- :class:`ForeignOnnxRunner` runs an ONNX file that carries no han-deploy contract (the comparators,
  a user's own model) in a plain ONNX Runtime session with the same session settings.

A runner that cannot run on this machine raises :class:`Skipped` with the reason; the benchmark
reports that reason and never a number for it.

UNTESTED HERE: every CUDA path (``device="cuda"``, FP16 autocast, CUDA-graph ``torch.compile``) and
the TensorRT path; they are written against the PyTorch 2.x / TensorRT 10 APIs and labelled so in
every result they produce (``verified: false``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BACKENDS = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
UNVERIFIED_CUDA = "CUDA path written against the PyTorch 2.x API, untested here (no GPU in this task)"


class Skipped(RuntimeError):
    """This runner cannot run here; ``str(exc)`` is the reason the report shows."""


class Runner:
    """Base: a label, what it is (``describe``), ``call(batch)`` for the timed function, ``close``."""

    label: str = "runner"
    backend: str = "?"
    precision: str = "fp32"
    device: str = "cpu"
    input_size: tuple[int, int]  # (H, W) from the model's contract: each runner sets it
    verified: bool = True
    note: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "backend": self.backend,
            "precision": self.precision,
            "device": self.device,
            "verified": self.verified,
            "note": self.note,
        }

    def random_input(self, batch: int, seed: int = 0) -> np.ndarray:
        h, w = self.input_size
        return np.random.default_rng(seed).standard_normal((batch, 3, h, w), dtype=np.float32)

    def call(self, batch: int) -> Callable[[], Any]:
        """A zero-argument function running one forward pass of ``batch`` images, finished when it returns."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the runner holds."""


# --------------------------------------------------------------------------------------------- PyTorch


class TorchRunner(Runner):
    """PyTorch eager (or ``torch.compile``d) forward of an ``nn.Module`` in eval mode, under ``inference_mode``."""

    backend = "torch"

    def __init__(
        self,
        model: Any,
        label: str,
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: bool = False,
        compile: str | None = None,
        threads: int | None = None,
    ) -> None:
        import torch

        from ..runtime.backends.torch_backend import TorchBackend

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if compile is not None and compile not in COMPILE_MODES:
            raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {compile!r}")
        self._torch = torch
        self.label, self.precision, self.device = label, precision, device
        if precision == "int8":
            raise Skipped("INT8 is measured in ONNX Runtime (--backend onnxruntime --precision int8), not PyTorch eager")
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise Skipped(f"device {device!r}: no CUDA device visible to PyTorch on this machine")
            self.verified, self.note = False, UNVERIFIED_CUDA
        elif device != "cpu":
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
        elif precision == "fp16":
            raise Skipped("FP16 in PyTorch is a GPU path (CPU FP16 convolutions are not a deployment target); use --device cuda")
        if threads:
            torch.set_num_threads(int(threads))  # process-wide in PyTorch
        self.threads = torch.get_num_threads()
        self.channels_last = channels_last
        self.compile_mode = compile
        pre = getattr(getattr(model, "cfg", None), "preprocess", None)
        if pre is None:
            raise ValueError(f"{label}: the model has no cfg.preprocess (its contract), so its input size is unknown")
        self.input_size = (int(pre.input_size[0]), int(pre.input_size[1]))
        # the runtime's torch backend prepares the module (a copy, eval, device, channels_last, compile)
        prepared = TorchBackend.from_module(model, device, channels_last, compile, name=label).activate()
        self.model, self.forward = prepared.model, prepared.forward
        if compile and device == "cpu":
            self.note = "torch.compile (inductor) on CPU"

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(channels_last=self.channels_last, compile=self.compile_mode, threads=self.threads)
        return d

    def call(self, batch: int) -> Callable[[], Any]:
        torch = self._torch
        x = torch.from_numpy(self.random_input(batch)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        cuda = self.device.startswith("cuda")
        fp16 = self.precision == "fp16"  # CUDA only (refused on the CPU in __init__)
        forward = self.forward

        def run() -> Any:
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16) if fp16 else contextlib.nullcontext():
                out = forward(x)
            if cuda:
                torch.cuda.synchronize()
            return out

        return run

    def close(self) -> None:
        self.model = self.forward = None


# --------------------------------------------------------------------------------------- runtime backends


class BackendRunner(Runner):
    """A han-deploy artifact run through the runtime's ``load_backend`` (ONNX Runtime or TensorRT)."""

    def __init__(
        self,
        path: str | Path,
        label: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
        providers: list[str] | None = None,
        spinning: bool = False,
        precision: str = "unspecified",
    ) -> None:
        from ..runtime.backends import ENGINE_SUFFIXES, load_backend

        self.path = Path(path)
        self.device = device
        is_engine = self.path.suffix.lower() in ENGINE_SUFFIXES
        options: dict[str, Any] = {} if is_engine else {"threads": threads, "providers": providers, "spinning": spinning}
        if is_engine:
            self.verified = False
            self.note = "TensorRT path written against the TensorRT 10 API, unverified here (no GPU in this task)"
        try:
            self.impl = load_backend(self.path, device=device, **options)
        except (ImportError, RuntimeError) as exc:  # TensorRTUnavailable, no GPU provider, missing package
            raise Skipped(f"{type(exc).__name__}: {exc}") from exc
        self.backend = self.impl.name
        h, w = self.impl.config.preprocess.input_size
        self.input_size = (h, w)
        self.precision = precision
        if self.backend == "onnxruntime":
            providers_used = ",".join(getattr(self.impl, "providers", []))
            self.note = self.note or f"providers {providers_used}; threads {threads or 'default'}; spinning {spinning}"
        self.label = label or f"{self.path.name} ({self.backend})"

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["path"] = str(self.path)
        return d

    def call(self, batch: int) -> Callable[[], Any]:
        x = self.random_input(batch)
        infer = self.impl.infer
        return lambda: infer(x)

    def close(self) -> None:
        self.impl.deactivate()


class ForeignOnnxRunner(Runner):
    """An ONNX file without a han-deploy contract (e.g. a comparator) in a plain ONNX Runtime session.

    The runtime's backends refuse such files on purpose (no preprocessing contract); for timing only the
    session matters, built with the same settings as the runtime's CPU backend.
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, label: str | None = None, threads: int | None = None, spinning: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {self.path}")
        from ..runtime.backends.onnxruntime_backend import create_session

        self.session = create_session(self.path, threads=threads, spinning=spinning)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        dims = inp.shape[2:]
        if len(dims) != 2 or not all(isinstance(d, int) for d in dims):
            raise ValueError(f"{self.path}: cannot read a fixed (H, W) from input shape {inp.shape}")
        self.input_size = (int(dims[0]), int(dims[1]))
        self.label = label or f"{self.path.name} (onnxruntime)"
        self.note = f"plain ONNX Runtime session (no han-deploy contract); threads {threads or 'default'}; spinning {spinning}"

    def call(self, batch: int) -> Callable[[], Any]:
        feed = {self.input_name: self.random_input(batch)}
        run = self.session.run
        return lambda: run(None, feed)

    def close(self) -> None:
        self.session = None
