"""Embeddings of a torch model (han_deploy.model.embed) and their scoring with unreadable images left out."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from _train_data import tiny_splits

from han_deploy.contract.decode import DecodeError, read_image
from han_deploy.evaluate.protocol import score_splits
from han_deploy.evaluate.torch_eval import evaluate_model
from han_deploy.model import create_model, extract_embeddings
from han_deploy.model.embed import CropDataset, embed_crops


def test_extract_embeddings_from_paths_and_arrays(tmp_path_factory: pytest.TempPathFactory) -> None:
    splits = tiny_splits(tmp_path_factory)
    paths = [r.path for r in splits.query[:5]]
    torch.manual_seed(0)
    model = create_model("small").train()
    from_paths = extract_embeddings(model, paths, batch_size=2)
    from_arrays = extract_embeddings(model, [read_image(p) for p in paths], batch_size=5)
    assert model.training  # the mode is restored
    assert from_paths.shape == (5, 1024) and from_paths.dtype == np.float32
    np.testing.assert_allclose(from_paths, from_arrays, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(from_paths[:, :512], axis=1), 1.0, rtol=1e-5)
    assert extract_embeddings(model, []).shape == (0, 1024)
    with pytest.raises(DecodeError, match="nope.jpg"):
        extract_embeddings(model, [paths[0], Path("/nonexistent/nope.jpg")])
    with pytest.raises(ValueError, match="batch_size"):
        extract_embeddings(model, paths, batch_size=0)


def test_unreadable_crops_are_logged_and_left_out(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    splits = tiny_splits(tmp_path_factory)
    paths = [r.path for r in splits.gallery[:4]]
    paths.insert(1, Path("/nonexistent/gone.jpg"))
    torch.manual_seed(0)
    model = create_model("small").eval()
    with caplog.at_level(logging.WARNING):
        feats, kept = embed_crops(model, CropDataset(paths, model.cfg.preprocess, skip_unreadable=True), batch_size=2)
    assert kept.tolist() == [0, 2, 3, 4] and feats.shape == (4, 1024)
    assert "gone.jpg" in caplog.text
    np.testing.assert_allclose(feats, extract_embeddings(model, [paths[i] for i in kept]), rtol=1e-5, atol=1e-6)


def test_score_splits_counts_skips_and_refuses_an_unreadable_split(tmp_path_factory: pytest.TempPathFactory) -> None:
    splits = tiny_splits(tmp_path_factory)
    bad = dataclasses.replace(splits.gallery[0], path=Path("/nonexistent/gone.jpg"))
    with_bad = dataclasses.replace(splits, gallery=[bad, *splits.gallery])
    torch.manual_seed(0)
    model = create_model("small")
    clean, skipped = evaluate_model(model, splits), evaluate_model(model, with_bad)
    assert clean["skipped_images"] == {"count": 0} and skipped["skipped_images"] == {"count": 1}
    assert skipped["q2g"] == pytest.approx(clean["q2g"])

    def nothing(records: list, split: str) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((0, 8), np.float32), np.zeros(0, np.int64)

    with pytest.raises(ValueError, match="none of the .* query images could be read"):
        score_splits(nothing, splits)
