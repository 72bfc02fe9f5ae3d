"""A torch Dataset over re-id :class:`Record` lists that decodes and preprocesses exactly as the runtime does.

Images are loaded by :class:`han_deploy.model.embed.CropDataset`, i.e. read by
:func:`han_deploy.contract.decode.read_image` and put through :func:`han_deploy.contract.preprocess.preprocess`,
the implementations deployment uses, so a trained model never sees a different decode (truncated JPEGs refused),
resize, channel order or normalisation in production. An unreadable or missing image is logged with its path and
skipped (its slot in the batch is dropped); the trainer counts the skips per epoch, so nothing fails silently and
one bad file never sinks an epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from ..config import PreprocessConfig
from ..data.records import Record
from ..model.embed import CropDataset


class ReidDataset(Dataset):
    """``dataset[i]`` -> ``(image (3, H, W) float32, pid, camid, i)``, or ``None`` when the file cannot be read."""

    def __init__(self, records: Sequence[Record], pre: PreprocessConfig, split: str = "train") -> None:
        if not records:
            raise ValueError(f"the {split} split is empty: no images to load (check --data and --dataset)")
        self.records = list(records)
        self.crops = CropDataset([r.path for r in self.records], pre, skip_unreadable=True, split=split)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int] | None:
        loaded = self.crops[index]
        if loaded is None:
            return None
        rec = self.records[index]
        return loaded[0], rec.pid, rec.camid, index


class Batch(NamedTuple):
    """The readable items of one loader batch, and how many were skipped as unreadable."""

    images: torch.Tensor  # (n, 3, H, W) float32
    pids: torch.Tensor  # (n,) int64
    camids: torch.Tensor  # (n,) int64
    indices: torch.Tensor  # (n,) int64, positions in the dataset
    skipped: int


def collate_skip_bad(items: list[tuple[torch.Tensor, int, int, int] | None]) -> Batch:
    """Stack the readable items (``None`` marks an unreadable one, already logged with its path)."""
    good = [it for it in items if it is not None]
    skipped = len(items) - len(good)
    if not good:
        empty = torch.empty(0, dtype=torch.long)
        return Batch(torch.empty(0), empty, empty, empty, skipped)
    images = torch.stack([it[0] for it in good])
    pids, camids, indices = (torch.tensor([it[j] for it in good], dtype=torch.long) for j in (1, 2, 3))
    return Batch(images, pids, camids, indices, skipped)
