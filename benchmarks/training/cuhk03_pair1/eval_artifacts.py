"""Evaluate exported models through the torch-free runtime on a dataset's test protocol (han-eval's numbers).

For each ONNX file: ``han_deploy.runtime.Extractor`` embeds the query and gallery images (the path users
run: decode, preprocess, ONNX Runtime), and ``han_deploy.evaluate.protocol.score_features`` scores them
with the standard protocol (both camera directions and their mean for cuhk03_pair), optionally re-ranked.
Usage: python benchmarks/training/cuhk03_pair1/eval_artifacts.py --data ROOT --dataset cuhk03_pair \
           MODEL.onnx [MODEL.int8.onnx ...] [--rerank] --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from han_deploy.data import build_dataset
from han_deploy.data.records import DatasetSplits
from han_deploy.evaluate.cli import TWO_DIRECTION_DATASETS
from han_deploy.evaluate.protocol import headline, score_features
from han_deploy.runtime import Extractor


def evaluate(model: Path, splits: DatasetSplits, both_directions: bool, rerank: bool, threads: int) -> dict:
    """Metrics of one artifact, with the seconds its extraction took."""
    start = time.perf_counter()
    with Extractor(model, batch_size=32, threads=threads) as extractor:
        q = extractor.embed([r.path for r in splits.query])
        g = extractor.embed([r.path for r in splits.gallery])
    seconds = time.perf_counter() - start
    results = score_features(q, g, splits.query, splits.gallery, both_directions, rerank)
    return {"model": str(model), "num_query": len(q), "num_gallery": len(g), "extract_seconds": seconds, "results": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path, help="ONNX files (han-export output)")
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--dataset", required=True, help="dataset reader name (cuhk03_pair scores both directions)")
    p.add_argument("--rerank", action="store_true", help="also report k-reciprocal re-ranking")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--json", type=Path, required=True, help="write all results here")
    args = p.parse_args()
    out = {"dataset": args.dataset, "features": "onnx runtime", "load_average": os.getloadavg(), "artifacts": []}
    splits = build_dataset(args.dataset, args.data)
    for model in args.models:
        res = evaluate(model, splits, args.dataset.lower() in TWO_DIRECTION_DATASETS, args.rerank, args.threads)
        head = headline(res["results"])
        print(f"{model.name:<24} R1 {100 * head['R1']:5.1f}  mAP {100 * head['mAP']:5.1f}  mINP {100 * head['mINP']:5.1f}")
        out["artifacts"].append(res)
    args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
