"""Attention pictures (the paper's Fig. 7): each level's hard regions as boxes and soft spatial map as a heat map.

One PNG per image, panels left to right: the input crop; levels 1-3 with their T regions drawn as
coloured boxes (dashed edge: the region continues outside the image, where GridSample reads zeros);
levels 1-3 with the soft spatial attention (before the sigmoid fusion, min-max normalised per map)
as a heat map over the crop.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from ..contract.decode import DecodeError, read_image
from ..contract.preprocess import preprocess, resize_crop
from . import draw
from .regions import RegionBox, region_boxes


@dataclass
class ImageAttention:
    """What the three HA modules decided for one image."""

    crop: np.ndarray  # model-size BGR uint8 crop (what the network saw)
    theta: np.ndarray  # (levels, T, 2): (tx, ty) per region
    spatial: list[np.ndarray | None]  # per level (H_l, W_l) soft spatial map, None when that switch is off

    @property
    def boxes(self) -> list[list[RegionBox]]:
        """Region boxes per level, in pixels of :attr:`crop`."""
        return [region_boxes(t, self.crop.shape[:2]) for t in self.theta]


def model_crop(image: np.ndarray, cfg: Any) -> np.ndarray:
    """The model-size crop of a BGR image as the network sees it, back in BGR for drawing."""
    crop = resize_crop(image, cfg.preprocess)
    return cv2.cvtColor(crop, cv2.COLOR_RGB2BGR) if cfg.preprocess.channel_order == "RGB" else crop


def compute_attention(model: Any, images: Sequence[np.ndarray], batch_size: int = 32) -> list[ImageAttention]:
    """Run ``model`` (a HAN) on BGR crops and collect each level's theta and soft spatial map."""
    import torch

    model = model.eval()
    cfg = model.cfg
    results: list[ImageAttention] = []
    for start in range(0, len(images), batch_size):
        chunk = list(images[start : start + batch_size])
        x = torch.from_numpy(preprocess(chunk, cfg.preprocess))
        with torch.no_grad():
            _, _, records = model.forward_features(x, with_attention=True)
        thetas = np.stack([r.theta.numpy() for r in records], axis=1)  # N, levels, T, 2
        for i, image in enumerate(chunk):
            spatial = [None if r.spatial is None else r.spatial[i, 0].numpy() for r in records]
            results.append(ImageAttention(model_crop(image, cfg), thetas[i], spatial))
    return results


def draw_regions(crop: np.ndarray, boxes: Sequence[RegionBox], scale: int) -> np.ndarray:
    """Upscaled crop with one coloured, numbered rectangle per region; clipped edges are dashed."""
    panel = draw.upscale(crop, scale)
    h, w = panel.shape[:2]
    for t, box in enumerate(boxes):
        colour = draw.region_colour(t)
        x0, y0, x1, y1 = (v * scale for v in box.clipped)
        inset = 1 + t  # stagger coincident edges of neighbouring regions so each stays visible
        x0, y0 = min(x0 + inset, w - 1), min(y0 + inset, h - 1)
        x1, y1 = max(x1 - 1 - inset, x0), max(y1 - 1 - inset, y0)
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        for edge, out in enumerate((box.outside[1], box.outside[2], box.outside[3], box.outside[0])):  # top, right, bottom, left
            p0, p1 = corners[edge], corners[(edge + 1) % 4]
            if out:
                draw.dashed_line(panel, p0, p1, colour)
            else:
                cv2.line(panel, p0, p1, colour, 2, cv2.LINE_AA)
        # labels staggered by region so that coinciding regions (e.g. all pushed into one corner) stay readable
        draw.label(panel, str(t + 1), (min(x0 + 3 + 16 * t, w - 14), min(y0 + 3, h - 16)), colour)
    return panel


def attention_figure(att: ImageAttention, title: str, region_sizes: Sequence[tuple[int, int]], scale: int = 3) -> np.ndarray:
    """The side-by-side picture of one image: input, regions per level, soft spatial map per level."""
    big = draw.upscale(att.crop, scale)
    panels = [draw.caption(big, "input")]
    for level, boxes in enumerate(att.boxes):
        rh, rw = region_sizes[level]
        inside = 100 * float(np.mean([b.inside_fraction for b in boxes]))
        panels.append(draw.caption(draw_regions(att.crop, boxes, scale), f"L{level + 1} hard {rh}x{rw}, {inside:.0f}% in"))
    for level, spatial in enumerate(att.spatial):
        if spatial is None:
            panel = cv2.cvtColor(cv2.cvtColor(big, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
            draw.put_text(panel, "soft spatial off", (4, 20), draw.RED)
            label = f"L{level + 1} soft: off"
        else:
            panel = draw.heat_overlay(big, spatial)
            label = f"L{level + 1} soft {spatial.shape[0]}x{spatial.shape[1]}"
        panels.append(draw.caption(panel, label))
    return draw.caption(draw.hstack(panels), title)


def figure_shape(input_size: tuple[int, int], levels: int = 3, scale: int = 3) -> tuple[int, int, int]:
    """(height, width, 3) of :func:`attention_figure` for a model input of ``input_size`` (H, W)."""
    h, w = input_size
    panels = 1 + 2 * levels
    return 2 * draw.CAPTION_H + h * scale, panels * w * scale + (panels - 1) * draw.GAP, 3


def render_attention(
    model: Any,
    image_paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    scale: int = 3,
    label: str = "",
    batch_size: int = 32,
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Write ``<out_dir>/<image stem>_attention.png`` per image; return the written files and the (path, error) failures.

    An unreadable image is reported and skipped; the others are still drawn.
    """
    out = Path(out_dir)
    paths = [Path(p) for p in image_paths]
    failures: list[tuple[Path, str]] = []
    written: list[Path] = []
    used: set[str] = set()
    for start in tqdm(range(0, len(paths), batch_size), desc="attention", unit="batch", disable=len(paths) <= batch_size):
        images: list[np.ndarray] = []
        sources: list[Path] = []
        for p in paths[start : start + batch_size]:  # one chunk in memory at a time
            try:
                images.append(read_image(p))
                sources.append(p)
            except DecodeError as exc:
                failures.append((p, str(exc)))
        for src, att in zip(sources, compute_attention(model, images, batch_size), strict=True):
            name = src.stem
            while name in used:  # two inputs with the same stem from different folders
                name += "_"
            used.add(name)
            title = f"{src.name}{'  |  ' + label if label else ''}"
            figure = attention_figure(att, title, model.cfg.region_sizes, scale)
            written.append(draw.write_png(out / f"{name}_attention.png", figure))
    return written, failures
