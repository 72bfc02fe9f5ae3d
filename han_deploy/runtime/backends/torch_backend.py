"""PyTorch backend for safetensors checkpoints or an in-memory HAN; torch is imported only when it is activated."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from .base import BaseBackend, tensor_meta, wrong_kind_error


class TorchBackend(BaseBackend):
    """The eval-mode HAN of a han-deploy safetensors checkpoint (config read from its header).

    ``channels_last`` runs the convolutions in NHWC memory layout (faster on x86 CPUs);
    ``compile`` is a ``torch.compile`` mode (``"default"``, ``"reduce-overhead"``, ``"max-autotune"``).
    :meth:`from_module` wraps a model already in memory (the export's parity reference). Activation
    loads the checkpoint (or copies the module) and prepares it; ``model`` and ``forward`` hold it while active.
    """

    name = "torch"
    model: Any = None
    forward: Any = None  # what infer_impl calls: the model, or its torch.compile wrapper
    meta: dict[str, Any]  # the checkpoint header's metadata ({} for a module)

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        threads: int | None = None,
        channels_last: bool = False,
        compile: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.requested_device, self.threads, self.channels_last, self.compile = device, threads, channels_last, compile
        self._source: Any = None  # from_module's model; None: load the checkpoint at ``path``

    @classmethod
    def from_module(
        cls, model: Any, device: str = "cpu", channels_last: bool = False, compile: str | None = None, name: str = "<in memory>"
    ) -> TorchBackend:
        """An inactive backend over an ``nn.Module`` HAN (its ``cfg`` is the contract); activation works on a copy."""
        backend = cls(name, device, None, channels_last, compile)
        backend._source = model
        return backend

    def activate_impl(self) -> None:
        """Load the checkpoint (or copy the module), then put it in eval mode on the device, laid out and compiled."""
        import torch

        self._torch = torch
        if self.threads:
            torch.set_num_threads(int(self.threads))  # process-wide in PyTorch
        if self._source is not None:
            model, self.meta = copy.deepcopy(self._source), {}
        else:
            from ...model.checkpoint import load_checkpoint

            try:
                model, self.meta = load_checkpoint(self.path, map_location="cpu")
            except (ValueError, OSError) as exc:
                raise wrong_kind_error(self.path, "han-deploy safetensors checkpoint", exc) from exc
        device = self.requested_device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        model = model.eval().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.forward = torch.compile(model, mode=self.compile, dynamic=False) if self.compile else model
        self.config = model.cfg
        self.contract = {"model": self.config.to_dict(), "embedding_dim": self.config.embedding_dim, "checkpoint_meta": self.meta}
        h, w = self.config.preprocess.input_size
        self._inputs = {self.input_name: tensor_meta((None, 3, h, w), np.float32)}  # a module declares none: the contract's

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(batch).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.forward(x)
        return out.float().cpu().numpy()

    def deactivate_impl(self) -> None:
        self.model = self.forward = None
