"""Multi-query pooling (Market-1501 "MQ"): one feature per query from all its same-id same-camera images."""

from __future__ import annotations

import numpy as np

from .distance import l2_normalize

_REDUCERS = {"max": np.maximum, "mean": np.add}


def pool_multi_query(
    q_feats: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    method: str = "max",
    extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Replace each query feature by the pooled L2-normalised features of its (pid, camera) group, re-normalised.

    The group is the queries with the same pid and camera plus, when ``extra=(feats, pids, camids)``
    is given, those extra images (Market-1501's multi-query pools the hand-drawn ``gt_bbox/``
    images of the query's id and camera: its ``query/`` holds one image per id and camera).
    Returns an array shaped like ``q_feats`` (one row per query, so pids and camids still line up).
    ``method`` is ``"max"`` (element-wise maximum) or ``"mean"``.
    """
    if method not in _REDUCERS:
        raise ValueError(f"unknown pooling method {method!r}; choose from {sorted(_REDUCERS)}")
    feats = np.asarray(q_feats)
    if feats.ndim != 2:
        raise ValueError(f"q_feats must be 2-D (queries x dim), got shape {feats.shape}")
    pids = np.asarray(q_pids)
    camids = np.asarray(q_camids)
    if pids.shape != (len(feats),) or camids.shape != (len(feats),):
        raise ValueError(f"q_pids {pids.shape} and q_camids {camids.shape} must both have shape ({len(feats)},)")
    if len(feats) == 0:
        return feats.astype(np.float32)
    num_q = len(feats)
    if extra is not None:
        e_feats, e_pids, e_cams = (np.asarray(a) for a in extra)
        n_extra = (len(e_feats),)
        if e_feats.ndim != 2 or e_feats.shape[1] != feats.shape[1] or e_pids.shape != n_extra or e_cams.shape != n_extra:
            got = f"{e_feats.shape}, {e_pids.shape}, {e_cams.shape}"
            raise ValueError(f"extra must be (feats N x {feats.shape[1]}, pids N, camids N), got {got}")
        feats, pids, camids = np.concatenate([feats, e_feats]), np.concatenate([pids, e_pids]), np.concatenate([camids, e_cams])
    feats = l2_normalize(feats.astype(np.float32 if feats.dtype == np.float32 else np.float64))
    order = np.lexsort((camids, pids))
    sorted_pids, sorted_cams = pids[order], camids[order]
    new_group = np.ones(len(order), dtype=bool)
    new_group[1:] = (sorted_pids[1:] != sorted_pids[:-1]) | (sorted_cams[1:] != sorted_cams[:-1])
    starts = np.flatnonzero(new_group)
    pooled = _REDUCERS[method].reduceat(feats[order], starts, axis=0)  # mean: sums, rescaled by the norm below
    group_of = np.cumsum(new_group) - 1
    out = np.empty_like(feats)
    out[order] = pooled[group_of]
    return l2_normalize(out[:num_q])
