"""``han-eval``: R1, R5, R10, mAP and mINP of a checkpoint on a dataset's query/gallery, with and without re-ranking.

This module imports torch only inside :func:`main` (and only for model-based features, through
:mod:`.torch_eval`), so ``han_deploy.evaluate`` stays importable without torch. ``--untrained`` and
``--color-histogram`` score the two reference points a trained model is compared with.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.records import Record
from .baseline import NUM_STRIPES, STRIPE_DIM, color_histogram_feature
from .protocol import METRICS, score_splits

# datasets whose protocol evaluates both camera directions (query <-> gallery) and their mean
TWO_DIRECTION_DATASETS = ("cuhk03_pair",)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="han-eval",
        description="Evaluate person re-id features on a dataset's query/gallery with the standard protocol "
        "(same-id same-camera gallery entries removed, junk ignored; L2 distance). For cuhk03_pair both camera "
        "directions (a2b, b2a) and their mean are reported.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="han-train checkpoint (.safetensors) to evaluate")
    src.add_argument("--untrained", metavar="VARIANT", choices=["small", "medium", "large"],
                     help="reference: a randomly initialised HAN of this variant (seeded by --seed)")  # fmt: skip
    src.add_argument("--color-histogram", action="store_true", help="reference: the colour-histogram baseline (no model)")
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--dataset", required=True, help="dataset reader name, e.g. market1501, cuhk03_pair, market_layout")
    p.add_argument("--rerank", action="store_true", help="also report k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")
    p.add_argument("--multi-query", choices=["max", "mean"], default=None,
                   help="pool each query with its same-id same-camera queries (Market multi-query)")  # fmt: skip
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to this file")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --untrained model")
    return p


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per protocol entry (q2g, a2b, b2a, mean, and their +rerank twins), metrics in percent."""
    lines = [f"{'protocol':<14}" + "".join(f"{c:>8}" for c in METRICS) + f"{'queries':>9}", "-" * 63]
    for name, row in results.items():
        if name == "skipped_images":
            continue
        cells = "".join(f"{100 * row[c]:8.1f}" for c in METRICS)
        lines.append(f"{name:<14}{cells}{row['num_valid_queries']:9d}")
    return "\n".join(lines)


def _histogram_featurize(records: Sequence[Record], split: str) -> tuple[np.ndarray, np.ndarray]:
    """The colour-histogram baseline's features of the readable records, and their indices (unreadable ones logged)."""
    rows, kept = [], []
    for i, r in enumerate(records):
        try:
            rows.append(color_histogram_feature(r.path))
            kept.append(i)
        except ValueError as exc:
            logging.getLogger(__name__).warning("skipping %s image %s: %s", split, r.path, exc)
    feats = np.stack(rows) if rows else np.zeros((0, NUM_STRIPES * STRIPE_DIM), np.float32)
    return feats, np.asarray(kept, dtype=np.int64)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ..data import build_dataset

    both = args.dataset.lower() in TWO_DIRECTION_DATASETS
    start = time.perf_counter()
    try:
        splits = build_dataset(args.dataset, args.data)
        if not splits.query or not splits.gallery:
            raise ValueError(f"{args.dataset} at {args.data} has an empty query or gallery split: nothing to evaluate")
        info: dict[str, Any] = {"dataset": args.dataset, "data": str(args.data), "rerank": args.rerank}
        info |= {"multi_query": args.multi_query, "num_query": len(splits.query), "num_gallery": len(splits.gallery)}
        if args.color_histogram:
            info["features"] = "color_histogram"
            results = score_splits(_histogram_featurize, splits, both, args.rerank, args.multi_query)
        else:
            import torch

            from ..model import create_model, load_checkpoint
            from .torch_eval import evaluate_model

            if args.threads:
                torch.set_num_threads(args.threads)
            if args.checkpoint:
                model, meta = load_checkpoint(args.checkpoint)
                info |= {"features": "checkpoint", "checkpoint": str(args.checkpoint), "checkpoint_meta": meta}
            else:
                torch.manual_seed(args.seed)
                model = create_model(args.untrained)
                info |= {"features": "untrained", "variant": args.untrained, "seed": args.seed}
            info["model"] = model.cfg.to_dict()
            results = evaluate_model(model, splits, both, args.rerank, args.multi_query, args.batch_size, args.device,
                                     args.workers, progress=True)  # fmt: skip
    except (FileNotFoundError, ValueError) as exc:
        print(f"han-eval: error: {exc}", file=sys.stderr)
        return 2
    info["seconds"] = time.perf_counter() - start
    print(format_table(results))
    if results["skipped_images"]["count"]:
        print(f"({results['skipped_images']['count']} unreadable images left out; see the warnings)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(info | {"results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
