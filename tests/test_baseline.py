"""Colour-histogram baseline: feature shape and normalisation, inputs, and that it carries identity signal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from han_deploy.data.synth import ImageJob, plan_dataset, render_crop
from han_deploy.evaluate.baseline import NUM_STRIPES, STRIPE_DIM, color_histogram_feature, color_histogram_features


def _crops(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(60, 200)), int(rng.integers(30, 90)), 3), dtype=np.uint8) for _ in range(n)]


def test_shape_and_normalisation() -> None:
    feats = color_histogram_features(_crops(4))
    assert feats.shape == (4, NUM_STRIPES * STRIPE_DIM) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    assert (feats >= 0).all()
    assert color_histogram_features([]).shape == (0, NUM_STRIPES * STRIPE_DIM)


def test_colour_and_layout_change_the_feature() -> None:
    red_top = np.zeros((128, 48, 3), np.uint8)
    red_top[:64] = (0, 0, 200)
    red_top[64:] = (200, 0, 0)
    blue_top = red_top[::-1].copy()
    a, b = color_histogram_feature(red_top), color_histogram_feature(blue_top)
    assert float(a @ b) < 0.5  # same colours, swapped stripes: a different layout
    assert float(a @ color_histogram_feature(cv2.resize(red_top, (40, 100)))) > 0.99  # size does not matter


def test_paths_and_arrays_agree(tmp_path: Path) -> None:
    img = _crops(1, seed=4)[0]
    path = tmp_path / "crop.png"  # lossless, so the decoded pixels are the array's
    cv2.imwrite(str(path), img)
    np.testing.assert_array_equal(color_histogram_features([path, str(path)]), color_histogram_features([img, img]))


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ValueError, match="nope.jpg"):
        color_histogram_features([missing])
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="corrupt.jpg"):
        color_histogram_feature(corrupt)
    with pytest.raises(ValueError, match="BGR uint8"):
        color_histogram_feature(np.zeros((10, 10), np.uint8))


def test_same_identity_ranks_above_different_identity_on_synthetic_crops() -> None:
    """On average over pairs across cameras, a person's crops are closer to each other than to other people's."""
    plan = plan_dataset(10, 3, seed=1, images_per_camera=2, distractors=0, junk=0)
    jobs: list[ImageJob] = plan.jobs
    feats = color_histogram_features([render_crop(1, j)[0] for j in jobs])
    pids = np.array([j.pid for j in jobs])
    cams = np.array([j.cam for j in jobs])
    sim = feats @ feats.T
    cross = cams[:, None] != cams[None, :]
    same = sim[cross & (pids[:, None] == pids[None, :])]
    diff = sim[cross & (pids[:, None] != pids[None, :])]
    # probability that a random same-id pair is more similar than a random different-id pair (AUC)
    auc = float((same[:, None] > diff[None, :]).mean())
    assert auc > 0.6, auc


def test_importable_without_torch() -> None:
    code = "import sys; sys.modules['torch'] = None; import han_deploy.evaluate.baseline as b; print(b.STRIPE_DIM)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(STRIPE_DIM)
