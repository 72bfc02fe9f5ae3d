"""Data stage: dataset readers (Market-1501, DukeMTMC-reID, CUHK03, MSMT17, ...) and the synthetic generator."""

from .readers import DATASETS, MalformedNameWarning, build_dataset, market1501_gt_bbox
from .records import DatasetSplits, Record

__all__ = ["DATASETS", "DatasetSplits", "MalformedNameWarning", "Record", "build_dataset", "market1501_gt_bbox"]
