"""Rank metrics, re-ranking, multi-query pooling and distances: hand-worked cases, oracles and properties."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from han_deploy.evaluate import (
    evaluate_features,
    evaluate_rank,
    l2_normalize,
    pairwise_distance,
    pool_multi_query,
    re_ranking,
)

# ----------------------------------------------------------------------------------------------
# Plain-loop oracles, written straight from the protocol text (docs/datasets.md) and the re-ranking facts


def oracle_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank):
    cmcs, aps, inps = [], [], []
    for i in range(len(q_pids)):
        order = np.argsort(d[i], kind="stable")
        kept = [j for j in order if g_pids[j] != -1 and not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
        hit_ranks = [r + 1 for r, j in enumerate(kept) if g_pids[j] == q_pids[i]]
        if not hit_ranks:
            continue
        cmcs.append([1.0 if k >= hit_ranks[0] else 0.0 for k in range(1, max_rank + 1)])
        aps.append(np.mean([(n + 1) / r for n, r in enumerate(hit_ranks)]))
        inps.append(len(hit_ranks) / hit_ranks[-1])
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps)), len(aps)


def reference_rerank(q_g, q_q, g_g, k1, k2, lam):
    """The community's re-ranking as a dense program, step by step from facts (a)-(h) of issue 14."""
    joint = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64)
    d = np.square(joint).astype(np.float32)  # (a) squared first
    d = (d / d.max(axis=0)).T  # (b) divided by each column's maximum, then transposed
    rank = np.argsort(d, axis=1)  # (c) full sort of each row
    n, num_q = len(d), len(q_q)

    def reciprocal(i, k):  # members j of i's first k + 1 whose own first k + 1 hold i
        return [j for j in rank[i, : k + 1] if i in rank[j, : k + 1]]

    v = np.zeros_like(d)
    for i in range(n):
        r = reciprocal(i, k1)
        star = set(r)
        for c in r:
            rc = reciprocal(c, int(round(k1 / 2)))
            if len(set(rc) & set(r)) > 2 / 3 * len(rc):  # (d)
                star |= set(rc)
        idx = sorted(star)
        w = np.exp(-d[i, idx])
        v[i, idx] = w / w.sum()  # (e)
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])  # (f)
    m = np.array([[np.minimum(v[q], v[g]).sum() for g in range(num_q, n)] for q in range(num_q)])
    jaccard = 1 - m / (2 - m)  # (g)
    return (1 - lam) * jaccard + lam * d[:num_q, num_q:]  # (h)


# ----------------------------------------------------------------------------------------------
# evaluate_rank: hand-worked cases


def test_single_query_two_matches_by_hand():
    # Query pid 1 / cam 0. Distances rank the gallery g0 (pid 2), g1 (pid 1), g2 (pid 3), g3 (pid 1), g4 (pid 4).
    # Correct matches sit at ranks 2 and 4: CMC = [0, 1, 1, ...]; AP = (1/2 + 2/4) / 2 = 0.5; INP = 2/4 = 0.5.
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    r = evaluate_rank(d, [1], [2, 1, 3, 1, 4], [0], [1, 1, 1, 1, 1], max_rank=5)
    np.testing.assert_allclose(r.cmc, [0, 1, 1, 1, 1])
    assert r.mAP == pytest.approx(0.5)
    assert r.mINP == pytest.approx(0.5)
    assert r.num_valid_queries == 1


def test_two_queries_with_junk_same_camera_distractor_and_a_skipped_query():
    # gallery: g0 pid1 cam0, g1 pid1 cam1, g2 pid2 cam1, g3 pid-1 (junk) cam1, g4 pid0 (distractor) cam1, g5 pid2 cam0
    g_pids = [1, 1, 2, -1, 0, 2]
    g_cams = [0, 1, 1, 1, 1, 0]
    d = np.array(
        [
            # q0 (pid 1, cam 0): sorted g0 g3 g2 g4 g1 g5. g0 is same pid + same cam -> removed; g3 junk -> removed.
            # Kept ranking: g2 (wrong, 1), g4 (distractor = wrong, 2), g1 (correct, 3), g5 (wrong, 4).
            # CMC starts at rank 3; AP = 1/3; INP = 1/3.
            [0.1, 0.5, 0.3, 0.2, 0.4, 0.6],
            # q1 (pid 2, cam 0): sorted g5 g3 g2 g0 g1 g4. g5 same pid + cam -> removed, g3 junk -> removed.
            # Kept: g2 (correct, rank 1) ... AP = 1, INP = 1.
            [0.3, 0.4, 0.2, 0.1, 0.5, 0.05],
            # q2 (pid 7): no gallery image of pid 7 -> skipped.
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        ]
    )
    r = evaluate_rank(d, [1, 2, 7], g_pids, [0, 0, 0], g_cams, max_rank=4)
    assert r.num_valid_queries == 2
    # CMC averages q0 = [0, 0, 1, 1] and q1 = [1, 1, 1, 1].
    np.testing.assert_allclose(r.cmc, [0.5, 0.5, 1.0, 1.0])
    assert r.mAP == pytest.approx((1 / 3 + 1) / 2)
    assert r.mINP == pytest.approx((1 / 3 + 1) / 2)


