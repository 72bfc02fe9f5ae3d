"""End-to-end evaluation of query and gallery feature matrices: the one call han-eval, the demo and serving use."""

from __future__ import annotations

import numpy as np

from .distance import pairwise_distance
from .multi_query import pool_multi_query
from .rank import evaluate_rank
from .rerank import re_ranking


def evaluate_features(
    q_feats: np.ndarray,
    g_feats: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    rerank: bool = False,
    *,
    multi_query: str | None = None,
    multi_query_extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    max_rank: int = 50,
    **rerank_kw,
) -> dict:
    """R1, R5, R10, mAP, mINP (fractions), ``cmc`` (list) and ``num_valid_queries`` for L2 matching.

    Distances are squared L2 (same ranking as L2; what torchreid hands to re-ranking). ``multi_query``
    ("max" or "mean") pools each query with its same-id same-camera queries first, plus the
    ``multi_query_extra=(feats, pids, camids)`` images if given (Market: ``gt_bbox/``); ``rerank=True``
    applies k-reciprocal re-ranking with ``rerank_kw`` (k1, k2, lambda_value).
    """
    if rerank_kw and not rerank:
        raise TypeError(f"re-ranking options {sorted(rerank_kw)} given without rerank=True")
    if multi_query is not None:
        q_feats = pool_multi_query(q_feats, q_pids, q_camids, method=multi_query, extra=multi_query_extra)
    elif multi_query_extra is not None:
        raise TypeError("multi_query_extra given without multi_query='max' or 'mean'")
    dist = pairwise_distance(q_feats, g_feats, squared=True)
    if rerank:
        q_q = pairwise_distance(q_feats, q_feats, squared=True)
        g_g = pairwise_distance(g_feats, g_feats, squared=True)
        dist = re_ranking(dist, q_q, g_g, **rerank_kw)
    return evaluate_rank(dist, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank).as_dict()
