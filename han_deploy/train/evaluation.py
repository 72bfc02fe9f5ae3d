"""Evaluate a torch HAN on a dataset's query/gallery, scored by ``han_deploy.evaluate.protocol``.

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
from ..evaluate.protocol import score_features
from ..model import HAN
from .dataset import ReidDataset, collate_skip_bad

log = logging.getLogger(__name__)


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
