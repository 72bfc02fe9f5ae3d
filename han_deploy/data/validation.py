"""A validation split carved from the training identities, so recipes are chosen without the test split.

``carve_validation`` moves ``num_ids`` training identities (drawn with a seed) out of ``train`` and
turns them into a query/gallery pair; the remaining training pids are relabelled to 0..K-1. With
``cross_camera`` (two-camera data such as cuhk03_pair) the query is camera 0 and the gallery the other
cameras, like that dataset's test protocol; otherwise each identity gives one random image per camera
to the query and the rest to the gallery (Market-1501 style).
"""

from __future__ import annotations

import numpy as np

from .records import DatasetSplits, Record


def carve_validation(splits: DatasetSplits, num_ids: int, seed: int = 0, cross_camera: bool = False) -> DatasetSplits:
    """``splits`` with ``num_ids`` training identities moved into a validation query/gallery."""
    pids = sorted({r.pid for r in splits.train})
    if not 2 <= num_ids <= len(pids) - 2:
        raise ValueError(f"--val-ids {num_ids}: need 2..{len(pids) - 2} (the training split has {len(pids)} identities)")
    rng = np.random.default_rng(seed)
    held = {int(p) for p in rng.choice(pids, size=num_ids, replace=False)}
    keep = [p for p in pids if p not in held]
    mapping = {p: i for i, p in enumerate(keep)}
    train = [Record(r.path, mapping[r.pid], r.camid) for r in splits.train if r.pid in mapping]
    val = [r for r in splits.train if r.pid in held]
    if cross_camera:
        query = [r for r in val if r.camid == 0]
        gallery = [r for r in val if r.camid != 0]
    else:
        query, gallery = _one_per_camera(val, rng)
    if not query or not gallery:
        raise ValueError(f"the {num_ids} validation identities gave an empty query or gallery: check the camera ids")
    return DatasetSplits(f"{splits.name} validation ({num_ids} training ids held out)", train, query, gallery)


def _one_per_camera(records: list[Record], rng: np.random.Generator) -> tuple[list[Record], list[Record]]:
    """One random image per (identity, camera) as query, the rest as gallery."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r.pid, r.camid), []).append(i)
    chosen = {int(rng.choice(idx)) for _, idx in sorted(groups.items())}
    query = [r for i, r in enumerate(records) if i in chosen]
    gallery = [r for i, r in enumerate(records) if i not in chosen]
    return query, gallery
