"""INT8 calibration data: person crops preprocessed exactly as the runtime does, fed to ONNX Runtime.

Crops come from a folder (``--calib-data``; the target cameras' crops calibrate best) or, without
one, from the project's synthetic generator. Either way they go through
:func:`han_deploy.runtime.preprocess.preprocess`, the one implementation the runtime uses.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import INPUT_NAME, PreprocessConfig
from ..runtime.preprocess import preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class CalibrationDataError(ValueError):
    """The calibration source cannot provide crops (missing, empty or unreadable)."""


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted so every run sees the same order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationDataError(f"calibration folder not found or not a directory: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_crops(folder: str | os.PathLike[str], limit: int, seed: int = 0) -> list[np.ndarray]:
    """Up to ``limit`` BGR crops from ``folder``, a seeded random subset when there are more.

    Unreadable files are skipped with a warning (one bad file never sinks the set); a folder with no
    readable image is an error.
    """
    import cv2

    paths = list_images(folder)
    if not paths:
        raise CalibrationDataError(f"calibration folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if len(paths) > limit:
        order = np.random.default_rng(seed).permutation(len(paths))[:limit]
        paths = [paths[i] for i in sorted(order)]
    crops, bad = [], []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            bad.append(path.name)
        else:
            crops.append(image)
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable calibration image(s) in {folder}: {', '.join(bad[:5])}", stacklevel=2)
    if not crops:
        raise CalibrationDataError(f"no readable image in calibration folder {folder} ({len(bad)} unreadable)")
    return crops


def synthetic_crops(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` crops from the project's synthetic re-id generator (``han_deploy.data.synth.sample_crops``)."""
    try:
        from ..data.synth import sample_crops
    except ImportError as exc:
        raise CalibrationDataError(
            "no --calib-data given and the synthetic generator (han_deploy.data.synth) is not available"
        ) from exc
    return list(sample_crops(n, seed=seed))


def calibration_crops(calib_data: str | os.PathLike[str] | None, n: int, seed: int = 0) -> list[np.ndarray]:
    """The crops INT8 calibrates on: from ``calib_data`` when given, else synthetic (with a warning)."""
    if n < 1:
        raise CalibrationDataError(f"calibration size must be >= 1, got {n}")
    if calib_data is not None:
        return load_crops(calib_data, n, seed)
    warnings.warn(
        "no --calib-data: calibrating INT8 on synthetic crops; crops from the target cameras calibrate better",
        stacklevel=2,
    )
    return synthetic_crops(n, seed)


class CropCalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over preprocessed crops, ``batch_size`` at a time.

    Implements the reader protocol (``get_next`` returning a feed dict or None, ``rewind``) without
    subclassing, so importing this module does not import the quantization tooling.
    """

    def __init__(
        self, crops: Sequence[np.ndarray], pre: PreprocessConfig, batch_size: int = 8, input_name: str = INPUT_NAME
    ) -> None:
        if not crops:
            raise CalibrationDataError("no calibration crops")
        self.inputs = preprocess(list(crops), pre)
        self.batch_size = max(1, batch_size)
        self.input_name = input_name
        self._next = 0

    def __len__(self) -> int:
        return len(self.inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.inputs):
            return None
        batch = self.inputs[self._next : self._next + self.batch_size]
        self._next += self.batch_size
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._next = 0