def test_minp_differs_from_ap():
    # Correct matches at ranks 1, 3 and 6 of 6: AP = (1/1 + 2/3 + 3/6) / 3 = 13/18; INP = 3/6.
    g_pids = [5, 9, 5, 8, 7, 5]
    d = np.arange(6, dtype=float)[None, :]
    r = evaluate_rank(d, [5], g_pids, [0], [1] * 6, max_rank=6)
    assert r.mAP == pytest.approx(13 / 18)
    assert r.mINP == pytest.approx(0.5)
    np.testing.assert_allclose(r.cmc, np.ones(6))


def test_same_pid_other_camera_kept_and_other_pid_same_camera_kept():
    # q pid 1 cam 0. g0: pid 3 cam 0 (other id, same camera: stays, a wrong match at rank 1);
    # g1: pid 1 cam 0 (removed); g2: pid 1 cam 2 (correct, rank 2). AP = 1/2, R1 = 0.
    r = evaluate_rank(np.array([[0.1, 0.2, 0.3]]), [1], [3, 1, 1], [0], [0, 0, 2], max_rank=2)
    np.testing.assert_allclose(r.cmc, [0, 1])
    assert r.mAP == pytest.approx(0.5)


def test_max_rank_beyond_gallery_pads_with_ones():
    # Three gallery images, the match at rank 2: CMC is 0 at rank 1 and 1 from rank 2 on, also past the gallery.
    r = evaluate_rank(np.array([[0.1, 0.2, 0.3]]), [1], [2, 1, 3], [0], [1, 1, 1], max_rank=10)
    assert r.cmc.shape == (10,)
    np.testing.assert_allclose(r.cmc, [0] + [1] * 9)


def test_ties_keep_gallery_order():
    # All distances equal: the stable order is the gallery order g0 (pid 2), g1 (pid 1), g2 (pid 1).
    # Correct matches at ranks 2 and 3: AP = (1/2 + 2/3) / 2 = 7/12, INP = 2/3, CMC = [0, 1, 1].
    r = evaluate_rank(np.ones((1, 3)), [1], [2, 1, 1], [0], [1, 1, 1], max_rank=3)
    np.testing.assert_allclose(r.cmc, [0, 1, 1])
    assert r.mAP == pytest.approx(7 / 12) and r.mINP == pytest.approx(2 / 3)


def test_no_valid_query_raises():
    with pytest.raises(ValueError, match="no query has a correct match"):
        evaluate_rank(np.array([[0.1, 0.2]]), [1], [1, 2], [0], [0, 1])  # the only match shares the camera


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_rank(np.zeros((2, 3)), [1, 2], [1, 2], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="2-D"):
        evaluate_rank(np.zeros(3), [1], [1, 2, 3], [0], [1, 1, 1])


def test_single_gallery_shot_by_hand():
    # Query pid 1 cam 0; ranked gallery: pid 2 (a), pid 1, pid 2 (b), pid 3, all other cameras.
    # Each draw keeps one image of pid 2: image a (p = 1/2) puts pid 2 before pid 1 -> first match at rank 2;
    # image b -> rank 1. So CMC@1 -> 1/2 and CMC@2 = 1; mAP uses the full ranking: AP = 1/2.
    d = np.array([[0.1, 0.2, 0.3, 0.4]])
    args = (d, [1], [2, 1, 2, 3], [0], [1, 1, 1, 1])
    r = evaluate_rank(*args, max_rank=3, single_gallery_shot=True, repeats=4000, seed=3)
    assert r.cmc[0] == pytest.approx(0.5, abs=0.03)
    np.testing.assert_allclose(r.cmc[1:], [1, 1])
    assert r.mAP == pytest.approx(0.5)
    again = evaluate_rank(*args, max_rank=3, single_gallery_shot=True, repeats=4000, seed=3)
    np.testing.assert_array_equal(r.cmc, again.cmc)  # seeded draws are deterministic


