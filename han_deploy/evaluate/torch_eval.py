"""A torch model scored by the protocol: han-eval's ``--checkpoint``/``--untrained`` path and the trainer's evaluation.

Imports torch (through :mod:`han_deploy.model.embed`), so ``han_deploy.evaluate`` does not import this module:
the package stays importable without torch. For a two-camera protocol (``both_directions``), query and gallery
are swapped for the second direction and the mean of the two is reported too (the cuhk03-pair1 README's protocol).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.records import DatasetSplits, Record
from ..model.embed import CropDataset, embed_crops
from .protocol import score_splits


def evaluate_model(
    model: nn.Module,
    splits: DatasetSplits,
    both_directions: bool = False,
    rerank: bool = False,
    multi_query: str | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    workers: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Embed ``splits.query`` and ``splits.gallery`` with ``model`` and score them (see :func:`score_splits`).

    Unreadable images are logged with their path and left out of the ranking; ``result["skipped_images"]["count"]``
    counts them, so one bad file never sinks an evaluation.
    """

    def featurize(records: Sequence[Record], split: str) -> tuple[np.ndarray, np.ndarray]:
        crops = CropDataset([r.path for r in records], model.cfg.preprocess, skip_unreadable=True, split=split)
        return embed_crops(model, crops, batch_size, device, workers, progress)

    return score_splits(featurize, splits, both_directions, rerank, multi_query)
