"""Helpers every dataset reader shares: root checks, malformed-name reporting, train-pid relabelling."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from ..records import DatasetSplits, Record


class MalformedNameWarning(UserWarning):
    """An image (or list line) whose name does not follow the dataset's naming scheme was skipped."""


def find_root(root: Path, dataset: str, marker: str, nested: Iterable[str] = ()) -> Path:
    """The dataset folder: ``root`` itself when it holds ``marker``, else the first ``root/<nested>`` that does.

    Raises ``FileNotFoundError`` naming the missing ``root/marker`` (so a user sees what was expected where).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset}: dataset root {root} is not a folder")
    for candidate in (root, *(root / sub for sub in nested)):
        if (candidate / marker).exists():
            return candidate
    tried = "".join(f", {root / sub / marker}" for sub in nested)
    raise FileNotFoundError(f"{dataset}: missing {root / marker}{tried}")


def require(path: Path, dataset: str, kind: str = "folder") -> Path:
    """``path`` if it exists as a ``kind`` ("folder" or "file"), else ``FileNotFoundError`` naming it."""
    ok = path.is_dir() if kind == "folder" else path.is_file()
    if not ok:
        raise FileNotFoundError(f"{dataset}: missing {kind} {path}")
    return path


def report_malformed(dataset: str, bad: list[str], strict: bool) -> None:
    """Warn about (or, with ``strict``, refuse) the skipped entries, naming the first ones."""
    if not bad:
        return
    shown = "\n  ".join(bad[:10]) + (f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else "")
    msg = f"{dataset}: {len(bad)} entr{'y' if len(bad) == 1 else 'ies'} with a malformed name:\n  {shown}"
    if strict:
        raise ValueError(msg)
    warnings.warn(msg + "\n(skipped; pass strict=True to make this an error)", MalformedNameWarning, stacklevel=3)


def relabel(records: list[Record]) -> list[Record]:
    """Train records with pids mapped to 0..K-1 in increasing order of the original pid."""
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [Record(r.path, mapping[r.pid], r.camid) for r in records]


def make_splits(name: str, train: list[Record], query: list[Record], gallery: list[Record]) -> DatasetSplits:
    """A ``DatasetSplits`` with relabelled train pids; query and gallery keep their original pids."""
    return DatasetSplits(name=name, train=relabel(train), query=query, gallery=gallery)