def test_single_gallery_shot_converges_to_the_exact_expectation():
    # Enumerate every choice of one image per id (junk excluded, the query's own id limited to other cameras),
    # each equally likely: the exact expected CMC. 20,000 seeded draws must land within 0.02 of it.
    import itertools

    g_pids = np.array([1, 2, 1, 3, 2, -1, 1, 3, 4])
    g_cams = np.array([0, 1, 1, 1, 0, 1, 1, 0, 1])  # g0 shares the query's camera: never drawn for pid 1
    d = np.array([[0.35, 0.1, 0.5, 0.2, 0.45, 0.05, 0.3, 0.6, 0.4]])
    groups = {1: [2, 6], 2: [1, 4], 3: [3, 7], 4: [8]}
    expected = np.zeros(4)
    combos = list(itertools.product(*groups.values()))
    for combo in combos:
        own = d[0, combo[0]]
        first = 1 + sum(d[0, j] < own for j in combo[1:])
        expected += np.arange(1, 5) >= first
    expected /= len(combos)
    r = evaluate_rank(d, [1], g_pids, [0], g_cams, max_rank=4, single_gallery_shot=True, repeats=20000, seed=1)
    np.testing.assert_allclose(r.cmc, expected, atol=0.02)


def test_single_gallery_shot_equals_standard_cmc_with_one_image_per_id():
    rng = np.random.default_rng(0)
    g_pids = np.arange(1, 21)
    q_pids = rng.integers(1, 21, 15)
    d = rng.random((15, 20))
    std = evaluate_rank(d, q_pids, g_pids, np.zeros(15), np.ones(20), max_rank=20)
    sgs = evaluate_rank(d, q_pids, g_pids, np.zeros(15), np.ones(20), max_rank=20, single_gallery_shot=True, repeats=3)
    np.testing.assert_allclose(sgs.cmc, std.cmc)


def test_matches_the_loop_oracle_on_random_protocol_cases():
    rng = np.random.default_rng(42)
    checked = 0
    for _ in range(60):
        nq, ng = int(rng.integers(1, 25)), int(rng.integers(1, 80))
        q_pids, g_pids = rng.integers(0, 6, nq), rng.integers(-1, 6, ng)
        q_cams, g_cams = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
        # half the cases use 3 distinct distance values only: ties everywhere
        d = rng.random((nq, ng)) if rng.random() < 0.5 else rng.integers(0, 3, (nq, ng)).astype(float)
        if not _has_valid_query(q_pids, g_pids, q_cams, g_cams):
            continue
        expected = oracle_rank(d, q_pids, g_pids, q_cams, g_cams, 30)
        r = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=30)
        np.testing.assert_allclose(r.cmc, expected[0])
        assert (r.mAP, r.mINP, r.num_valid_queries) == pytest.approx(expected[1:])
        checked += 1
    assert checked > 20


def test_more_queries_than_one_block():
    # 600 queries span three 256-query blocks: the result must not depend on the block boundaries.
    rng = np.random.default_rng(7)
    q_pids, g_pids = rng.integers(1, 30, 600), rng.integers(0, 30, 90)
    q_cams, g_cams = rng.integers(0, 4, 600), rng.integers(0, 4, 90)
    d = rng.random((600, 90))
    r = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    cmc, m_ap, m_inp, n = oracle_rank(d, q_pids, g_pids, q_cams, g_cams, 10)
    np.testing.assert_allclose(r.cmc, cmc)
    assert (r.mAP, r.mINP, r.num_valid_queries) == pytest.approx((m_ap, m_inp, n))


def test_queries_with_many_matches():
    # Two ids over 300 gallery images: ~100 correct matches per query, more than the counting path takes.
    rng = np.random.default_rng(5)
    q_pids, g_pids = rng.integers(1, 3, 6), rng.integers(0, 3, 300)
    q_cams, g_cams = rng.integers(0, 2, 6), rng.integers(0, 2, 300)
    d = rng.random((6, 300))
    r = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    cmc, m_ap, m_inp, n = oracle_rank(d, q_pids, g_pids, q_cams, g_cams, 10)
    np.testing.assert_allclose(r.cmc, cmc)
    assert (r.mAP, r.mINP, r.num_valid_queries) == pytest.approx((m_ap, m_inp, n))


