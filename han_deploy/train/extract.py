"""Embeddings from a torch HAN, decoded and preprocessed by the contract the runtime uses (eval mode, no gradients)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..contract.decode import read_image
from ..contract.preprocess import preprocess
from ..model import HAN

ImageOrPath = np.ndarray | str | os.PathLike[str]


@torch.no_grad()
def extract_embeddings(
    model: HAN,
    images_or_paths: Sequence[ImageOrPath],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """``(N, D)`` float32 embeddings, row i for item i: a BGR uint8 crop of any size or an image path.

    Moves the model to ``device``, runs it in eval mode and restores its previous mode. An unreadable path raises
    :class:`~han_deploy.contract.decode.DecodeError` naming the file (rows must stay aligned with inputs).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pre = model.cfg.preprocess
    was_training = model.training
    model.eval()
    device = torch.device(device)
    model.to(device)
    outputs: list[np.ndarray] = []
    try:
        starts = range(0, len(images_or_paths), batch_size)
        for start in tqdm(starts, desc="extract", unit="batch", disable=not progress, leave=False):
            chunk = images_or_paths[start : start + batch_size]
            images = [item if isinstance(item, np.ndarray) else read_image(item) for item in chunk]
            x = torch.from_numpy(preprocess(images, pre)).to(device)
            outputs.append(model(x).float().cpu().numpy())
    finally:
        model.train(was_training)
    if not outputs:
        dim = model.cfg.embedding_dim
        return np.zeros((0, dim), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)
