"""Drawing helpers shared by the attention and ranking pictures: OpenCV and numpy only, BGR uint8 images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_SCALE = 0.42
CAPTION_H = 20  # height of the caption bar above each panel
GAP = 6  # white space between panels
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREEN = (40, 170, 40)
RED = (40, 40, 220)
# One colour per hard-attention region (BGR), the same region index gets the same colour at every level.
REGION_COLOURS = [(60, 60, 230), (40, 180, 40), (230, 120, 30), (20, 200, 230), (200, 60, 200), (200, 200, 40)]


def region_colour(index: int) -> tuple[int, int, int]:
    """Colour of region ``index`` (cycles when there are more regions than colours)."""
    return REGION_COLOURS[index % len(REGION_COLOURS)]


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Enlarge by an integer factor with nearest-neighbour, so every input pixel stays a visible block."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    return cv2.resize(image, (image.shape[1] * scale, image.shape[0] * scale), interpolation=cv2.INTER_NEAREST)


def put_text(image: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int] = BLACK) -> None:
    """Write ``text`` in place with its baseline-left corner at ``org``."""
    cv2.putText(image, text, org, FONT, TEXT_SCALE, colour, 1, cv2.LINE_AA)


def label(image: np.ndarray, text: str, top_left: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """Write white ``text`` on a filled ``colour`` tag in place, readable on any background."""
    (tw, th), base = cv2.getTextSize(text, FONT, TEXT_SCALE, 1)
    x, y = top_left
    cv2.rectangle(image, (x, y), (x + tw + 4, y + th + base + 3), colour, -1)
    put_text(image, text, (x + 2, y + th + 2), WHITE)


def fit_text(text: str, width: int) -> str:
    """Shorten ``text`` with a trailing '~' until it fits in ``width`` pixels."""
    while text and cv2.getTextSize(text, FONT, TEXT_SCALE, 1)[0][0] > width:
        text = text[:-2] + "~" if len(text) > 1 else ""
    return text


def caption(panel: np.ndarray, text: str, colour: tuple[int, int, int] = BLACK) -> np.ndarray:
    """``panel`` with a white bar of :data:`CAPTION_H` pixels on top holding ``text``."""
    bar = np.full((CAPTION_H, panel.shape[1], 3), 255, np.uint8)
    put_text(bar, fit_text(text, panel.shape[1] - 4), (2, CAPTION_H - 6), colour)
    return np.vstack([bar, panel])


def hstack(panels: Sequence[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Panels side by side, top-aligned, separated by ``gap`` white pixels (shorter ones padded white below)."""
    if not panels:
        raise ValueError("no panels to stack")
    height = max(p.shape[0] for p in panels)
    parts: list[np.ndarray] = []
    for i, p in enumerate(panels):
        if i:
            parts.append(np.full((height, gap, 3), 255, np.uint8))
        if p.shape[0] < height:
            p = np.vstack([p, np.full((height - p.shape[0], p.shape[1], 3), 255, np.uint8)])
        parts.append(p)
    return np.hstack(parts)


def border(image: np.ndarray, colour: tuple[int, int, int], thickness: int) -> np.ndarray:
    """``image`` framed by a solid border (the image grows by ``2 * thickness`` each way)."""
    return cv2.copyMakeBorder(image, thickness, thickness, thickness, thickness, cv2.BORDER_CONSTANT, value=colour)


def dashed_line(image: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], colour: tuple[int, int, int], dash: int = 6) -> None:
    """Draw a dashed straight line in place (marks a box edge that was clipped at the image border)."""
    length = int(np.hypot(p1[0] - p0[0], p1[1] - p0[1]))
    for start in range(0, max(length, 1), 2 * dash):
        a = start / max(length, 1)
        b = min(start + dash, length) / max(length, 1)
        q0 = (round(p0[0] + a * (p1[0] - p0[0])), round(p0[1] + a * (p1[1] - p0[1])))
        q1 = (round(p0[0] + b * (p1[0] - p0[0])), round(p0[1] + b * (p1[1] - p0[1])))
        cv2.line(image, q0, q1, colour, 2, cv2.LINE_AA)


def heat_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend a 2-D map, min-max normalised and resized (bilinear) to ``image``, as a JET heat map over it."""
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heat map must be 2-D, got shape {heat.shape}")
    lo, hi = float(heat.min()), float(heat.max())
    norm = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    norm = cv2.resize(norm, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap(np.clip(norm * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(coloured, alpha, image, 1.0 - alpha, 0.0)


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Encode ``image`` as PNG and write it, creating parent folders; raises with the path if encoding fails."""
    path = Path(path)
    # level 6: a third of the size OpenCV 5 writes by default, ~0.1 s CPU per attention picture
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise OSError(f"could not encode PNG for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())
    return path
