"""The record types every dataset reader yields: (path, pid, camid) per image, in train/query/gallery."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Record:
    """One image: file path, person id (train ids relabelled to 0..K-1; -1 junk, 0 distractor), camera id."""

    path: Path
    pid: int
    camid: int


@dataclass
class DatasetSplits:
    """A re-id dataset: training records (relabelled pids) plus the query and gallery of its test protocol."""

    name: str
    train: list[Record] = field(default_factory=list)
    query: list[Record] = field(default_factory=list)
    gallery: list[Record] = field(default_factory=list)

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    def statistics(self) -> str:
        """The usual re-id statistics table: ids, images and cameras per split."""
        rows = [("train", self.train), ("query", self.query), ("gallery", self.gallery)]
        lines = [f"=> {self.name}", "  subset   | # ids | # images | # cameras", "  " + "-" * 40]
        for label, recs in rows:
            ids = len({r.pid for r in recs})
            cams = len({r.camid for r in recs})
            lines.append(f"  {label:<8} | {ids:5d} | {len(recs):8d} | {cams:9d}")
        return "\n".join(lines)
