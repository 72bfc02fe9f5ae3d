"""Person-crop preprocessing with OpenCV and numpy: the one implementation training and the runtime share.

Training must see exactly what deployment sees, so the data loaders call these functions too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from ..config import PreprocessConfig

INTERPOLATIONS = {
    "bilinear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}


def _cv_ready(image: np.ndarray) -> np.ndarray:
    """OpenCV takes row-strided views (ROIs) but not negative or non-unit inner strides: copy only those."""
    if image.flags.c_contiguous:
        return image
    item = image.itemsize
    channels = image.shape[2] if image.ndim == 3 else 1
    inner_ok = (image.ndim == 2 or image.strides[2] == item) and image.strides[1] == channels * item
    return image if inner_ok and image.strides[0] > 0 else np.ascontiguousarray(image)


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Convert grayscale, gray+alpha, BGRA, 16-bit and float ([0, 1]) images to 3-channel 8-bit BGR (OpenCV's order)."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"unsupported image shape {image.shape}: expected (H, W) or (H, W, 1|2|3|4)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise TypeError(f"unsupported image dtype {image.dtype}: expected uint8, uint16 or float in [0, 1]")
        image = np.clip(np.nan_to_num(image.astype(np.float32), nan=0.0) * 255.0, 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] in (1, 2):
        image = image[:, :, 0]  # gray (+ alpha, dropped)
    image = _cv_ready(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def resize_crop(image: np.ndarray, pre: PreprocessConfig) -> np.ndarray:
    """BGR uint8 crop -> model-size RGB (or BGR, per contract) uint8 HWC, resized with the contract's interpolation."""
    h, w = pre.input_size
    image = to_bgr_uint8(image)
    try:
        interp = INTERPOLATIONS[pre.interpolation]
    except KeyError:
        raise ValueError(f"unknown interpolation {pre.interpolation!r}; known: {', '.join(INTERPOLATIONS)}") from None
    out = cv2.resize(image, (w, h), interpolation=interp)
    if pre.channel_order == "RGB":
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
    elif pre.channel_order != "BGR":
        raise ValueError(f"unknown channel order {pre.channel_order!r}: expected RGB or BGR")
    return out


def normalize_batch(crops: np.ndarray, pre: PreprocessConfig) -> np.ndarray:
    """(N, H, W, 3) uint8 model-size crops -> (N, 3, H, W) float32, scaled and mean/std normalised at once."""
    scale = np.asarray(pre.std, dtype=np.float32) / np.float32(pre.pixel_scale)
    offset = np.asarray(pre.mean, dtype=np.float32) / np.asarray(pre.std, dtype=np.float32)
    x = crops.astype(np.float32) / scale - offset
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess(images: list[np.ndarray], pre: PreprocessConfig) -> np.ndarray:
    """List of BGR crops of any size -> the network input batch (N, 3, H, W) float32."""
    if not images:
        h, w = pre.input_size
        return np.zeros((0, 3, h, w), dtype=np.float32)
    return normalize_batch(np.stack([resize_crop(im, pre) for im in images]), pre)


def clip_box(box: Sequence[float], frame_shape: Sequence[int]) -> tuple[int, int, int, int]:
    """An ``xyxy`` box in pixels -> integer (x1, y1, x2, y2) inside the frame, covering every touched pixel.

    Raises ``ValueError`` naming the problem for non-finite coordinates, zero or negative area, or a box
    that lies entirely outside the frame.
    """
    if len(box) != 4:
        raise ValueError(f"box {list(box)} must have 4 coordinates (x1, y1, x2, y2)")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"box {[x1, y1, x2, y2]} has non-finite coordinates")
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box {[x1, y1, x2, y2]} has zero or negative area (xyxy needs x2 > x1 and y2 > y1)")
    fh, fw = int(frame_shape[0]), int(frame_shape[1])
    cx1, cy1 = max(0, math.floor(x1)), max(0, math.floor(y1))
    cx2, cy2 = min(fw, math.ceil(x2)), min(fh, math.ceil(y2))
    if cx2 <= cx1 or cy2 <= cy1:
        raise ValueError(f"box {[x1, y1, x2, y2]} lies outside the {fw}x{fh} frame")
    return cx1, cy1, cx2, cy2


def crop_box(frame: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The pixels of ``frame`` under an ``xyxy`` box, clipped to the frame (a view, not a copy)."""
    x1, y1, x2, y2 = clip_box(box, frame.shape)
    return frame[y1:y2, x1:x2]
