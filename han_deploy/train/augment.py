"""Training augmentation on the normalised batch in the main process: flip, pad-and-crop, random erasing (Zhong et al., 2020).

Working on the batch with an explicit generator keeps augmentation deterministic for a seed whatever
the number of data-loader workers, which a resumed run needs to replay an epoch exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def random_erasing(
    images: Tensor,
    probability: float,
    generator: torch.Generator,
    area: tuple[float, float] = (0.02, 0.4),
    aspect: tuple[float, float] = (0.3, 3.3),
    attempts: int = 100,
) -> Tensor:
    """Return a copy of ``images`` (N, C, H, W) where each image, with ``probability``, has one rectangle
    of random area fraction in ``area`` and aspect ratio (h/w, log-uniform) in ``aspect`` replaced by
    standard-normal noise (the erased values match the statistics of normalised input)."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"random erasing probability must be in [0, 1], got {probability}")
    out = images.clone()
    n, c, h, w = images.shape
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    for i in range(n):
        if torch.rand(1, generator=generator).item() >= probability:
            continue
        for _ in range(attempts):
            target = h * w * (area[0] + (area[1] - area[0]) * torch.rand(1, generator=generator).item())
            ratio = math.exp(log_lo + (log_hi - log_lo) * torch.rand(1, generator=generator).item())
            eh, ew = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
            if 0 < eh < h and 0 < ew < w:
                top = int(torch.randint(0, h - eh + 1, (1,), generator=generator))
                left = int(torch.randint(0, w - ew + 1, (1,), generator=generator))
                out[i, :, top : top + eh, left : left + ew] = torch.randn(c, eh, ew, generator=generator)
                break
    return out


@dataclass(frozen=True)
class BatchAugment:
    """The training augmentation, applied to a whole normalised batch with an explicit generator.

    Per image: a horizontal flip with probability 1/2 (``flip``), zero padding by ``pad`` pixels then a
    random crop back to the input size (a shift of up to ``pad`` pixels each way, done as one shifted
    copy; zero is the mean colour after normalisation), and random erasing with probability ``erasing``.
    """

    flip: bool = False
    pad: int = 0
    erasing: float = 0.0

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = images.shape
        flips = (torch.rand(n, generator=generator) < 0.5).tolist() if self.flip else [False] * n
        shift = torch.randint(-self.pad, self.pad + 1, (n, 2), generator=generator).tolist() if self.pad else [[0, 0]] * n
        if any(flips) or self.pad:
            out = torch.zeros_like(images) if self.pad else images.clone()
            for i, (flip, (dy, dx)) in enumerate(zip(flips, shift, strict=True)):
                src = images[i].flip(2) if flip else images[i]
                out[i, :, max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)] = src[
                    :, max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)
                ]
            images = out
        if self.erasing > 0:
            images = random_erasing(images, self.erasing, generator)
        return images

    @property
    def active(self) -> bool:
        return self.flip or self.pad > 0 or self.erasing > 0
