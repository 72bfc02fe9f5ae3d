"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li, CVPR 2017), written from the paper's description.

Steps, over the set P of all queries and gallery items together (other queries serve as context):

1. ``N(p, k)``: p and its k nearest other items;
   ``R(p, k)``: the k-reciprocal ones, ``{g in N(p, k) : p in N(g, k)}``.
2. ``R*(p, k1)``: ``R(p, k1)`` united with every ``R(q, k1/2)``, q in ``R(p, k1)``, that shares at
   least 2/3 of its members with ``R(p, k1)``.
3. ``V_p[g] = exp(-d(p, g))`` for g in ``R*(p, k1)``, 0 elsewhere (paper Eq. 10, unnormalised);
   local query expansion replaces ``V_p`` by the mean of ``V_g`` over ``N(p, k2)``.
4. Jaccard distance ``d_J(p, g) = 1 - sum_j min(V_p[j], V_g[j]) / sum_j max(V_p[j], V_g[j])``, and the
   result ``(1 - lambda) d_J + lambda d``.

Choices the paper leaves open: ``d`` is the given distance divided by its largest value over the
whole (Q+G) x (Q+G) matrix, so the exp weights and the lambda mix do not depend on the feature scale
and the matrix stays symmetric (re-ranking with queries and gallery swapped gives the transpose);
``N(p, k)`` holds p itself plus k others (so ``k2=0`` switches query expansion off); ``k1/2`` is
rounded; the diagonals of ``q_q_dist`` and ``g_g_dist`` are taken as 0.

Memory: one dense (Q+G)^2 float32 distance matrix (100 MB for 5,000 items); neighbour searches
run in row blocks, the V vectors are kept sparse (about k1 to a few k1 entries per item, times k2
after expansion) and the Jaccard step uses an inverted index over them.
"""

from __future__ import annotations

import numpy as np

_BLOCK = 512


def _nearest(dist: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k nearest columns of every row, nearest first (row blocks keep memory low)."""
    n = dist.shape[1]
    k = min(k, n)
    out = np.empty((dist.shape[0], k), dtype=np.int64)
    for start in range(0, dist.shape[0], _BLOCK):
        block = dist[start : start + _BLOCK]
        part = np.argpartition(block, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(block), 1))
        part_d = np.take_along_axis(block, part, axis=1)
        out[start : start + _BLOCK] = np.take_along_axis(part, np.argsort(part_d, axis=1, kind="stable"), axis=1)
    return out


def _reciprocal_lists(neighbours: np.ndarray) -> list[np.ndarray]:
    """For each item p, ``R(p, k)``: the members g of its neighbour list whose own list holds p."""
    n, k = neighbours.shape
    rows = np.repeat(np.arange(n), k)
    cols = neighbours.ravel()
    # g = cols[i] is reciprocal for p = rows[i] when (g, p) is also an edge: look the pair up in sorted edge keys.
    keys = np.sort(rows * n + cols)
    back = cols * n + rows
    pos = np.minimum(np.searchsorted(keys, back), keys.size - 1)
    mutual = (keys[pos] == back).reshape(n, k)
    return [neighbours[p][mutual[p]] for p in range(n)]


def _expanded_sets(r_full: list[np.ndarray], r_half: list[np.ndarray], n: int) -> list[np.ndarray]:
    """``R*(p, k1)``: add each ``R(q, k1/2)``, q in ``R(p, k1)``, that overlaps ``R(p, k1)`` by >= 2/3 of its size."""
    member = np.zeros(n, dtype=bool)
    out = []
    for members in r_full:
        member[members] = True
        parts = [members]
        for q in members:
            cand = r_half[q]
            if member[cand].sum() * 3 >= 2 * cand.size:
                parts.append(cand)
        member[members] = False
        out.append(np.unique(np.concatenate(parts)))
    return out


