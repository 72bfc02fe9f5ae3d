"""Colour-histogram baseline: HSV histograms over horizontal stripes, the classic hand-crafted re-id feature.

Torch-free (numpy + OpenCV). It is the floor a learned model must clear by a wide margin: it sees only
colour layout, not shape, patterns or accessories, and it suffers from camera colour casts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

BASELINE_SIZE = (128, 48)  # (height, width) the crops are resized to before the histograms
NUM_STRIPES = 6
HUE_BINS, SAT_BINS, VAL_BINS = 8, 2, 2  # chromatic pixels: hue x saturation x value
GREY_BINS = 4  # achromatic pixels: value only (their hue is noise that any colour cast flips)
MIN_SATURATION, MIN_VALUE = 60, 40  # OpenCV 8-bit HSV: below either, a pixel counts as achromatic
STRIPE_DIM = HUE_BINS * SAT_BINS * VAL_BINS + GREY_BINS


def _load(image: np.ndarray | str | os.PathLike[str]) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    img = cv2.imread(os.fspath(image), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read image {os.fspath(image)!r} (missing or corrupt)")
    return img


def color_histogram_feature(image: np.ndarray | str | os.PathLike[str], stripes: int = NUM_STRIPES) -> np.ndarray:
    """One crop (BGR uint8 array or image path) -> L2-normalised float32 vector of stripes x STRIPE_DIM.

    Each horizontal stripe gets a joint hue x saturation x value histogram of its chromatic pixels
    plus a value histogram of its achromatic ones (black, grey, white clothes); the square root of
    the frequencies (Hellinger mapping) tempers the dominant colour before the final L2 normalisation.
    """
    img = _load(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) == 0:
        raise ValueError(f"expected a non-empty BGR uint8 image, got shape {img.shape} dtype {img.dtype}")
    h, w = BASELINE_SIZE
    hsv = cv2.cvtColor(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2HSV)
    hue, sat, val = (hsv[..., i].astype(np.int32) for i in range(3))
    chromatic = (sat >= MIN_SATURATION) & (val >= MIN_VALUE)
    s_bin = np.minimum((sat - MIN_SATURATION) * SAT_BINS // (256 - MIN_SATURATION), SAT_BINS - 1)
    v_bin = np.minimum((val - MIN_VALUE) * VAL_BINS // (256 - MIN_VALUE), VAL_BINS - 1)
    colour_bin = ((hue * HUE_BINS // 180) * SAT_BINS + s_bin) * VAL_BINS + v_bin
    grey_bin = HUE_BINS * SAT_BINS * VAL_BINS + val * GREY_BINS // 256
    bins = np.where(chromatic, colour_bin, grey_bin)
    stripe = np.arange(h)[:, None] * stripes // h  # stripe index of every row
    hist = np.zeros((stripes, STRIPE_DIM), np.float64)
    np.add.at(hist, (np.broadcast_to(stripe, bins.shape), bins), 1.0)
    feat = np.sqrt(hist / hist.sum(axis=1, keepdims=True)).ravel().astype(np.float32)
    return feat / max(float(np.linalg.norm(feat)), 1e-12)


def color_histogram_features(images: Sequence[np.ndarray | str | os.PathLike[str]], stripes: int = NUM_STRIPES) -> np.ndarray:
    """Stack of :func:`color_histogram_feature` for many crops: (N, stripes * STRIPE_DIM) float32."""
    if len(images) == 0:
        return np.zeros((0, stripes * STRIPE_DIM), np.float32)
    return np.stack([color_histogram_feature(im, stripes) for im in images])