# ----------------------------------------------------------------------------------------------
# evaluate_rank: properties


@st.composite
def protocol_case(draw):
    nq = draw(st.integers(1, 8))
    ng = draw(st.integers(1, 20))
    q_pids = np.array(draw(st.lists(st.integers(0, 4), min_size=nq, max_size=nq)))
    g_pids = np.array(draw(st.lists(st.integers(-1, 4), min_size=ng, max_size=ng)))
    q_cams = np.array(draw(st.lists(st.integers(0, 2), min_size=nq, max_size=nq)))
    g_cams = np.array(draw(st.lists(st.integers(0, 2), min_size=ng, max_size=ng)))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    d = rng.permutation(nq * ng).reshape(nq, ng).astype(float)  # distinct distances: no ties
    perm = rng.permutation(ng)
    return d, q_pids, g_pids, q_cams, g_cams, perm


def _has_valid_query(q_pids, g_pids, q_cams, g_cams):
    return any(((g_pids == p) & (g_cams != c)).any() for p, c in zip(q_pids, q_cams, strict=True))


@settings(max_examples=150, deadline=None)
@given(protocol_case())
def test_gallery_permutation_does_not_change_metrics(case):
    d, q_pids, g_pids, q_cams, g_cams, perm = case
    if not _has_valid_query(q_pids, g_pids, q_cams, g_cams):
        with pytest.raises(ValueError):
            evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=10)
        return
    a = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    b = evaluate_rank(d[:, perm], q_pids, g_pids[perm], q_cams, g_cams[perm], max_rank=10)
    np.testing.assert_allclose(a.cmc, b.cmc)
    assert (a.mAP, a.mINP, a.num_valid_queries) == pytest.approx((b.mAP, b.mINP, b.num_valid_queries))


@settings(max_examples=150, deadline=None)
@given(protocol_case())
def test_metrics_are_fractions_and_cmc_is_monotone(case):
    d, q_pids, g_pids, q_cams, g_cams, _ = case
    assume(_has_valid_query(q_pids, g_pids, q_cams, g_cams))
    r = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=25)
    assert np.all((r.cmc >= 0) & (r.cmc <= 1))
    assert np.all(np.diff(r.cmc) >= 0)
    assert 0 < r.mAP <= 1 and 0 < r.mINP <= 1
    assert r.cmc[-1] == pytest.approx(1.0)  # 25 > gallery size: every valid query has found its match


@settings(max_examples=100, deadline=None)
@given(protocol_case())
def test_perfect_distance_matrix_gives_one(case):
    _, q_pids, g_pids, q_cams, g_cams, _ = case
    assume(_has_valid_query(q_pids, g_pids, q_cams, g_cams))
    d = np.where(q_pids[:, None] == g_pids[None, :], 0.0, 1.0)  # every match closer than every non-match
    r = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=5)
    assert r.cmc[0] == 1.0 and r.mAP == pytest.approx(1.0) and r.mINP == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# distances, multi-query, end-to-end


def test_pairwise_distance_matches_brute_force_and_squared_ranks_identically():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 16)), rng.normal(size=(9, 16))
    brute = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    np.testing.assert_allclose(pairwise_distance(a, b), brute, rtol=1e-10)
    sq = pairwise_distance(a, b, squared=True)
    np.testing.assert_allclose(sq, brute**2, rtol=1e-10)
    np.testing.assert_array_equal(np.argsort(sq, axis=1), np.argsort(brute, axis=1))
    assert pairwise_distance(a.astype(np.float32), b.astype(np.float32)).dtype == np.float32
    assert pairwise_distance(a, a).diagonal() == pytest.approx(np.zeros(7), abs=1e-6)
    with pytest.raises(ValueError, match="dimensions"):
        pairwise_distance(a, b[:, :8])


