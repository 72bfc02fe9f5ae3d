"""MSMT17 from its list files: ``list_{train,val,query,gallery}.txt``, one ``relative/path pid`` per line.

Train and val images live under ``train/`` (V1; ``mask_train_v2/`` in V2), query and gallery under
``test/`` (``mask_test_v2/``). The camera is the third ``_`` field of the file name
(``0000_000_01_0303morning_0015_0.jpg`` -> camera 01, camid 0). ``merge_val=True`` (the usual
protocol, 1,041 train ids / 32,621 images) adds the val list to train.
"""

from __future__ import annotations

from pathlib import Path

from ..records import DatasetSplits, Record
from .common import find_root, make_splits, report_malformed, require

LAYOUTS = (("train", "test"), ("mask_train_v2", "mask_test_v2"))


def _read_list(list_path: Path, image_dir: Path, bad: list[str]) -> list[Record]:
    records = []
    for lineno, line in enumerate(list_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        fields = Path(parts[0]).name.split("_") if parts else []
        if (
            len(parts) != 2
            or not parts[1].lstrip("-").isdigit()
            or len(fields) < 3
            or not fields[2].isdigit()
            or int(fields[2]) < 1
        ):
            bad.append(f"{list_path}:{lineno}: {line.strip()}")
            continue
        records.append(Record(image_dir / parts[0], int(parts[1]), int(fields[2]) - 1))
    return records


def msmt17(root: Path, merge_val: bool = True, strict: bool = False) -> DatasetSplits:
    """MSMT17 V1 or V2 (1,041 train / 3,060 test ids, 15 cameras); ``root`` or ``root/MSMT17_V1`` (``_V2``)."""
    base = find_root(Path(root), "msmt17", "list_train.txt", ("MSMT17_V1", "MSMT17_V2", "MSMT17"))
    train_dir, test_dir = next(((base / a, base / b) for a, b in LAYOUTS if (base / a).is_dir()), (base / "train", base / "test"))
    require(train_dir, "msmt17")
    require(test_dir, "msmt17")
    bad: list[str] = []
    lists = {k: require(base / f"list_{k}.txt", "msmt17", "file") for k in ("train", "query", "gallery")}
    train = _read_list(lists["train"], train_dir, bad)
    if merge_val:
        train += _read_list(require(base / "list_val.txt", "msmt17", "file"), train_dir, bad)
    query = _read_list(lists["query"], test_dir, bad)
    gallery = _read_list(lists["gallery"], test_dir, bad)
    report_malformed("msmt17", bad, strict)
    return make_splits("msmt17", train, query, gallery)
