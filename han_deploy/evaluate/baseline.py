"""Colour-histogram baseline: HSV histograms over horizontal stripes, the classic hand-crafted re-id feature.

Torch-free (numpy + OpenCV). It is the floor a learned model must clear by a wide margin: it sees only
colour layout, not shape, patterns or accessories, and it suffers from camera colour casts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from ..contract.decode import read_image
from ..data.records import Record

BASELINE_SIZE = (128, 48)  # (height, width) the crops are resized to before the histograms
NUM_STRIPES = 6
HUE_BINS, SAT_BINS, VAL_BINS = 8, 2, 2  # chromatic pixels: hue x saturation x value
GREY_BINS = 4  # achromatic pixels: value only (their hue is noise that any colour cast flips)
MIN_SATURATION, MIN_VALUE = 60, 40  # OpenCV 8-bit HSV: below either, a pixel counts as achromatic
STRIPE_DIM = HUE_BINS * SAT_BINS * VAL_BINS + GREY_BINS


def color_histogram_feature(image: np.ndarray | str | os.PathLike[str], stripes: int = NUM_STRIPES) -> np.ndarray:
    """One crop (BGR uint8 array or image path) -> L2-normalised float32 vector of stripes x STRIPE_DIM.

    Each horizontal stripe gets a joint hue x saturation x value histogram of its chromatic pixels
    plus a value histogram of its achromatic ones (black, grey, white clothes); the square root of
    the frequencies (Hellinger mapping) tempers the dominant colour before the final L2 normalisation.
    A path is decoded by :func:`~han_deploy.contract.decode.read_image` (a ``DecodeError`` names a bad file).
    """
    img = image if isinstance(image, np.ndarray) else read_image(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) == 0:
        raise ValueError(f"expected a non-empty BGR uint8 image, got shape {img.shape} dtype {img.dtype}")
    h, w = BASELINE_SIZE
    hsv = cv2.cvtColor(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2HSV)
    hue, sat, val = (hsv[..., i].astype(np.int32) for i in range(3))
    chromatic = (sat >= MIN_SATURATION) & (val >= MIN_VALUE)
    s_bin = np.minimum((sat - MIN_SATURATION) * SAT_BINS // (256 - MIN_SATURATION), SAT_BINS - 1)
    v_bin = np.minimum((val - MIN_VALUE) * VAL_BINS // (256 - MIN_VALUE), VAL_BINS - 1)
    colour_bin = ((hue * HUE_BINS // 180) * SAT_BINS + s_bin) * VAL_BINS + v_bin
    grey_bin = HUE_BINS * SAT_BINS * VAL_BINS + val * GREY_BINS // 256
    bins = np.where(chromatic, colour_bin, grey_bin)
    stripe = np.arange(h)[:, None] * stripes // h  # stripe index of every row
    hist = np.zeros((stripes, STRIPE_DIM), np.float64)
    np.add.at(hist, (np.broadcast_to(stripe, bins.shape), bins), 1.0)
    feat = np.sqrt(hist / hist.sum(axis=1, keepdims=True)).ravel().astype(np.float32)
    return feat / max(float(np.linalg.norm(feat)), 1e-12)


def color_histogram_features(images: Sequence[np.ndarray | str | os.PathLike[str]], stripes: int = NUM_STRIPES) -> np.ndarray:
    """Stack of :func:`color_histogram_feature` for many crops: (N, stripes * STRIPE_DIM) float32."""
    if len(images) == 0:
        return np.zeros((0, stripes * STRIPE_DIM), np.float32)
    return np.stack([color_histogram_feature(im, stripes) for im in images])


def evaluate_baseline(query: Sequence[Record], gallery: Sequence[Record]) -> dict:
    """R1/R5/R10/mAP/mINP of the colour-histogram baseline on a query and gallery (standard protocol)."""
    from .features import evaluate_features

    q = color_histogram_features([r.path for r in query])
    g = color_histogram_features([r.path for r in gallery])
    ids = [np.array([getattr(r, a) for r in recs]) for recs in (query, gallery) for a in ("pid", "camid")]
    return evaluate_features(q, g, ids[0], ids[2], ids[1], ids[3])


def main(argv: list[str] | None = None) -> int:
    """``python -m han_deploy.evaluate.baseline --data ROOT --dataset NAME``: print the baseline's metrics."""
    import argparse
    import json

    from ..data import build_dataset

    p = argparse.ArgumentParser(prog="python -m han_deploy.evaluate.baseline", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--dataset", default="market_layout", help="reader name (han_deploy.data.DATASETS), default market_layout")
    p.add_argument(
        "--reader-arg", action="append", default=[], metavar="KEY=VALUE", help="extra reader argument, e.g. direction=b2a"
    )
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    args = p.parse_args(argv)
    splits = build_dataset(args.dataset, args.data, **dict(kv.split("=", 1) for kv in args.reader_arg))
    res = evaluate_baseline(splits.query, splits.gallery)
    print(f"colour-histogram baseline on {splits.name}: {len(splits.query)} queries, {len(splits.gallery)} gallery images")
    print("  ".join(f"{k} {100 * res[k]:.1f}" for k in ("R1", "R5", "R10", "mAP", "mINP")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: v for k, v in res.items() if k != "cmc"} | {"dataset": splits.name, "data": args.data}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
