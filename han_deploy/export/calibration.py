"""INT8 calibration data: person crops preprocessed exactly as the runtime does, fed to ONNX Runtime.

Crops come from a folder (``--calib-data DIR``; the target cameras' crops calibrate best) or from
the project's synthetic generator (``--calib-data synthetic``, or a loud warning when none is given). Either way they go through
:func:`han_deploy.contract.preprocess.preprocess`, the one implementation the runtime uses; files are decoded by
:func:`han_deploy.contract.decode.read_image`, as the runtime decodes them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import INPUT_NAME, PreprocessConfig
from ..contract.decode import IMAGE_SUFFIXES, DecodeError, image_files, read_image
from ..contract.preprocess import preprocess


class CalibrationDataError(ValueError):
    """The calibration source cannot provide crops (missing, empty or unreadable)."""


SYNTHETIC = "synthetic"  # --calib-data synthetic: calibrate on the generator's people, asked for explicitly


def _read_crops(paths: Sequence[Path], folder: str | os.PathLike[str]) -> list[np.ndarray]:
    """BGR images at ``paths``; unreadable files are skipped with a warning naming each, none readable is an error."""
    crops, bad = [], []
    for path in paths:
        try:
            crops.append(read_image(path))
        except DecodeError as exc:
            bad.append(str(exc))
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable calibration image(s) in {folder}: {'; '.join(bad[:5])}", stacklevel=3)
    if not crops:
        raise CalibrationDataError(f"no readable image in calibration folder {folder} ({len(bad)} unreadable)")
    return crops


def _shuffled_images(folder: str | os.PathLike[str], seed: int) -> list[Path]:
    """Every image file under ``folder`` (recursive) in a seeded random order."""
    if not Path(folder).is_dir():
        raise CalibrationDataError(f"calibration folder not found or not a directory: {folder}")
    paths = image_files(folder, recursive=True)
    if not paths:
        raise CalibrationDataError(f"calibration folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [paths[i] for i in np.random.default_rng(seed).permutation(len(paths))]


def load_crops(folder: str | os.PathLike[str], limit: int, seed: int = 0) -> list[np.ndarray]:
    """Up to ``limit`` BGR crops from ``folder``, a seeded random subset when there are more.

    Unreadable files are skipped with a warning (one bad file never sinks the set); a folder with no
    readable image is an error.
    """
    return _read_crops(sorted(_shuffled_images(folder, seed)[:limit]), folder)


def split_crops(
    folder: str | os.PathLike[str], n_calib: int, n_gate: int, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Calibration crops and gate crops from ``folder``, disjoint: the gate holds out up to a quarter of the images."""
    paths = _shuffled_images(folder, seed)
    if len(paths) < 2:
        raise CalibrationDataError(f"calibration folder {folder} holds {len(paths)} image: the gate needs one held apart")
    held = max(1, min(n_gate, len(paths) // 4))
    return _read_crops(sorted(paths[held : held + n_calib]), folder), _read_crops(sorted(paths[:held]), folder)


def synthetic_crops(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` crops from the project's synthetic re-id generator (``han_deploy.data.synth.sample_crops``)."""
    try:
        from ..data.synth import sample_crops
    except ImportError as exc:
        raise CalibrationDataError(
            "no --calib-data given and the synthetic generator (han_deploy.data.synth) is not available"
        ) from exc
    return list(sample_crops(n, seed=seed))


class CropCalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over preprocessed crops in equal batches of at most ``batch_size``.

    Implements the reader protocol (``get_next`` returning a feed dict or None, ``rewind``) without
    subclassing, so importing this module does not import the quantization tooling.
    """

    def __init__(
        self, crops: Sequence[np.ndarray], pre: PreprocessConfig, batch_size: int = 8, input_name: str = INPUT_NAME
    ) -> None:
        if not crops:
            raise CalibrationDataError("no calibration crops")
        self.inputs = preprocess(list(crops), pre)
        # equal batches: ONNX Runtime's histogram calibrators stack the per-batch outputs into one array
        n = len(self.inputs)
        self.batch_size = max(d for d in range(1, max(1, min(batch_size, n)) + 1) if n % d == 0)
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
