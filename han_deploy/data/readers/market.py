"""Market-1501-style folders: Market-1501, DukeMTMC-reID and any folder in that layout (the synthetic data).

Layout: ``bounding_box_train/``, ``bounding_box_test/`` (the gallery) and ``query/`` under the root.
The file name carries the pid and the 1-based camera: Market ``PPPP_cCsS_FFFFFF_NN.jpg``, Duke
``PPPP_cC_fFFFFFFF.jpg``; pid ``-1`` marks junk, ``0000`` distractors. Train keeps real identities
only (no -1, no 0) and is relabelled; the query keeps real identities; the gallery keeps everything
(junk and distractors are the evaluation's business, see ``han_deploy.evaluate.rank``).
"""

from __future__ import annotations

import re
from pathlib import Path

from ...contract.decode import image_files
from ..records import DatasetSplits, Record
from .common import find_root, make_splits, report_malformed, require

SPLIT_FOLDERS = ("bounding_box_train", "query", "bounding_box_test")
MARKET_NAME = re.compile(r"(-1|\d+)_c(\d+)s\d+_\d+_\d+")
DUKE_NAME = re.compile(r"(\d+)_c(\d+)_f\d+")
GENERIC_NAME = re.compile(r"(-1|\d+)_c(\d+)(?:[_s].*)?")  # any "PPPP_cC..." name: Market, Duke, synthetic


def _read_folder(folder: Path, pattern: re.Pattern, bad: list[str]) -> list[Record]:
    records = []
    for path in image_files(folder):
        m = pattern.fullmatch(path.stem)
        if m is None or int(m.group(2)) < 1:
            bad.append(str(path))
            continue
        records.append(Record(path, int(m.group(1)), int(m.group(2)) - 1))
    return records


def read_market_style(
    root: Path, name: str, pattern: re.Pattern, nested: tuple[str, ...] = (), strict: bool = False
) -> DatasetSplits:
    """Read a Market-layout dataset; names that do not match ``pattern`` are skipped with a warning."""
    base = find_root(Path(root), name, SPLIT_FOLDERS[0], nested)
    bad: list[str] = []
    train, query, gallery = (_read_folder(require(base / sub, name), pattern, bad) for sub in SPLIT_FOLDERS)
    no_identity = [str(r.path) + " (query with pid -1/0)" for r in query if r.pid <= 0]
    report_malformed(name, bad + no_identity, strict)
    return make_splits(name, [r for r in train if r.pid > 0], [r for r in query if r.pid > 0], gallery)


def market1501_gt_bbox(root: Path, strict: bool = False) -> list[Record]:
    """Market-1501's hand-drawn ``gt_bbox/`` images (all 1,501 ids), the pool of its multi-query protocol.

    Pass the features of these records as ``extra`` to ``han_deploy.evaluate.pool_multi_query``: each
    query is pooled with the ``gt_bbox`` images of its id and camera.
    """
    base = find_root(Path(root), "market1501", "gt_bbox", ("Market-1501-v15.09.15", "market1501"))
    bad: list[str] = []
    records = _read_folder(base / "gt_bbox", MARKET_NAME, bad)
    report_malformed("market1501 gt_bbox", bad, strict)
    return records


def market1501(root: Path, strict: bool = False) -> DatasetSplits:
    """Market-1501 (751 train / 750 test ids, 6 cameras); ``root`` or ``root/Market-1501-v15.09.15``."""
    return read_market_style(root, "market1501", MARKET_NAME, ("Market-1501-v15.09.15", "market1501"), strict)


def dukemtmcreid(root: Path, strict: bool = False) -> DatasetSplits:
    """DukeMTMC-reID (702 / 702 ids + 408 gallery distractor ids, 8 cameras); ``root`` or ``root/DukeMTMC-reID``."""
    return read_market_style(root, "dukemtmcreid", DUKE_NAME, ("DukeMTMC-reID", "dukemtmc-reid/DukeMTMC-reID"), strict)


def market_layout(root: Path, strict: bool = False) -> DatasetSplits:
    """Any folder in the Market layout whose names start ``PPPP_cC`` (what ``han-synth`` writes)."""
    return read_market_style(root, "market_layout", GENERIC_NAME, (), strict)
