"""Hard-attention regions as pixel boxes on the input image, from the theta a HA module predicts.

The geometry follows ``han_deploy.model.attention.RegionCropper.grid``: a region is the level's
whole feature map scaled by 1 horizontally and 1/T vertically, translated by (tx, ty), in
GridSample's normalised coordinates with ``align_corners=False`` (-1 and +1 are the outer edges of
the border pixels). The feature map of every level spans the input image, so the same normalised
box maps onto the image: edge coordinate u in [-1, 1] -> pixel edge (u + 1) / 2 * size.
Torch-free (numpy only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RegionBox:
    """One region in input-image pixels: the unclipped box (x0, y0, x1, y1) as float edge coordinates, and its clip."""

    x0: float
    y0: float
    x1: float
    y1: float
    width: int  # image size the box refers to
    height: int

    @property
    def clipped(self) -> tuple[int, int, int, int]:
        """The part inside the image as integer pixel edges (x0, y0, x1, y1), x1/y1 exclusive."""
        x0 = int(np.clip(round(self.x0), 0, self.width))
        x1 = int(np.clip(round(self.x1), 0, self.width))
        y0 = int(np.clip(round(self.y0), 0, self.height))
        y1 = int(np.clip(round(self.y1), 0, self.height))
        return x0, y0, x1, y1

    @property
    def outside(self) -> tuple[bool, bool, bool, bool]:
        """Which edges (left, top, right, bottom) lie outside the image (GridSample reads zeros there)."""
        eps = 1e-6
        return (self.x0 < -eps, self.y0 < -eps, self.x1 > self.width + eps, self.y1 > self.height + eps)

    @property
    def extends_outside(self) -> bool:
        return any(self.outside)

    @property
    def inside_fraction(self) -> float:
        """Share of the region's area that lies inside the image."""
        x0, y0, x1, y1 = self.clipped
        area = (self.x1 - self.x0) * (self.y1 - self.y0)
        return float(max(x1 - x0, 0) * max(y1 - y0, 0) / area) if area > 0 else 0.0


def region_boxes(theta: np.ndarray, image_size: tuple[int, int]) -> list[RegionBox]:
    """Boxes of the T regions of one image; ``theta`` is (T, 2) holding (tx, ty), ``image_size`` is (H, W)."""
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2 or theta.shape[1] != 2:
        raise ValueError(f"theta must have shape (T, 2), got {theta.shape}")
    height, width = image_size
    t = theta.shape[0]
    boxes = []
    for tx, ty in theta:
        # normalised edges: x spans [tx - 1, tx + 1] (scale 1), y spans [ty - 1/T, ty + 1/T] (scale 1/T)
        boxes.append(
            RegionBox(
                x0=(tx - 1.0 + 1.0) / 2.0 * width,
                x1=(tx + 1.0 + 1.0) / 2.0 * width,
                y0=(ty - 1.0 / t + 1.0) / 2.0 * height,
                y1=(ty + 1.0 / t + 1.0) / 2.0 * height,
                width=width,
                height=height,
            )
        )
    return boxes