def test_pool_multi_query_by_hand():
    # Group (pid 1, cam 0) holds [3, 4] and [1, 0]: normalised [0.6, 0.8] and [1, 0].
    # max -> [1, 0.8] / |.| ; mean -> [0.8, 0.4] / |.| . The query of pid 2 is alone and only gets normalised.
    feats = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [5.0, 0.0]])
    pids, cams = np.array([1, 1, 2, 1]), np.array([0, 0, 0, 1])  # last: pid 1 but another camera, not pooled
    mx = pool_multi_query(feats, pids, cams, "max")
    np.testing.assert_allclose(mx[0], np.array([1.0, 0.8]) / np.hypot(1.0, 0.8))
    np.testing.assert_allclose(mx[1], mx[0])
    np.testing.assert_allclose(mx[2], [0.0, 1.0])
    np.testing.assert_allclose(mx[3], [1.0, 0.0])
    mean = pool_multi_query(feats, pids, cams, "mean")
    np.testing.assert_allclose(mean[0], np.array([0.8, 0.4]) / np.hypot(0.8, 0.4))
    np.testing.assert_allclose(np.linalg.norm(mean, axis=1), 1.0)
    with pytest.raises(ValueError, match="max"):
        pool_multi_query(feats, pids, cams, "median")


def test_pool_multi_query_with_extra_images():
    # Market's MQ: the query (pid 1, cam 0) = [1, 0] pooled with gt_bbox images of pid 1 / cam 0 ([0, 1]);
    # the extra image of pid 1 / cam 2 and the one of pid 2 / cam 0 stay out. mean -> [0.5, 0.5] -> [1, 1]/sqrt(2).
    extra = (np.array([[0.0, 3.0], [5.0, 5.0], [-1.0, 0.0]]), np.array([1, 1, 2]), np.array([0, 2, 0]))
    out = pool_multi_query(np.array([[2.0, 0.0]]), np.array([1]), np.array([0]), "mean", extra=extra)
    assert out.shape == (1, 2)
    np.testing.assert_allclose(out[0], [2**-0.5, 2**-0.5])
    with pytest.raises(ValueError, match="extra"):
        pool_multi_query(np.ones((1, 2)), [1], [0], "max", extra=(np.ones((2, 3)), np.array([1, 1]), np.array([0, 0])))


def _clustered_features(num_ids=12, per_cam=3, dim=32, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.normal(size=(num_ids, dim)))
    feats, pids, cams = [], [], []
    for pid in range(1, num_ids + 1):
        for cam in (0, 1):
            for _ in range(per_cam):
                feats.append(centres[pid - 1] + noise * rng.normal(size=dim))
                pids.append(pid)
                cams.append(cam)
    feats, pids, cams = np.array(feats), np.array(pids), np.array(cams)
    q = cams == 0
    return feats[q], feats[~q], pids[q], pids[~q], cams[q], cams[~q]


def test_evaluate_features_end_to_end():
    qf, gf, qp, gp, qc, gc = _clustered_features()
    out = evaluate_features(qf, gf, qp, gp, qc, gc)
    assert {"R1", "R5", "R10", "mAP", "mINP", "cmc", "num_valid_queries"} <= out.keys()
    assert out["R1"] == 1.0 and out["mAP"] == pytest.approx(1.0)
    assert len(out["cmc"]) == 50
    mq = evaluate_features(qf, gf, qp, gp, qc, gc, multi_query="mean")
    assert mq["mAP"] == pytest.approx(1.0)
    rr = evaluate_features(qf, gf, qp, gp, qc, gc, rerank=True, k1=6, k2=2, lambda_value=0.3)
    assert rr["R1"] == 1.0 and rr["mAP"] == pytest.approx(1.0)
    with pytest.raises(TypeError, match="rerank=True"):
        evaluate_features(qf, gf, qp, gp, qc, gc, k1=6)
    with pytest.raises(TypeError, match="multi_query"):
        evaluate_features(qf, gf, qp, gp, qc, gc, multi_query_extra=(gf, gp, gc))


def test_evaluate_features_scores_random_features_low():
    rng = np.random.default_rng(1)
    qp, gp = np.repeat(np.arange(1, 51), 2), np.repeat(np.arange(1, 51), 4)
    out = evaluate_features(rng.normal(size=(100, 16)), rng.normal(size=(200, 16)), qp, gp, np.zeros(100), np.ones(200))
    assert out["R1"] < 0.15 and out["mAP"] < 0.15  # chance level: 1/50 per rank


# ----------------------------------------------------------------------------------------------
# re-ranking


