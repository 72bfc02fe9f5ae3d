"""Person-crop preprocessing with OpenCV and numpy: the one implementation training and the runtime share.

Training must see exactly what deployment sees, so the data loaders call these functions too.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..config import PreprocessConfig


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Convert grayscale, BGRA and 16-bit images to 3-channel 8-bit BGR (OpenCV's decode order)."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise TypeError(f"unsupported image dtype {image.dtype}")
        image = np.clip(image * 255.0, 0, 255).astype(np.uint8)  # floats are taken as [0, 1]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"unsupported image shape {image.shape}")


def resize_crop(image: np.ndarray, pre: PreprocessConfig) -> np.ndarray:
    """BGR uint8 crop -> model-size RGB (or BGR, per contract) uint8 HWC."""
    h, w = pre.input_size
    image = to_bgr_uint8(image)
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    out = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    if pre.channel_order == "RGB":
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
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
