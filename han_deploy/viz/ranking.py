"""Ranked-result pictures: a query and its top-k gallery matches, framed green (same identity) or red (wrong).

The ranking follows the evaluation protocol (docs/datasets.md): L2 distance on the embeddings; for each
query, gallery entries with the same identity *and* the same camera are removed, and junk (pid -1)
is removed from every ranking; distractors (pid 0) stay as wrong matches. Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..contract.decode import DecodeError, read_image
from ..data.records import Record
from ..evaluate import pairwise_distance
from . import draw

JUNK_PID = -1
FRAME = 4  # border thickness of each tile, pixels


@dataclass(frozen=True)
class RankedList:
    """The top of one query's ranking after the protocol's exclusions."""

    query: int  # index into the query list
    gallery: np.ndarray  # indices into the gallery list, best first
    distances: np.ndarray  # L2 distances of those entries
    matches: np.ndarray  # bool: same identity as the query
    num_relevant: int  # correct matches in the whole (filtered) gallery


def rank_gallery(
    distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray, top: int = 10
) -> list[RankedList]:
    """Per query, the ``top`` closest gallery entries that the protocol keeps (see the module docstring)."""
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    if distmat.shape != (len(q_pids), len(g_pids)):
        raise ValueError(f"distance matrix shape {distmat.shape} does not match {len(q_pids)} queries x {len(g_pids)} gallery")
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    out = []
    for q in range(len(q_pids)):
        keep = (g_pids != JUNK_PID) & ~((g_pids == q_pids[q]) & (g_camids == q_camids[q]))
        idx = np.flatnonzero(keep)
        order = idx[np.argsort(distmat[q, idx], kind="stable")][:top]
        out.append(
            RankedList(
                query=q,
                gallery=order,
                distances=distmat[q, order],
                matches=g_pids[order] == q_pids[q],
                num_relevant=int(np.count_nonzero(g_pids[idx] == q_pids[q])),
            )
        )
    return out


def pick_queries(ranked: Sequence[RankedList], num: int, seed: int = 0) -> list[RankedList]:
    """A reproducible random sample of ``num`` queries that have at least one correct match, in query order."""
    valid = [r for r in ranked if r.num_relevant > 0]
    if num >= len(valid):
        return list(valid)
    chosen = np.random.default_rng(seed).choice(len(valid), size=num, replace=False)
    return [valid[i] for i in sorted(chosen)]


def _tile(path: Path, size: tuple[int, int], scale: int) -> np.ndarray:
    """A person image resized to the display size; an unreadable file becomes a grey tile saying so."""
    h, w = size[0] * scale, size[1] * scale
    try:
        return cv2.resize(read_image(path), (w, h), interpolation=cv2.INTER_LINEAR)
    except DecodeError:
        tile = np.full((h, w, 3), 128, np.uint8)
        draw.put_text(tile, "unreadable", (4, h // 2), draw.WHITE)
        return tile


def ranked_list_figure(
    query: Record,
    gallery: Sequence[Record],
    ranked: RankedList,
    size: tuple[int, int] = (128, 64),
    scale: int = 2,
    title: str = "",
) -> np.ndarray:
    """One row: the query (black frame) then its ranked gallery images framed green/red, each captioned."""
    tiles = [draw.caption(draw.border(_tile(query.path, size, scale), draw.BLACK, FRAME), f"query id{query.pid}")]
    for rank, (g, dist, ok) in enumerate(zip(ranked.gallery, ranked.distances, ranked.matches, strict=True), 1):
        rec = gallery[int(g)]
        tile = draw.border(_tile(rec.path, size, scale), draw.GREEN if ok else draw.RED, FRAME)
        tiles.append(draw.caption(tile, f"{rank}: {dist:.2f} id{rec.pid}", draw.GREEN if ok else draw.RED))
    hits = int(np.count_nonzero(ranked.matches))
    line = f"{query.path.name}: {hits} correct in top-{len(ranked.gallery)} ({ranked.num_relevant} in the gallery)"
    return draw.caption(
        draw.hstack(tiles[:1] + [np.full((1, 3 * draw.GAP, 3), 255, np.uint8)] + tiles[1:]), f"{title}  {line}".strip()
    )


def figure_shape(top: int, size: tuple[int, int] = (128, 64), scale: int = 2) -> tuple[int, int, int]:
    """(height, width, 3) of :func:`ranked_list_figure` with ``top`` gallery tiles of display ``size`` (H, W)."""
    th, tw = size[0] * scale + 2 * FRAME, size[1] * scale + 2 * FRAME
    return 2 * draw.CAPTION_H + th, (top + 1) * tw + 3 * draw.GAP + (top + 1) * draw.GAP, 3


def render_rankings(
    query: Sequence[Record],
    gallery: Sequence[Record],
    query_features: np.ndarray,
    gallery_features: np.ndarray,
    out_dir: str | os.PathLike[str],
    top: int = 10,
    num_queries: int = 8,
    seed: int = 0,
    title: str = "",
) -> list[Path]:
    """From precomputed embeddings, write ``rank_<query index>_<name>.png`` for a random sample of queries."""
    if len(query) != len(query_features) or len(gallery) != len(gallery_features):
        raise ValueError(
            f"records and features differ in length: {len(query)} queries vs {len(query_features)} features, "
            f"{len(gallery)} gallery vs {len(gallery_features)} features"
        )
    dist = pairwise_distance(query_features, gallery_features)
    ranked = rank_gallery(
        dist,
        np.array([r.pid for r in query]),
        np.array([r.pid for r in gallery]),
        np.array([r.camid for r in query]),
        np.array([r.camid for r in gallery]),
        top=top,
    )
    out = Path(out_dir)
    written = []
    for r in pick_queries(ranked, num_queries, seed):
        rec = query[r.query]
        fig = ranked_list_figure(rec, gallery, r, title=title)
        written.append(draw.write_png(out / f"rank_{r.query:05d}_{rec.path.stem}.png", fig))
    return written
