"""Time and peak memory of ``re_ranking`` against a straightforward dense implementation of the reference.

Usage: ``python benchmarks/evaluate_rerank.py [--sizes 5000,20000] [--dense-max 20000] [--json OUT]``.
Each size is a CUHK03-like set of N items (21% queries as in CUHK03's 1,400 / 6,732, about 10
images per id, 2 cameras; clustered random 128-D features), squared L2 distances as float32.
Every (implementation, size) runs in a child process of its own: the time is one call's wall
time, the memory the growth of the child's peak resident set during the call (the inputs,
3 x float32 blocks of N^2 entries in all, are built before and not counted). The dense run at
20,000 items needs about 10 GB; ``--dense-max`` skips it above a size. Both results are scored
with ``evaluate_rank`` and compared (mAP and the largest distance difference).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from han_deploy.evaluate import evaluate_rank, l2_normalize, pairwise_distance, re_ranking

QUERY_FRACTION = 1400 / 6732
IMAGES_PER_ID = 10


def dense_re_ranking(
    q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int = 20, k2: int = 6, lam: float = 0.3
) -> np.ndarray:
    """The reference computation over dense (Q+G)^2 arrays, plainly from facts (a)-(h) of issue 14."""
    num_q = len(q_q)
    dist = np.square(np.block([[q_q, q_g], [q_g.T, g_g]])).astype(np.float32, copy=False)  # (a)
    dist = (dist / dist.max(axis=0)).T  # (b)
    n = len(dist)
    rank = np.argsort(dist, axis=1)  # (c)

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = rank[i, : k + 1]
        return forward[(rank[forward, : k + 1] == i).any(axis=1)]

    v = np.zeros_like(dist)
    for i in range(n):
        own = reciprocal(i, k1)
        parts = [own]
        for c in own:
            cand = reciprocal(c, round(k1 / 2))
            if 3 * np.intersect1d(cand, own).size > 2 * cand.size:  # (d)
                parts.append(cand)
        cols = np.unique(np.concatenate(parts))
        weights = np.exp(-dist[i, cols])
        v[i, cols] = weights / weights.sum()  # (e)
    if k2 != 1:  # (f)
        expanded = np.empty_like(v)
        for i in range(n):
            expanded[i] = v[rank[i, :k2]].mean(axis=0)
        v = expanded
    rows, cols = np.nonzero(v)
    order = np.argsort(cols, kind="stable")
    inverted = np.split(rows[order], np.cumsum(np.bincount(cols, minlength=n))[:-1])
    jaccard = np.empty((num_q, n - num_q), dtype=np.float32)
    for q in range(num_q):
        m = np.zeros(n, dtype=np.float32)
        for j in np.flatnonzero(v[q]):
            m[inverted[j]] += np.minimum(v[q, j], v[inverted[j], j])
        jaccard[q] = 1 - m[num_q:] / (2 - m[num_q:])  # (g)
    return (1 - lam) * jaccard + lam * dist[:num_q, num_q:]  # (h)


def _labels(size: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Query count, then pids, camera ids and clustered features of the N items (deterministic)."""
    rng = np.random.default_rng(size)
    num_ids = max(2, size // IMAGES_PER_ID)
    pids = rng.integers(1, num_ids + 1, size)
    centres = l2_normalize(rng.normal(size=(num_ids, 128))).astype(np.float32)
    feats = (centres[pids - 1] + 0.12 * rng.normal(size=(size, 128))).astype(np.float32)
    return round(QUERY_FRACTION * size), pids, rng.integers(0, 2, size), feats


def _distances(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Squared L2 distances as float32, built in row chunks so no N^2 temporary raises the peak."""
    out = np.empty((len(a), len(b)), dtype=np.float32)
    for start in range(0, len(a), chunk):
        out[start : start + chunk] = pairwise_distance(a[start : start + chunk], b, squared=True)
    return out


def _worker(impl: str, size: int, out_path: str) -> None:
    """Child process: build the inputs, time one call, print time and peak-memory growth as JSON."""
    num_q, _, _, feats = _labels(size)
    q, g = feats[:num_q], feats[num_q:]
    q_g, q_q, g_g = _distances(q, g), _distances(q, q), _distances(g, g)
    fn = re_ranking if impl == "sparse" else dense_re_ranking
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = fn(q_g, q_q, g_g)
    seconds = time.perf_counter() - start
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    np.save(out_path, result)
    print(json.dumps({"seconds": seconds, "peak_growth_mb": grown / 1024, "inputs_mb": 4 * size * size / 2**20}))


def _run(impl: str, size: int, out_path: Path) -> dict:
    """Run one worker in a fresh process and return its JSON line."""
    cmd = [sys.executable, __file__, "--worker", impl, str(size), str(out_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} at {size} items failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _compare(size: int, paths: dict[str, Path]) -> dict:
    """mAP of each result and, with both present, their mAP and largest distance differences."""
    num_q, pids, cams, _ = _labels(size)
    results = {impl: np.load(path, mmap_mode="r") for impl, path in paths.items()}
    maps = {impl: evaluate_rank(r, pids[:num_q], pids[num_q:], cams[:num_q], cams[num_q:]).mAP for impl, r in results.items()}
    out = {f"mAP {impl}": value for impl, value in maps.items()}
    if len(results) == 2:
        out["mAP difference"] = abs(maps["sparse"] - maps["dense"])
        out["max distance difference"] = float(np.abs(results["sparse"] - results["dense"]).max())
    return out


def main() -> None:
    """Parse the arguments, run every size, print one line per size and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000", help="comma-separated item counts N = Q + G")
    parser.add_argument("--dense-max", type=int, default=20000, help="skip the dense implementation above this N")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "SIZE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker[0], int(args.worker[1]), args.worker[2])
        return
    report = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "numpy": np.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            impls = ["sparse", "dense"] if size <= args.dense_max else ["sparse"]
            paths = {impl: Path(tmp) / f"{impl}-{size}.npy" for impl in impls}
            row = {impl: _run(impl, size, path) for impl, path in paths.items()}
            row.update(_compare(size, paths))
            report[str(size)] = row
            print(size, json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
