"""Training losses: softmax cross-entropy per branch (the paper's objective) and batch-hard triplet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model import HANOutput


def batch_hard_triplet(features: Tensor, pids: Tensor, margin: float) -> Tensor:
    """Mean over anchors of ``relu(max_pos d(a, p) - min_neg d(a, n) + margin)``, Euclidean distance.

    Anchors without a positive (another image of the same pid) or without a negative are left out;
    a batch with no valid anchor returns 0 (with a gradient path, so ``backward`` still works).
    """
    sq = features.pow(2).sum(dim=1, keepdim=True)
    dist = (sq + sq.t() - 2.0 * features @ features.t()).clamp_min(1e-12).sqrt()
    same = pids[:, None] == pids[None, :]
    eye = torch.eye(len(pids), dtype=torch.bool, device=pids.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    if not bool(valid.any()):
        return features.sum() * 0.0
    hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).amax(dim=1)
    hardest_neg = dist.masked_fill(~neg_mask, float("inf")).amin(dim=1)
    return F.relu(hardest_pos - hardest_neg + margin)[valid].mean()


def han_losses(
    out: HANOutput, pids: Tensor, triplet_margin: float | None = None, label_smoothing: float = 0.0
) -> dict[str, Tensor]:
    """Per-term losses for one batch: ``ce_global``, ``ce_local`` and, with a margin, ``tri_global``, ``tri_local``.

    The training objective is their sum (paper §3.1: the two branches' cross-entropies, summed);
    ``label_smoothing`` > 0 spreads that much target mass evenly over all classes (the fast recipe).
    """
    if out.global_logits is None or out.local_logits is None:
        raise ValueError("the model has no classifiers: build it with num_classes = number of training identities")
    losses = {
        "ce_global": F.cross_entropy(out.global_logits.float(), pids, label_smoothing=label_smoothing),
        "ce_local": F.cross_entropy(out.local_logits.float(), pids, label_smoothing=label_smoothing),
    }
    if triplet_margin is not None:
        losses["tri_global"] = batch_hard_triplet(out.global_feat.float(), pids, triplet_margin)
        losses["tri_local"] = batch_hard_triplet(out.local_feat.float(), pids, triplet_margin)
    return losses
