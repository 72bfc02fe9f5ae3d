"""PyTorch backend for safetensors checkpoints; torch is imported only when this backend is built."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import BaseBackend, wrong_kind_error


class TorchBackend(BaseBackend):
    """The eval-mode HAN of a han-deploy safetensors checkpoint (config read from its header)."""

    name = "torch"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        import torch

        from ...model.checkpoint import load_checkpoint

        self.path = Path(path)
        self._torch = torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if threads:
            torch.set_num_threads(int(threads))  # process-wide in PyTorch
        try:
            model, meta = load_checkpoint(self.path, map_location="cpu")
        except (ValueError, OSError) as exc:
            raise wrong_kind_error(self.path, "han-deploy safetensors checkpoint", exc) from exc
        self.model = model.eval().to(self.device)
        self.config = model.cfg
        self.meta = meta
        self.contract = {"model": self.config.to_dict(), "embedding_dim": self.config.embedding_dim, "checkpoint_meta": meta}

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(torch.from_numpy(batch).to(self.device))
        return out.float().cpu().numpy()

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
