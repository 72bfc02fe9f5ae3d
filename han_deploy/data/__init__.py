"""Data stage: dataset readers (Market-1501, DukeMTMC-reID, CUHK03, MSMT17, ...) and the synthetic generator."""

from .records import DatasetSplits, Record

__all__ = ["DatasetSplits", "Record"]