def _random_distances(nq, ng, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    q, g = rng.normal(size=(nq, dim)), rng.normal(size=(ng, dim))
    return (pairwise_distance(q, g, squared=True), pairwise_distance(q, q, squared=True), pairwise_distance(g, g, squared=True))


def _raw_distances(nq, ng, seed=0):
    # Not distances of any features: asymmetric q_q and g_g, non-zero diagonals, negative entries (squared away).
    rng = np.random.default_rng(seed)
    return rng.normal(size=(nq, ng)), rng.normal(size=(nq, nq)), rng.normal(size=(ng, ng))


def _tied_distances(nq, ng, seed=0):
    # Distances in {0, 1, 2, 3}: exact ties everywhere, so numpy's (unstable) default sort decides the lists.
    rng = np.random.default_rng(seed)
    return tuple(rng.integers(0, 4, size=shape).astype(np.float32) for shape in ((nq, ng), (nq, nq), (ng, ng)))


def test_re_ranking_by_hand():
    # q at 0, g0 at 1, g1 at 3 on a line, distances given plainly. Squared joint D (q, g0, g1) = [[0,1,9],[1,0,4],[9,4,0]];
    # d = rows over their maxima: d[q] = [0, 1/9, 1], d[g0] = [1/4, 0, 1], d[g1] = [1, 4/9, 0].
    # k1 = 1: lists q: (q, g0), g0: (g0, q), g1: (g1, g0) -> R(q) = {q, g0}, R(g0) = {g0, q}, R(g1) = {g1};
    # round(1/2) = 0: candidates' sets are themselves, nothing added.
    q_g, q_q, g_g = np.array([[1.0, 3.0]]), np.zeros((1, 1)), np.array([[0.0, 2.0], [2.0, 0.0]])
    # k2 = 1: V[q] = (1, e^-1/9, 0) / (1 + e^-1/9), V[g0] = (e^-1/4, 1, 0) / (1 + e^-1/4), V[g1] = (0, 0, 1).
    # m(q, g0) = sigmoid(-1/4) + sigmoid(-1/9); m(q, g1) = 0 (Jaccard 1); lambda 0.5 mixes in d[q] = (1/9, 1).
    m = 1 / (1 + np.exp(0.25)) + 1 / (1 + np.exp(1 / 9))
    want = [0.5 * (1 - m / (2 - m)) + 0.5 / 9, 1.0]
    np.testing.assert_allclose(re_ranking(q_g, q_q, g_g, k1=1, k2=1, lambda_value=0.5), [want], rtol=1e-6)
    # k2 = 2: q and g0 both average V[q] and V[g0] -> Jaccard 0; V'[g1] = (V[g1] + V[g0]) / 2 meets V'[q] in
    # min = V[g0] / 2 (mass 1/2) -> Jaccard 1 - (1/2) / (3/2) = 2/3. Result: (0.5 / 9, 0.5 * 2/3 + 0.5) = (1/18, 5/6).
    np.testing.assert_allclose(re_ranking(q_g, q_q, g_g, k1=1, k2=2, lambda_value=0.5), [[1 / 18, 5 / 6]], rtol=1e-6)


@pytest.mark.parametrize(
    ("make", "k1", "k2", "lam"),
    [
        (_random_distances, 20, 6, 0.3),  # the defaults
        (_random_distances, 4, 2, 0.3),
        (_random_distances, 5, 1, 0.0),  # round(2.5) = 2; no query expansion
        (_random_distances, 7, 3, 0.7),  # round(3.5) = 4
        (_random_distances, 1, 1, 0.5),
        (_random_distances, 40, 30, 0.3),  # lists longer than the 26 items
        (_raw_distances, 6, 3, 0.3),
        (_raw_distances, 20, 6, 0.3),
        (_tied_distances, 5, 3, 0.3),
        (_tied_distances, 20, 6, 0.3),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_re_ranking_equals_the_dense_reference(make, k1, k2, lam, seed):
    q_g, q_q, g_g = make(7, 19, seed=seed)
    got = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    assert got.shape == (7, 19) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference_rerank(q_g, q_q, g_g, k1, k2, lam), rtol=0, atol=1e-6)


def _cuhk03_like(num_ids=60, per_cam=5, dim=16, noise=0.25, seed=0):
    # Two cameras, 5 images of each id per camera; one image per id and camera is a query, the rest is gallery.
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.normal(size=(num_ids, dim)))
    pids = np.repeat(np.arange(1, num_ids + 1), 2 * per_cam)
    cams = np.tile(np.repeat([0, 1], per_cam), num_ids)
    feats = l2_normalize(centres[pids - 1] + noise * rng.normal(size=(len(pids), dim)))
    query = np.zeros(len(pids), dtype=bool)
    query[::per_cam] = True
    return feats[query], feats[~query], pids[query], pids[~query], cams[query], cams[~query]


def test_re_ranking_equals_the_reference_in_map_on_a_cuhk03_like_case():
    qf, gf, qp, gp, qc, gc = _cuhk03_like()
    sq = lambda a, b: pairwise_distance(a, b, squared=True)  # noqa: E731
    q_g, q_q, g_g = sq(qf, gf), sq(qf, qf), sq(gf, gf)
    ours = evaluate_rank(re_ranking(q_g, q_q, g_g), qp, gp, qc, gc).mAP
    ref = evaluate_rank(reference_rerank(q_g, q_q, g_g, 20, 6, 0.3), qp, gp, qc, gc).mAP
    plain = evaluate_rank(q_g, qp, gp, qc, gc).mAP
    assert 0.3 < plain < 0.8 and ref > plain + 0.02  # a case where re-ranking matters
    assert abs(ours - ref) < 1e-4


def test_re_ranking_lambda_one_is_the_row_normalised_squared_distance():
    q_g, q_q, g_g = _random_distances(5, 11)
    got = re_ranking(q_g, q_q, g_g, lambda_value=1.0)
    row_max = np.maximum(q_g.max(axis=1), q_q.max(axis=0)) ** 2  # column i of the joint matrix: q_q[:, i], q_g[i]
    np.testing.assert_allclose(got, q_g**2 / row_max[:, None], rtol=1e-6)
    np.testing.assert_array_equal(np.argsort(got, axis=1), np.argsort(q_g, axis=1))


def test_re_ranking_is_scale_invariant_and_bounded():
    q_g, q_q, g_g = _random_distances(6, 14, seed=4)
    a = re_ranking(q_g, q_q, g_g, k1=5, k2=3, lambda_value=0.0)
    np.testing.assert_allclose(a, re_ranking(10 * q_g, 10 * q_q, 10 * g_g, k1=5, k2=3, lambda_value=0.0), atol=1e-6)
    assert np.all((a >= -1e-6) & (a <= 1))  # the Jaccard distance alone (V rows sum to 1 within float32 rounding)


def test_re_ranking_keeps_a_perfect_case_perfect():
    qf, gf, qp, gp, qc, gc = _clustered_features(num_ids=10, per_cam=4)
    sq = lambda a, b: pairwise_distance(a, b, squared=True)  # noqa: E731
    new = re_ranking(sq(qf, gf), sq(qf, qf), sq(gf, gf), k1=8, k2=3)
    r = evaluate_rank(new, qp, gp, qc, gc, max_rank=5)
    assert r.cmc[0] == 1.0 and r.mAP == pytest.approx(1.0)


def test_re_ranking_works_in_blocks(monkeypatch):
    # Blocks of 3 rows (and blocks that end at the query/gallery boundary) give the same numbers as one block.
    q_g, q_q, g_g = _random_distances(7, 19, seed=5)
    whole = re_ranking(q_g, q_q, g_g, k1=6, k2=3)
    monkeypatch.setattr("han_deploy.evaluate.rerank._BLOCK_ENTRIES", 3 * 26)
    np.testing.assert_array_equal(re_ranking(q_g, q_q, g_g, k1=6, k2=3), whole)


def test_re_ranking_rejects_bad_input():
    q_g, q_q, g_g = _random_distances(3, 5)
    with pytest.raises(ValueError, match="shapes disagree"):
        re_ranking(q_g, g_g, q_q)
    with pytest.raises(ValueError, match="lambda_value"):
        re_ranking(q_g, q_q, g_g, lambda_value=1.5)
    with pytest.raises(ValueError, match="k2 >= 1"):
        re_ranking(q_g, q_q, g_g, k2=0)
    bad = g_g.copy()
    bad[2, 4] = np.nan
    with pytest.raises(ValueError, match="items 3..7 are not finite"):
        re_ranking(q_g, q_q, bad)
    with pytest.raises(ValueError, match="item 0 .* all distances 0"):
        re_ranking(np.zeros((1, 2)), np.zeros((1, 1)), g_g[:2, :2])


# ----------------------------------------------------------------------------------------------


def test_evaluate_imports_without_torch():
    code = "import sys, han_deploy.evaluate; assert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