def _segments(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of every stored entry of the sparse ``rows`` (in order), and which of ``rows`` each belongs to."""
    lens = indptr[rows + 1] - indptr[rows]
    offsets = np.repeat(indptr[rows] - (np.cumsum(lens) - lens), lens)
    return np.arange(lens.sum()) + offsets, np.repeat(np.arange(rows.size), lens)


def _sparse_rows(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays (indptr, indices, data) of an n x n matrix from (row, col, value) triplets; duplicates are summed."""
    keys, inverse = np.unique(rows * n + cols, return_inverse=True)
    data = np.bincount(inverse.ravel(), weights=vals).astype(np.float32)
    indptr = np.concatenate(([0], np.cumsum(np.bincount(keys // n, minlength=n))))
    return indptr, keys % n, data


def _jaccard(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, num_q: int) -> np.ndarray:
    """Jaccard distances between the sparse V vectors of the first ``num_q`` rows and the remaining rows."""
    n = indptr.size - 1
    num_g = n - num_q
    g_pos, g_rows = _segments(indptr, np.arange(num_q, n))
    g_cols = indices[g_pos]
    order = np.argsort(g_cols, kind="stable")  # inverted index: for each column, the gallery rows using it
    g_rows, g_vals = g_rows[order], data[g_pos][order]
    col_ptr = np.concatenate(([0], np.cumsum(np.bincount(g_cols, minlength=n))))
    g_mass = np.bincount(g_rows, weights=g_vals, minlength=num_g)
    out = np.empty((num_q, num_g), dtype=np.float32)
    for p in range(num_q):
        support, weights = indices[indptr[p] : indptr[p + 1]], data[indptr[p] : indptr[p + 1]]
        pos, owner = _segments(col_ptr, support)
        inter = np.bincount(g_rows[pos], weights=np.minimum(g_vals[pos], weights[owner]), minlength=num_g)
        union = weights.sum(dtype=np.float64) + g_mass - inter  # sum of max = sum a + sum b - sum of min
        out[p] = 1.0 - np.divide(inter, union, out=np.zeros(num_g), where=union > 0)
    return out


def re_ranking(
    q_g_dist: np.ndarray, q_q_dist: np.ndarray, g_g_dist: np.ndarray, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> np.ndarray:
    """Re-ranked query x gallery distances (float32), see the module docstring for the method.

    Inputs are distances (squared L2 in the paper's setting). ``lambda_value=1`` returns the
    normalised original distance (same ranking as ``q_g_dist``); ``0`` the Jaccard distance alone.
    """
    q_g = np.asarray(q_g_dist, dtype=np.float32)
    q_q = np.asarray(q_q_dist, dtype=np.float32)
    g_g = np.asarray(g_g_dist, dtype=np.float32)
    if q_g.ndim != 2:
        raise ValueError(f"q_g_dist must be 2-D, got shape {q_g.shape}")
    num_q, num_g = q_g.shape
    if q_q.shape != (num_q, num_q) or g_g.shape != (num_g, num_g):
        want = f"q_q {(num_q, num_q)} and g_g {(num_g, num_g)}"
        raise ValueError(f"shapes disagree: q_g {q_g.shape} needs {want}, got q_q {q_q.shape} and g_g {g_g.shape}")
    if k1 < 1 or k2 < 0:
        raise ValueError(f"need k1 >= 1 and k2 >= 0, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")
    n = num_q + num_g
    dist = np.empty((n, n), dtype=np.float32)
    dist[:num_q, :num_q] = q_q
    dist[:num_q, num_q:] = q_g
    dist[num_q:, :num_q] = q_g.T
    dist[num_q:, num_q:] = g_g
    np.fill_diagonal(dist, 0.0)
    if not np.isfinite(dist).all() or (dist < 0).any():
        raise ValueError("distances must be finite and non-negative")
    scale = float(dist.max())
    if scale > 0:
        dist /= scale
    if lambda_value == 1.0:
        return dist[:num_q, num_q:].copy()

    k_half = max(1, int(round(k1 / 2)))
    neighbours = _nearest(dist, max(k1, k2) + 1)  # column 0: the item itself (distance 0)
    r_full = _reciprocal_lists(neighbours[:, : k1 + 1])
    r_half = _reciprocal_lists(neighbours[:, : k_half + 1])
    expanded = _expanded_sets(r_full, r_half, n)

    rows = np.repeat(np.arange(n), [m.size for m in expanded])
    cols = np.concatenate(expanded)
    indptr, indices, data = _sparse_rows(rows, cols, np.exp(-dist[rows, cols], dtype=np.float64), n)
    if k2 > 0:  # local query expansion: average the V rows of each item's k2 + 1 nearest (itself included)
        pos, owner = _segments(indptr, neighbours[:, : k2 + 1].ravel())
        indptr, indices, data = _sparse_rows(owner // (k2 + 1), indices[pos], data[pos] / (k2 + 1), n)

    jaccard = _jaccard(indptr, indices, data, num_q)
    return (1.0 - lambda_value) * jaccard + lambda_value * dist[:num_q, num_q:]
