"""PyTorch backend for safetensors checkpoints or an in-memory HAN; torch is imported only when it is built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import BaseBackend, wrong_kind_error


class TorchBackend(BaseBackend):
    """The eval-mode HAN of a han-deploy safetensors checkpoint (config read from its header).

    ``channels_last`` runs the convolutions in NHWC memory layout (faster on x86 CPUs);
    ``compile`` is a ``torch.compile`` mode (``"default"``, ``"reduce-overhead"``, ``"max-autotune"``).
    :meth:`from_module` wraps a model already in memory (the export's parity reference).
    """

    name = "torch"

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        threads: int | None = None,
        channels_last: bool = False,
        compile: str | None = None,
    ) -> None:
        import torch

        from ...model.checkpoint import load_checkpoint

        if threads:
            torch.set_num_threads(int(threads))  # process-wide in PyTorch
        try:
            model, meta = load_checkpoint(Path(path), map_location="cpu")
        except (ValueError, OSError) as exc:
            raise wrong_kind_error(Path(path), "han-deploy safetensors checkpoint", exc) from exc
        self._setup(model, Path(path), device, channels_last, compile, meta)

    @classmethod
    def from_module(
        cls, model: Any, device: str = "cpu", channels_last: bool = False, compile: str | None = None, name: str = "<in memory>"
    ) -> TorchBackend:
        """A backend over an ``nn.Module`` HAN (its ``cfg`` is the contract); the module itself is not modified."""
        import copy

        backend = cls.__new__(cls)
        backend._setup(copy.deepcopy(model), Path(name), device, channels_last, compile, {})
        return backend

    def _setup(self, model: Any, path: Path, device: str, channels_last: bool, compile: str | None, meta: dict) -> None:
        import torch

        self._torch = torch
        self.path = path
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.channels_last = channels_last
        model = model.eval().to(self.device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.forward = torch.compile(model, mode=compile, dynamic=False) if compile else model  # what _run calls
        self.config = model.cfg
        self.meta = meta
        self.contract = {"model": self.config.to_dict(), "embedding_dim": self.config.embedding_dim, "checkpoint_meta": meta}

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(batch).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.forward(x)
        return out.float().cpu().numpy()

    def close(self) -> None:
        self.model = self.forward = None  # type: ignore[assignment]
