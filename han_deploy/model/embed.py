"""Embeddings of a torch model over person crops, decoded and preprocessed by the contract the runtime uses.

The one torch-side embedding loop: ``extract_embeddings`` (han-viz, users), han-eval's model path and the
trainer's evaluation (:mod:`han_deploy.evaluate.torch_eval`), and the training dataset's image loading
(``ReidDataset`` builds on :class:`CropDataset`). The model runs in eval mode without gradients; its mode is
restored afterwards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..config import PreprocessConfig
from ..contract.decode import DecodeError, read_image
from ..contract.preprocess import preprocess

log = logging.getLogger(__name__)

ImageOrPath = np.ndarray | str | os.PathLike[str]
# what reading or preprocessing one bad crop raises
UNREADABLE = (DecodeError, ValueError, TypeError, cv2.error)


class CropDataset(Dataset):
    """``dataset[i]`` -> ``(crop (3, H, W) float32, i)`` for a BGR uint8 crop of any size or an image path.

    An unreadable item raises (a :class:`DecodeError` names the file), or with ``skip_unreadable`` is logged
    with its path and gives ``None``, so one bad file never sinks an epoch or an evaluation.
    """

    def __init__(
        self, items: Sequence[ImageOrPath], pre: PreprocessConfig, skip_unreadable: bool = False, split: str = "test"
    ) -> None:
        self.items = items
        self.pre = pre
        self.skip_unreadable = skip_unreadable
        self.split = split

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        item = self.items[index]
        try:
            image = item if isinstance(item, np.ndarray) else read_image(item)
            x = preprocess([image], self.pre)[0]
        except UNREADABLE as exc:
            if not self.skip_unreadable:
                raise
            log.warning("skipping %s image %s: %s", self.split, f"#{index}" if isinstance(item, np.ndarray) else item, exc)
            return None
        return torch.from_numpy(x), index


def _collate(items: list[tuple[torch.Tensor, int] | None]) -> tuple[torch.Tensor, list[int]]:
    """The readable crops of a batch stacked, and their dataset indices (``None`` marks a skipped one)."""
    good = [it for it in items if it is not None]
    return (torch.stack([it[0] for it in good]) if good else torch.empty(0)), [it[1] for it in good]


@torch.no_grad()
def embed_crops(
    model: nn.Module,
    dataset: CropDataset,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    workers: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(features (n, D) float32, kept)``: embeddings of the readable crops and their indices into ``dataset``.

    ``workers`` data-loader processes decode in parallel; the model is moved to ``device``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate)
    was_training = model.training
    model.to(device).eval()
    feats: list[np.ndarray] = [np.zeros((0, model.cfg.embedding_dim), np.float32)]
    kept: list[int] = []
    try:
        for images, indices in tqdm(loader, desc=f"embed {dataset.split}", unit="batch", disable=not progress, leave=False):
            if indices:
                feats.append(model(images.to(device)).float().cpu().numpy())
                kept += indices
    finally:
        model.train(was_training)
    return np.concatenate(feats), np.asarray(kept, dtype=np.int64)


def extract_embeddings(
    model: nn.Module,
    images_or_paths: Sequence[ImageOrPath],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
    workers: int = 0,
) -> np.ndarray:
    """``(N, D)`` float32 embeddings, row i for item i: a BGR uint8 crop of any size or an image path.

    An unreadable path raises :class:`~han_deploy.contract.decode.DecodeError` naming the file (rows must stay
    aligned with inputs).
    """
    dataset = CropDataset(images_or_paths, model.cfg.preprocess, split="extract")
    return embed_crops(model, dataset, batch_size, device, workers, progress)[0]
