"""Evaluation stage (numpy only, importable without torch): rank metrics, re-ranking, multi-query pooling.

``evaluate_features`` is the end-to-end entry point; ``evaluate_rank`` scores a distance matrix
under the standard re-id protocol (see ``rank.py`` and docs/datasets.md). A torch model is scored by
``han_deploy.evaluate.torch_eval.evaluate_model``, the one module here that imports torch (not imported by this package).
"""

from .distance import l2_normalize, pairwise_distance
from .features import evaluate_features
from .multi_query import pool_multi_query
from .rank import RankResult, evaluate_rank
from .rerank import re_ranking

__all__ = [
    "RankResult",
    "evaluate_features",
    "evaluate_rank",
    "l2_normalize",
    "pairwise_distance",
    "pool_multi_query",
    "re_ranking",
]
