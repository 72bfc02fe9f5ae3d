"""CUHK03, new protocol 767/700 (Zhong et al. 2017), labelled or detected boxes, from the protocol ``.mat`` files.

``cuhk03_new_protocol_config_{labeled,detected}.mat`` holds, per image, ``filelist`` (the image
name), ``labels`` (the pid, 1..1467) and ``camId`` (1 or 2), plus 1-based index vectors
``train_idx``, ``query_idx`` and ``gallery_idx``. The images themselves are the ones extracted from
``cuhk-03.mat`` by the usual tools into ``images_labeled/`` and ``images_detected/`` under the same
root. Needs scipy (``scipy.io.loadmat``; the protocol files are MATLAB v5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..records import DatasetSplits, Record
from .common import find_root, make_splits, require

SPLITS = ("labeled", "detected")
FIELDS = ("filelist", "labels", "camId", "train_idx", "query_idx", "gallery_idx")


def _names(cell: np.ndarray) -> list[str]:
    """File names from a MATLAB cell array of strings (object array) or a char matrix (one name per row)."""
    if cell.dtype == object:
        return [str(np.asarray(item).ravel()[0]).strip() for item in cell.ravel()]
    return [str(row).strip() for row in np.atleast_1d(cell).ravel()]


def cuhk03(root: Path, split: str = "labeled") -> DatasetSplits:
    """CUHK03 767/700, ``split="labeled"`` (hand-drawn boxes) or ``"detected"`` (DPM boxes)."""
    if split not in SPLITS:
        raise ValueError(f"cuhk03: split must be one of {SPLITS}, got {split!r}")
    name = f"cuhk03 ({split})"
    mat_name = f"cuhk03_new_protocol_config_{split}.mat"
    base = find_root(Path(root), "cuhk03", mat_name, ("cuhk03", "cuhk03_release"))
    images = require(base / f"images_{split}", "cuhk03")
    try:
        from scipy.io import loadmat
    except ImportError as exc:  # scipy is only needed for this reader
        raise ImportError("cuhk03: reading the protocol .mat needs scipy (pip install scipy)") from exc
    mat_path = base / mat_name
    try:
        mat = loadmat(str(mat_path))
    except (NotImplementedError, ValueError, OSError) as exc:  # v7.3 (HDF5) files or a damaged file
        raise ValueError(f"cuhk03: cannot read {mat_path}: {exc}") from exc
    missing = [f for f in FIELDS if f not in mat]
    if missing:
        raise ValueError(f"cuhk03: {mat_path} lacks the field(s) {missing}")
    names = _names(mat["filelist"])
    labels = np.asarray(mat["labels"]).ravel().astype(np.int64)
    cams = np.asarray(mat["camId"]).ravel().astype(np.int64)
    if cams.size and cams.min() < 1:
        raise ValueError(f"cuhk03: {mat_path}: camId should be 1-based (1 or 2), found {cams.min()}")
    if not len(names) == len(labels) == len(cams):
        raise ValueError(f"cuhk03: {mat_path}: filelist/labels/camId lengths differ ({len(names)}, {len(labels)}, {len(cams)})")

    def pick(field: str) -> list[Record]:
        idx = np.asarray(mat[field]).ravel().astype(np.int64) - 1  # MATLAB indices are 1-based
        if idx.size and (idx.min() < 0 or idx.max() >= len(names)):
            raise ValueError(f"cuhk03: {mat_path}: {field} points outside the {len(names)} images")
        return [Record(images / names[i], int(labels[i]), int(cams[i]) - 1) for i in idx]

    return make_splits(name, pick("train_idx"), pick("query_idx"), pick("gallery_idx"))
