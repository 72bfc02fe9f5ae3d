"""Protocol entries of an evaluation (q2g, or a2b / b2a / mean for two-camera sets, each with a +rerank twin).

Numpy only: han-eval's colour-histogram baseline, the trainer and han-eval's model path all score
their features here, so every caller reports the same entries with the same metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..data.records import DatasetSplits, Record
from .features import evaluate_features

METRICS = ("R1", "R5", "R10", "mAP", "mINP")

# (records, split name) -> (features (n, D) of the readable records, their indices into ``records``)
Featurize = Callable[[Sequence[Record], str], tuple[np.ndarray, np.ndarray]]


def score_features(
    q_feats: np.ndarray,
    g_feats: np.ndarray,
    query: Sequence[Record],
    gallery: Sequence[Record],
    both_directions: bool = False,
    rerank: bool = False,
    multi_query: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics per protocol entry for features aligned with ``query`` / ``gallery`` records.

    Returns ``{"q2g": {...}}``, or ``{"a2b", "b2a", "mean"}`` with ``both_directions`` (query and gallery
    swapped for b2a); each entry holds R1, R5, R10, mAP, mINP (fractions) and ``num_valid_queries``.
    With ``rerank`` every key gets a ``+rerank`` twin (e.g. ``"q2g+rerank"``).
    """
    q_ids = (np.array([r.pid for r in query]), np.array([r.camid for r in query]))
    g_ids = (np.array([r.pid for r in gallery]), np.array([r.camid for r in gallery]))
    directions = {"a2b" if both_directions else "q2g": (q_feats, g_feats, q_ids, g_ids)}
    if both_directions:
        directions["b2a"] = (g_feats, q_feats, g_ids, q_ids)
    out: dict[str, dict[str, Any]] = {}
    for suffix, rr in [("", False)] + ([("+rerank", True)] if rerank else []):
        for name, (qf, gf, (qp, qc), (gp, gc)) in directions.items():
            res = evaluate_features(qf, gf, qp, gp, qc, gc, rerank=rr, multi_query=multi_query)
            out[name + suffix] = {k: float(res[k]) for k in METRICS} | {"num_valid_queries": int(res["num_valid_queries"])}
        if both_directions:
            a, b = out["a2b" + suffix], out["b2a" + suffix]
            out["mean" + suffix] = {k: (a[k] + b[k]) / 2 for k in METRICS} | {
                "num_valid_queries": a["num_valid_queries"] + b["num_valid_queries"]
            }
    return out


def score_splits(
    featurize: Featurize,
    splits: DatasetSplits,
    both_directions: bool = False,
    rerank: bool = False,
    multi_query: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Featurize ``splits.query`` and ``splits.gallery`` and score them (see :func:`score_features`).

    Records ``featurize`` leaves out (unreadable images, logged by it) are left out of the ranking;
    ``result["skipped_images"]["count"]`` counts them. A split with nothing readable raises ``ValueError``.
    """
    kept: dict[str, tuple[np.ndarray, list[Record]]] = {}
    for split, records in (("query", splits.query), ("gallery", splits.gallery)):
        feats, indices = featurize(records, split)
        if len(indices) == 0:
            raise ValueError(f"none of the {len(records)} {split} images could be read (see the warnings above)")
        kept[split] = feats, [records[i] for i in indices]
    (q_feats, query), (g_feats, gallery) = kept["query"], kept["gallery"]
    out = score_features(q_feats, g_feats, query, gallery, both_directions, rerank, multi_query)
    out["skipped_images"] = {"count": len(splits.query) - len(query) + len(splits.gallery) - len(gallery)}
    return out


def headline(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The entry a single number should come from: the two-direction mean if present, else query->gallery."""
    return results["mean"] if "mean" in results else results["q2g"]
