"""CUHK03 crops extracted per camera pair (``shared/data/cuhk03-pair1``): ``train/`` and ``test/`` of ``PPPP_NN.jpg``.

``PPPP`` is the identity within its split, ``NN`` the image index: 00-04 camera A (camid 0),
05-09 camera B (camid 1). Train pids are relabelled; test pids keep the file's number (the train
and test numberings are separate, so the two never meet). The test protocol is cross-camera:
``direction="a2b"`` queries with camera A and searches camera B, ``"b2a"`` the reverse.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...contract.decode import image_files
from ..records import DatasetSplits, Record
from .common import find_root, make_splits, report_malformed, require

PAIR_NAME = re.compile(r"(\d+)_(\d{2})")
DIRECTIONS = ("a2b", "b2a")


def _read_folder(folder: Path, bad: list[str]) -> list[Record]:
    records = []
    for path in image_files(folder):
        m = PAIR_NAME.fullmatch(path.stem)
        if m is None or int(m.group(2)) > 9:
            bad.append(str(path))
            continue
        records.append(Record(path, int(m.group(1)), 0 if int(m.group(2)) < 5 else 1))
    return records


def cuhk03_pair(root: Path, direction: str = "a2b", strict: bool = False) -> DatasetSplits:
    """Train on ``train/``; query camera A and gallery camera B of ``test/`` (or the reverse with ``"b2a"``)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"cuhk03_pair: direction must be one of {DIRECTIONS}, got {direction!r}")
    base = find_root(Path(root), "cuhk03_pair", "train", ("cuhk03-pair1",))
    bad: list[str] = []
    train = _read_folder(require(base / "train", "cuhk03_pair"), bad)
    test = _read_folder(require(base / "test", "cuhk03_pair"), bad)
    report_malformed("cuhk03_pair", bad, strict)
    query_cam = 0 if direction == "a2b" else 1
    query = [r for r in test if r.camid == query_cam]
    gallery = [r for r in test if r.camid != query_cam]
    return make_splits(f"cuhk03_pair ({direction})", train, query, gallery)
