"""Model checkpoints in safetensors: weights plus the model config and free-form metadata.

safetensors holds tensors only, so nothing in a checkpoint can execute code when it is loaded.
The header's string metadata carries the :class:`HANConfig` (JSON) and e.g. training metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..config import HANConfig
from .han import HAN

CONFIG_KEY = "han_config"
META_KEY = "han_meta"


def save_checkpoint(path: str | os.PathLike[str], model: HAN, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights, config and ``meta`` (JSON-serialisable) atomically to ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    header = {CONFIG_KEY: json.dumps(model.cfg.to_dict()), META_KEY: json.dumps(meta or {})}
    save_file(state, str(tmp), metadata=header)
    os.replace(tmp, path)
    return path


def read_checkpoint_header(path: str | os.PathLike[str]) -> tuple[HANConfig, dict[str, Any]]:
    """The config and metadata of a checkpoint, without loading its weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for non-safetensors files
        raise ValueError(f"{path} is not a safetensors checkpoint: {exc}") from exc
    if CONFIG_KEY not in header:
        raise ValueError(f"{path} has no {CONFIG_KEY!r} entry: not a han-deploy checkpoint")
    return HANConfig.from_dict(json.loads(header[CONFIG_KEY])), json.loads(header.get(META_KEY, "{}"))


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> tuple[HAN, dict[str, Any]]:
    """Rebuild the model a checkpoint describes, load its weights, and return it with its metadata."""
    from safetensors.torch import load_file

    cfg, meta = read_checkpoint_header(path)
    model = HAN(cfg)
    model.load_state_dict(load_file(str(path), device=map_location))
    return model, meta
