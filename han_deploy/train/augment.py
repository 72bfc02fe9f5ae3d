"""Random erasing (Zhong et al., 2020), applied per image on the normalised batch in the main process.

Working on the batch with an explicit generator keeps augmentation deterministic for a seed whatever
the number of data-loader workers, which a resumed run needs to replay an epoch exactly.
"""

from __future__ import annotations

import math

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
