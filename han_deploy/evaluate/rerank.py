"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li, CVPR 2017), the same computation as the authors' release.

The numbers equal the code the authors published and torchreid / fast-reid ship (so re-ranked
figures compare with published ones). Over all N = Q + G items (queries and gallery together):

1. ``D`` is the joint N x N matrix ``[[q_q, q_g], [q_g.T, g_g]]`` with every entry squared; the
   working distance is ``d = (D / D.max(axis=0)).T``, i.e. row i of ``D.T`` divided by its maximum
   (for symmetric inputs: each item's distances divided by its own largest one; ``d`` is not symmetric).
2. Rank lists: a full sort (numpy's default ``argsort``) of each row of ``d``; exact ties keep the
   order that sort gives them. ``N(i, k)`` is the first k + 1 entries (normally the item itself and
   its k nearest others); ``R(i, k)`` keeps the members j of ``N(i, k)`` whose own ``N(j, k)`` holds i.
3. ``R*(i)`` is ``R(i, k1)`` united with every ``R(c, round(k1 / 2))``, c in ``R(i, k1)``, that
   shares strictly more than 2/3 of its members with ``R(i, k1)``.
4. ``V[i, j] = exp(-d[i, j])`` over j in ``R*(i)``, normalised to sum 1 per row; local query
   expansion (skipped when ``k2 == 1``) replaces row i by the mean of the rows of the first k2
   entries of its rank list (itself included).
5. Jaccard distance ``1 - m / (2 - m)`` with ``m = sum_j min(V[q, j], V[g, j])``; the result is
   ``(1 - lambda) * jaccard + lambda * d[q, g]``, float32.

Memory: the joint matrix is never built. Rows of ``d`` are formed, ranked and dropped in blocks
(a few million entries; a partition finds the first ranks, and only rows with ties there are fully
sorted), only the first ``max(k1 + 1, k2)`` ranks of each row are kept, the V
rows are sparse (about k1 entries per item, times k2 after expansion) and the Jaccard step uses an
inverted index over them. Besides the inputs, the largest array is the Q x G result.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

_BLOCK_ENTRIES = 1 << 22  # entries of d ranked at once: about 100 MB of temporaries per block


def _squared(x: np.ndarray) -> np.ndarray:
    """Entries squared exactly in float64, then rounded to float32 (as the reference squares its input)."""
    return np.square(x, dtype=np.float64).astype(np.float32)


def _joint_rows(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of the squared, transposed joint matrix ``D.T``, float32; the block lies in one part."""
    num_q = len(q_q)
    if stop <= num_q:  # query i: column i of D is (q_q[:, i], q_g[i, :])
        return _squared(np.hstack([q_q[:, start:stop].T, q_g[start:stop]]))
    lo, hi = start - num_q, stop - num_q  # gallery j: column of D is (q_g[:, j], g_g[:, j])
    return _squared(np.hstack([q_g[:, lo:hi].T, g_g[:, lo:hi].T]))


def _joint_entries(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Entries ``D.T[rows, cols] = D[cols, rows]`` of the squared joint matrix, float32."""
    num_q = len(q_q)
    out = np.empty(rows.size, dtype=np.float32)
    row_q, col_q = rows < num_q, cols < num_q
    parts = (
        (row_q & col_q, q_q, cols, rows),
        (~row_q & col_q, q_g, cols, rows - num_q),
        (row_q & ~col_q, q_g, rows, cols - num_q),
        (~row_q & ~col_q, g_g, cols - num_q, rows - num_q),
    )
    for mask, block, first, second in parts:
        out[mask] = _squared(block[first[mask], second[mask]])
    return out


def _block_size(row_length: int) -> int:
    """Rows per block so that a block holds about ``_BLOCK_ENTRIES`` entries."""
    return max(1, _BLOCK_ENTRIES // max(1, row_length))


def _ranked(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``depth`` entries of every rank list of ``d``, and each row's maximum of ``D.T`` (float32)."""
    num_q, n = len(q_q), len(q_q) + len(g_g)
    ranks = np.empty((n, depth), dtype=np.int64)
    row_max = np.empty(n, dtype=np.float32)
    step = _block_size(n)
    bounds = [*range(0, num_q, step), *range(num_q, n, step), n]
    for start, stop in pairwise(bounds):
        rows = _joint_rows(q_g, q_q, g_g, start, stop)
        if not np.isfinite(rows).all():
            raise ValueError(f"distances of items {start}..{stop - 1} are not finite (or their squares overflow float32)")
        row_max[start:stop] = rows.max(axis=1)
        if not (row_max[start:stop] > 0).all():
            bad = start + int(np.flatnonzero(row_max[start:stop] <= 0)[0])
            raise ValueError(f"item {bad} (queries first, then gallery) has all distances 0: nothing to normalise by")
        rows /= row_max[start:stop, None]
        ranks[start:stop] = _first_ranks(rows, depth)
    return ranks, row_max


def _first_ranks(rows: np.ndarray, depth: int) -> np.ndarray:
    """The first ``depth`` columns of ``np.argsort(rows, axis=1)``; only rows with ties among them are fully sorted.

    Without ties the first ``depth`` ranks do not depend on the sort algorithm, so a partition and a
    sort of ``depth + 1`` values give them; with ties only numpy's default sort itself says which comes first.
    """
    if depth >= rows.shape[1]:
        return np.argsort(rows, axis=1)[:, :depth]
    part = np.argpartition(rows, depth, axis=1)[:, : depth + 1]
    values = np.take_along_axis(rows, part, axis=1)
    order = np.argsort(values, axis=1)
    part, values = np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)
    out = part[:, :depth]
    tied = (np.diff(values, axis=1) == 0).any(axis=1)
    if tied.any():
        out[tied] = np.argsort(rows[tied], axis=1)[:, :depth]
    return out


def _reciprocal_lists(neighbours: np.ndarray) -> list[np.ndarray]:
    """For each item p, ``R(p, k)``: the members g of its neighbour list whose own list holds p, in list order."""
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
    """``R*(p)``: ``R(p, k1)`` plus each ``R(c, k1/2)``, c in it, sharing strictly more than 2/3 of its members."""
    member = np.zeros(n, dtype=bool)
    out = []
    for members in r_full:
        member[members] = True
        parts = [members]
        for c in members:
            cand = r_half[c]
            if 3 * int(member[cand].sum()) > 2 * cand.size:
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


def _normalised_q_g(q_g: np.ndarray, q_max: np.ndarray) -> np.ndarray:
    """``d[q, g]``: the squared query x gallery distances divided by each query's row maximum, in row blocks."""
    out = np.empty(q_g.shape, dtype=np.float32)
    step = _block_size(q_g.shape[1])
    for start in range(0, len(q_g), step):
        out[start : start + step] = _squared(q_g[start : start + step]) / q_max[start : start + step, None]
    return out


def _weights(
    q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, row_max: np.ndarray, expanded: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse V: ``exp(-d[i, j])`` over ``R*(i)``, normalised to sum 1 per row, as CSR arrays."""
    n = len(expanded)
    rows = np.repeat(np.arange(n), [m.size for m in expanded])
    cols = np.concatenate(expanded)
    weights = np.exp(-(_joint_entries(q_g, q_q, g_g, rows, cols) / row_max[rows]))
    return _sparse_rows(rows, cols, weights / np.bincount(rows, weights=weights, minlength=n)[rows], n)


def _jaccard(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, num_q: int) -> np.ndarray:
    """Jaccard distances ``1 - m / (2 - m)`` between the V rows of the first ``num_q`` items and the rest."""
    n = indptr.size - 1
    num_g = n - num_q
    g_pos, g_rows = _segments(indptr, np.arange(num_q, n))
    g_cols = indices[g_pos]
    order = np.argsort(g_cols, kind="stable")  # inverted index: for each column, the gallery rows using it
    g_rows, g_vals = g_rows[order], data[g_pos][order]
    col_ptr = np.concatenate(([0], np.cumsum(np.bincount(g_cols, minlength=n))))
    out = np.empty((num_q, num_g), dtype=np.float32)
    for p in range(num_q):
        support, weights = indices[indptr[p] : indptr[p + 1]], data[indptr[p] : indptr[p + 1]]
        pos, owner = _segments(col_ptr, support)
        inter = np.bincount(g_rows[pos], weights=np.minimum(g_vals[pos], weights[owner]), minlength=num_g)
        out[p] = 1.0 - inter / (2.0 - inter)  # V rows sum to 1, so sum of max = 2 - sum of min
    return out


def _check_inputs(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int, k2: int, lambda_value: float) -> None:
    """Raise ValueError naming the bad argument: shapes, k1 >= 1, k2 >= 1, lambda in [0, 1]."""
    if q_g.ndim != 2:
        raise ValueError(f"q_g_dist must be 2-D, got shape {q_g.shape}")
    num_q, num_g = q_g.shape
    if q_q.shape != (num_q, num_q) or g_g.shape != (num_g, num_g):
        want = f"q_q {(num_q, num_q)} and g_g {(num_g, num_g)}"
        raise ValueError(f"shapes disagree: q_g {q_g.shape} needs {want}, got q_q {q_q.shape} and g_g {g_g.shape}")
    if k1 < 1 or k2 < 1:
        raise ValueError(f"need k1 >= 1 and k2 >= 1 (k2 = 1 switches query expansion off), got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")


def re_ranking(
    q_g_dist: np.ndarray, q_q_dist: np.ndarray, g_g_dist: np.ndarray, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> np.ndarray:
    """Re-ranked query x gallery distances (float32), as the reference computes them (module docstring).

    Pass what torchreid passes: squared L2 distances (the reference squares them again). The inputs
    are read in blocks, never copied whole. ``lambda_value=1`` returns ``d[q, g]``.
    """
    q_g, q_q, g_g = np.asarray(q_g_dist), np.asarray(q_q_dist), np.asarray(g_g_dist)
    _check_inputs(q_g, q_q, g_g, k1, k2, lambda_value)
    num_q, n = len(q_q), len(q_q) + len(g_g)
    ranks, row_max = _ranked(q_g, q_q, g_g, min(n, max(k1 + 1, k2)))
    result = _normalised_q_g(q_g, row_max[:num_q])
    if lambda_value == 1.0:
        return result

    r_full = _reciprocal_lists(ranks[:, : k1 + 1])
    r_half = _reciprocal_lists(ranks[:, : round(k1 / 2) + 1])
    indptr, indices, data = _weights(q_g, q_q, g_g, row_max, _expanded_sets(r_full, r_half, n))
    if k2 != 1:  # local query expansion: the mean of the V rows of the first k2 entries of each rank list
        first = ranks[:, :k2]
        pos, owner = _segments(indptr, first.ravel())
        indptr, indices, data = _sparse_rows(owner // first.shape[1], indices[pos], data[pos] / first.shape[1], n)

    lam = float(lambda_value)
    jaccard = _jaccard(indptr, indices, data, num_q)
    jaccard *= 1.0 - lam  # in place, float32: the same roundings as the reference's expression
    result *= lam
    result += jaccard
    return result
