"""Tiny synthetic re-id data shared by the training and han-eval tests (generated once per test session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from han_deploy.data import build_dataset
from han_deploy.data.records import DatasetSplits
from han_deploy.data.synth import generate_dataset

# the fast recipe's parts, scaled to the tiny data (half-epoch warm-up, 4-pixel pad)
FAST_RECIPE = {"schedule": "cosine", "warmup_epochs": 0.5, "label_smoothing": 0.1, "flip": True, "pad": 4, "random_erasing": 0.5}


def tiny_dataset(factory: pytest.TempPathFactory) -> Path:
    """A Market-layout synthetic dataset: 16 ids (8 train, 8 test), 3 cameras, 2-3 images per id and camera."""
    root = factory.getbasetemp() / "tiny_synth"
    if not (root / "meta.json").exists():
        generate_dataset(root, num_ids=16, num_cameras=3, seed=0, images_per_camera=(2, 3), workers=1)
    return root


def tiny_splits(factory: pytest.TempPathFactory) -> DatasetSplits:
    return build_dataset("market_layout", tiny_dataset(factory))
