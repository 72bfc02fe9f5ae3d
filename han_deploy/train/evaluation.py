"""Evaluate a torch HAN on a dataset's query/gallery with ``han_deploy.evaluate.evaluate_features``.

Used by the trainer (``--eval-every``) and by ``han-eval``. Images that cannot be read are logged with
their path and left out of the ranking (their count is reported), so one bad file never sinks an evaluation.
For a two-camera protocol (``both_directions``), query and gallery are swapped for the second direction
and the mean of the two is reported too (the cuhk03-pair1 README's protocol).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.records import DatasetSplits, Record
from ..evaluate import evaluate_features
from ..model import HAN
from .dataset import ReidDataset, collate_skip_bad

log = logging.getLogger(__name__)

METRICS = ("R1", "R5", "R10", "mAP", "mINP")


@torch.no_grad()
def embed_records(
    model: HAN,
    records: Sequence[Record],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    workers: int = 0,
    split: str = "test",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(features (n, D) float32, kept)``: embeddings of the readable records and their indices into ``records``.

    The model is moved to ``device`` and run in eval mode (its previous mode is restored).
    """
    dataset = ReidDataset(records, model.cfg.preprocess, split=split)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_skip_bad)
    was_training = model.training
    model.to(device).eval()
    feats: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    try:
        for batch in tqdm(loader, desc=f"embed {split}", unit="batch", disable=not progress, leave=False):
            if len(batch.pids):
                feats.append(model(batch.images.to(device)).float().cpu().numpy())
                kept.append(batch.indices.numpy())
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError(f"none of the {len(records)} {split} images could be read (see the warnings above)")
    return np.concatenate(feats), np.concatenate(kept)


def score_features(
    q_feats: np.ndarray,
    g_feats: np.ndarray,
    query: Sequence[Record],
    gallery: Sequence[Record],
    both_directions: bool = False,
    rerank: bool = False,
    multi_query: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics per protocol entry for features aligned with ``query`` / ``gallery`` records (numpy only).

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


def evaluate_model(
    model: HAN,
    splits: DatasetSplits,
    both_directions: bool = False,
    rerank: bool = False,
    multi_query: str | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    workers: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Embed ``splits.query`` and ``splits.gallery`` with ``model`` and score them (see :func:`score_features`).

    ``result["skipped_images"]["count"]`` counts the unreadable files left out of the ranking.
    """
    q_feats, q_kept = embed_records(model, splits.query, batch_size, device, workers, "query", progress)
    g_feats, g_kept = embed_records(model, splits.gallery, batch_size, device, workers, "gallery", progress)
    query = [splits.query[i] for i in q_kept]
    gallery = [splits.gallery[i] for i in g_kept]
    out = score_features(q_feats, g_feats, query, gallery, both_directions, rerank, multi_query)
    out["skipped_images"] = {"count": len(splits.query) - len(query) + len(splits.gallery) - len(gallery)}
    return out


def headline(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The entry a single number should come from: the two-direction mean if present, else query->gallery."""
    return results["mean"] if "mean" in results else results["q2g"]
