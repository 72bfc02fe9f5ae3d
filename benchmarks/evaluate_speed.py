"""Speed of the numpy evaluation code (``han_deploy.evaluate``) at benchmark scale, on random features.

Usage: ``python benchmarks/evaluate_speed.py [--repeats 3] [--json OUT]``. Reports the median wall
time of ``evaluate_rank`` (Market-1501 scale: 3,368 queries x 15,913 gallery, 751 ids, 6 cameras;
the standard and CUHK03 single-gallery-shot CMC) and of ``re_ranking`` (CUHK03 767/700 scale:
1,400 x 5,332), plus the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time

import numpy as np

from han_deploy.evaluate import evaluate_rank, l2_normalize, pairwise_distance, re_ranking


def _features(num: int, num_ids: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centres = l2_normalize(rng.normal(size=(num_ids, 128))).astype(np.float32)
    pids = rng.integers(1, num_ids + 1, num)
    feats = (centres[pids - 1] + 0.12 * rng.normal(size=(num, 128))).astype(np.float32)
    return feats, pids, rng.integers(0, 6, num)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (the median is reported)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    qf, qp, qc = _features(3368, 750, rng)
    gf, gp, gc = _features(15913, 750, rng)
    dist = pairwise_distance(qf, gf, squared=True)
    cf, cp, cc = _features(6732, 700, rng)
    q_g = pairwise_distance(cf[:1400], cf[1400:], squared=True)
    q_q = pairwise_distance(cf[:1400], cf[:1400], squared=True)
    g_g = pairwise_distance(cf[1400:], cf[1400:], squared=True)
    results = {
        "evaluate_rank 3368x15913 (s)": _median_time(lambda: evaluate_rank(dist, qp, gp, qc, gc), args.repeats),
        "evaluate_rank single-gallery-shot 3368x15913 (s)": _median_time(
            lambda: evaluate_rank(dist, qp, gp, qc, gc, single_gallery_shot=True), args.repeats
        ),
        "re_ranking 1400x5332 (s)": _median_time(lambda: re_ranking(q_g, q_q, g_g), args.repeats),
        "peak RSS (MB)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "numpy": np.__version__,
        "repeats": args.repeats,
    }
    for key, value in results.items():
        print(f"{key:<50} {value:.2f}" if isinstance(value, float) else f"{key:<50} {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
