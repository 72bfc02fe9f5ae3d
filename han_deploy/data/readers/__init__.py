"""Dataset readers: one module per dataset family, each returning a ``DatasetSplits``.

Readers only list files and parse names or protocol files; they never open images (the loader
reports corrupt or missing images) and never download anything.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..records import DatasetSplits
from .common import MalformedNameWarning
from .cuhk03 import cuhk03
from .cuhk03_pair import cuhk03_pair
from .market import dukemtmcreid, market1501, market1501_gt_bbox, market_layout
from .msmt17 import msmt17

DATASETS: dict[str, Callable[..., DatasetSplits]] = {
    "market1501": market1501,
    "dukemtmcreid": dukemtmcreid,
    "market_layout": market_layout,
    "cuhk03": cuhk03,
    "msmt17": msmt17,
    "cuhk03_pair": cuhk03_pair,
}


def build_dataset(name: str, root: str | Path, verbose: bool = False, **kwargs) -> DatasetSplits:
    """Read dataset ``name`` from ``root``; ``kwargs`` go to its reader (e.g. ``split="detected"`` for cuhk03).

    ``verbose=True`` prints the statistics table. Unknown names raise ``ValueError`` listing the
    valid ones; a wrong root raises ``FileNotFoundError`` naming the missing folder or file.
    """
    reader = DATASETS.get(name.lower())
    if reader is None:
        raise ValueError(f"unknown dataset {name!r}; choose from: {', '.join(DATASETS)}")
    splits = reader(Path(root), **kwargs)
    if verbose:
        print(splits.statistics())
    return splits


__all__ = ["DATASETS", "MalformedNameWarning", "build_dataset", "market1501_gt_bbox"]
