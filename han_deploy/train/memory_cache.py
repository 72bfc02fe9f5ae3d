"""Decode-once training images: every crop read and resized once into one uint8 array held in memory.

An epoch then pays no JPEG decoding or resizing, only a per-batch normalisation and the batch-wide
augmentation (docs/training.md, "Speed"). Images are read and resized by the contract's ``read_image`` and
``resize_crop``, as the runtime does, so the network sees exactly what deployment feeds it. A file
that cannot be read is logged with its path and marked unusable; batches drop it and count it as skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import PreprocessConfig
from ..contract.decode import DecodeError, read_image
from ..contract.preprocess import normalize_batch, resize_crop

log = logging.getLogger(__name__)


def _load(path: Path, pre: PreprocessConfig) -> np.ndarray | None:
    """One model-size uint8 crop, or None (logged with its path) when the file cannot be read."""
    try:
        return resize_crop(read_image(path), pre)
    except (DecodeError, ValueError, TypeError, cv2.error) as exc:
        log.warning("skipping training image %s: %s", path, exc)
        return None


@dataclass
class ImageCache:
    """``images`` (N, H, W, 3) uint8 in the contract's channel order; ``ok[i]`` False for unreadable files."""

    images: np.ndarray
    ok: np.ndarray
    pre: PreprocessConfig

    @classmethod
    def build(
        cls, paths: Sequence[str | os.PathLike[str]], pre: PreprocessConfig, threads: int = 2, progress: bool = True
    ) -> ImageCache:
        """Decode and resize every file once (OpenCV releases the GIL, so ``threads`` decode in parallel)."""
        if not paths:
            raise ValueError("cannot build an image cache from an empty list of files")
        h, w = pre.input_size
        images = np.zeros((len(paths), h, w, 3), dtype=np.uint8)
        ok = np.zeros(len(paths), dtype=bool)
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            crops = pool.map(lambda p: _load(Path(p), pre), paths)
            for i, crop in enumerate(tqdm(crops, total=len(paths), desc="decode once", unit="img", disable=not progress)):
                if crop is not None:
                    images[i], ok[i] = crop, True
        return cls(images, ok, pre)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes)

    def batch(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """The normalised network input (n, 3, H, W) float32 of the cached crops at ``indices``."""
        return torch.from_numpy(normalize_batch(self.images[np.asarray(indices, dtype=np.int64)], self.pre))
