"""Resumable training state: everything a killed run needs to continue exactly where it stopped.

Saved with ``torch.save`` as plain containers of tensors, numbers and strings, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code). Written atomically: tmp file, then ``os.replace``.
The model weights are in the state too, so a resume never mixes a state and a checkpoint of different epochs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

STATE_NAME = "last.state.pt"
FORMAT_VERSION = 1


def save_state(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch: int,
    extra: dict[str, Any],
    scaler: torch.amp.GradScaler | None = None,
) -> Path:
    """Write the state after ``epoch`` (1-based, completed) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format_version": FORMAT_VERSION,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "torch_rng": torch.get_rng_state(),
        "extra": extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a state written by :func:`save_state` (safe loading: ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training state to resume from: {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported training-state format {state.get('format_version')!r}")
    return state
