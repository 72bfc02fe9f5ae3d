"""Gallery search over embeddings: exact L2 top-k with faiss when installed, numpy otherwise.

Saved as ``NAME.npz`` (embeddings, ids) plus ``NAME.json`` (metadata, dimension): no pickle anywhere.
A ``han-extract`` ``.npz`` loads directly (its ``sources`` become the ids).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluate.distance import pairwise_distance
from .writers import atomic_write

RERANK_MAX = 20_000  # re-ranking builds (Q+G)^2 distance matrices


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class SearchResult:
    """Top-k per query: Euclidean (L2) ``distances`` (or re-ranked distances), gallery ``indices`` and ``ids``."""

    distances: np.ndarray  # (Q, k) float32, ascending per row
    indices: np.ndarray  # (Q, k) int64
    ids: np.ndarray  # (Q, k) str


class Gallery:
    """Embeddings with ids and optional per-item metadata, searchable by L2 distance.

    ``engine="auto"`` uses faiss (``IndexFlatL2``, exact) when it is installed, else numpy; both give the
    same neighbours up to float rounding.
    """

    def __init__(self, dim: int | None = None, engine: str = "auto") -> None:
        if engine not in ("auto", "faiss", "numpy"):
            raise ValueError(f"engine must be 'auto', 'faiss' or 'numpy', got {engine!r}")
        if engine == "faiss" and not faiss_available():
            raise RuntimeError("engine='faiss' asked for but faiss is not installed (pip install faiss-cpu)")
        self.engine = "faiss" if engine == "faiss" or (engine == "auto" and faiss_available()) else "numpy"
        self.dim = dim
        self._emb = np.zeros((0, dim or 0), dtype=np.float32)
        self.ids = np.zeros(0, dtype=str)
        self.metadata: list[dict[str, Any]] = []
        self._index: Any = None

    def __len__(self) -> int:
        return len(self._emb)

    @property
    def embeddings(self) -> np.ndarray:
        return self._emb

    def _check(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise ValueError(f"{what} must be (N, D), got shape {x.shape}")
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"{what} have dimension {x.shape[1]}, the gallery {self.dim}")
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise ValueError(f"{what} rows {np.flatnonzero(bad)[:10].tolist()} contain NaN or inf")
        return np.ascontiguousarray(x)

    def add(self, embeddings: np.ndarray, ids: Any = None, metadata: list[dict[str, Any]] | None = None) -> np.ndarray:
        """Append (N, D) embeddings with ids (default: their gallery index) and metadata; returns their indices."""
        x = self._check(embeddings, "embeddings")
        self.dim = x.shape[1]
        n0, n = len(self), len(x)
        ids_a = np.asarray([str(i) for i in range(n0, n0 + n)] if ids is None else [str(i) for i in ids], dtype=str)
        if len(ids_a) != n:
            raise ValueError(f"{len(ids_a)} ids for {n} embeddings")
        if metadata is not None and len(metadata) != n:
            raise ValueError(f"{len(metadata)} metadata entries for {n} embeddings")
        self._emb = np.concatenate([self._emb.reshape(-1, self.dim), x])
        self.ids = np.concatenate([self.ids, ids_a])
        self.metadata.extend(metadata if metadata is not None else [{} for _ in range(n)])
        if self._index is not None:
            self._index.add(x)
        return np.arange(n0, n0 + n)

    def _faiss_index(self) -> Any:
        if self._index is None:
            import faiss

            self._index = faiss.IndexFlatL2(self.dim)
            self._index.add(self._emb)
        return self._index

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        rerank: bool = False,
        k1: int = 20,
        k2: int = 6,
        lambda_value: float = 0.3,
        chunk: int = 1024,
    ) -> SearchResult:
        """The ``k`` nearest gallery items of each query, closest first.

        ``rerank=True`` applies k-reciprocal re-ranking (Zhong et al. 2017, ``han_deploy.evaluate.re_ranking``)
        on squared L2 distances over the whole gallery; its distances are the re-ranked ones.
        """
        if len(self) == 0:
            raise ValueError("the gallery is empty")
        q = self._check(queries, "queries")
        k = max(1, min(int(k), len(self)))
        if rerank:
            return self._rerank(q, k, k1, k2, lambda_value)
        if self.engine == "faiss":
            d2, idx = self._faiss_index().search(q, k)
        else:
            d2 = np.empty((len(q), k), dtype=np.float32)
            idx = np.empty((len(q), k), dtype=np.int64)
            for s in range(0, len(q), chunk):
                dist = pairwise_distance(q[s : s + chunk], self._emb, squared=True)
                d2[s : s + chunk], idx[s : s + chunk] = _topk(dist, k)
        dist = np.sqrt(np.maximum(d2, 0)).astype(np.float32)
        return SearchResult(dist, idx.astype(np.int64), self.ids[idx])

    def _rerank(self, q: np.ndarray, k: int, k1: int, k2: int, lambda_value: float) -> SearchResult:
        from ..evaluate.rerank import re_ranking

        if len(self) + len(q) > RERANK_MAX:
            raise ValueError(f"re-ranking needs (queries + gallery)^2 distances; {len(q)} + {len(self)} > {RERANK_MAX}")
        dist = re_ranking(
            pairwise_distance(q, self._emb, squared=True),
            pairwise_distance(q, q, squared=True),
            pairwise_distance(self._emb, self._emb, squared=True),
            k1=k1,
            k2=k2,
            lambda_value=lambda_value,
        )
        d, idx = _topk(dist, k)
        return SearchResult(d.astype(np.float32), idx, self.ids[idx])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``PATH`` (.npz: embeddings, ids) and ``PATH`` with .json (metadata), each atomically."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        emb, ids = self._emb, self.ids
        atomic_write(path, lambda f: np.savez(f, embeddings=emb, ids=ids))
        side = json.dumps({"dim": self.dim, "count": len(self), "metadata": self.metadata}).encode()
        atomic_write(path.with_suffix(".json"), lambda f: f.write(side))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], engine: str = "auto") -> Gallery:
        """Read a saved gallery, or a ``han-extract`` ``.npz`` (``sources`` become ids, frames/boxes metadata)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"gallery not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError) as exc:
            raise ValueError(f"{path} is not a gallery .npz: {exc}") from exc
        if "embeddings" not in arrays:
            raise ValueError(f"{path} has no 'embeddings' array (has {', '.join(arrays)})")
        ids = arrays.get("ids", arrays.get("sources"))
        metadata = None
        side = path.with_suffix(".json")
        if side.is_file():
            metadata = json.loads(side.read_text()).get("metadata")
        elif "frames" in arrays and "boxes" in arrays:
            metadata = [
                {"frame": int(f), "box": [float(v) for v in b]} if f >= 0 else {}
                for f, b in zip(arrays["frames"], arrays["boxes"], strict=True)
            ]
        g = cls(engine=engine)
        if len(arrays["embeddings"]):
            g.add(arrays["embeddings"], ids, metadata)
        else:
            g.dim = arrays["embeddings"].shape[1] if arrays["embeddings"].ndim == 2 else None
        return g


def _topk(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Smallest ``k`` per row, sorted (ties broken by index so results are deterministic)."""
    if k < dist.shape[1]:
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(dist.shape[1]), dist.shape).copy()
    vals = np.take_along_axis(dist, part, axis=1)
    order = np.lexsort((part, vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(dist, idx, axis=1), idx.astype(np.int64)
