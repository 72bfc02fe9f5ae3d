"""L2 distances between feature matrices (numpy only): the metric HAN embeddings are matched with."""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (all-zero rows stay zero)."""
    x = np.asarray(x)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)


def pairwise_distance(a: np.ndarray, b: np.ndarray, squared: bool = False) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` (M x D) and ``b`` (N x D), M x N.

    ``squared=True`` skips the square root; it ranks identically and is what re-ranking expects.
    Computed as |a|^2 + |b|^2 - 2 a.b (one matrix product), clipped at 0 against rounding; float32
    inputs stay float32, anything else is computed in float64.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"pairwise_distance expects 2-D feature matrices, got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    dtype = np.float32 if a.dtype == np.float32 and b.dtype == np.float32 else np.float64
    a = a.astype(dtype, copy=False)
    b = b.astype(dtype, copy=False)
    dist = a @ b.T
    dist *= -2.0
    dist += np.einsum("ij,ij->i", a, a)[:, None]
    dist += np.einsum("ij,ij->i", b, b)[None, :]
    np.maximum(dist, 0.0, out=dist)
    if not squared:
        np.sqrt(dist, out=dist)
    return dist
