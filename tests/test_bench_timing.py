"""Timing statistics on synthetic timing lists: percentiles, median of repeats, spread and the noise flag."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from han_deploy.bench.memory import measure_memory
from han_deploy.bench.timing import (
    TimingPlan,
    percentile,
    run_interleaved,
    run_timed,
    spread,
    summarize,
    time_block,
)

samples = st.lists(st.floats(min_value=0, max_value=1e3, allow_nan=False), min_size=1, max_size=50)


@settings(max_examples=50, deadline=None)
@given(samples, st.floats(min_value=0, max_value=100))
def test_percentile_matches_numpy_linear(xs: list[float], q: float) -> None:
    assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), rel=1e-9, abs=1e-9)


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0], 101)


def test_summary_is_median_of_repeat_medians_and_pooled_tails() -> None:
    # three repeats (seconds): medians 10 ms, 12 ms, 11 ms; one 50 ms outlier in the pool
    runs = [[0.010, 0.010, 0.009], [0.012, 0.012, 0.050], [0.011, 0.011, 0.011]]
    s = summarize(runs, batch=4, warmup=2)
    assert s.repeat_p50_ms == pytest.approx([10.0, 12.0, 11.0])
    assert s.p50_ms == pytest.approx(11.0)
    pooled = [t * 1e3 for r in runs for t in r]
    assert s.p90_ms == pytest.approx(np.percentile(pooled, 90))
    assert s.p99_ms == pytest.approx(np.percentile(pooled, 99))
    assert s.max_ms == pytest.approx(50.0) and s.min_ms == pytest.approx(9.0)
    assert s.throughput == pytest.approx(4 / 0.011)
    assert s.spread == pytest.approx((12 - 10) / 11)
    assert s.noisy  # 18% > 10%
    assert s.iters == 9 and s.repeats == 3 and s.warmup == 2


def test_noise_flag_follows_the_threshold() -> None:
    steady = [[0.100], [0.102], [0.101]]
    assert spread([100.0, 102.0, 101.0]) == pytest.approx(2 / 101)
    assert not summarize(steady, 1).noisy
    assert summarize(steady, 1, noise_threshold=0.01).noisy
    assert summarize([[0.1, 0.2]], 1).spread == 0.0  # a single repeat has no spread


def test_summarize_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="batch"):
        summarize([[0.1]], 0)
    with pytest.raises(ValueError, match="no timed calls"):
        summarize([[], []], 1)
    with pytest.raises(ValueError, match="negative"):
        summarize([[-0.1]], 1)


def test_plan_validation() -> None:
    with pytest.raises(ValueError, match="iters or duration"):
        TimingPlan(iters=None, duration=None)
    for bad in ({"iters": 0}, {"repeats": 0}, {"warmup": -1}, {"duration": 0.0, "iters": None}):
        with pytest.raises(ValueError):
            TimingPlan(**bad)


def test_time_block_counts_and_duration_floor() -> None:
    calls = []
    assert len(time_block(lambda: calls.append(1), iters=4, duration=None)) == 4
    out = time_block(lambda: calls.append(1), iters=None, duration=1e-6, min_iters=3)
    assert len(out) >= 3 and all(t >= 0 for t in out)


def test_run_timed_warms_up_then_times_every_repeat() -> None:
    calls = []
    s = run_timed(lambda: calls.append(1), 2, TimingPlan(warmup=3, iters=5, repeats=2))
    assert len(calls) == 3 + 10 and s.iters == 10 and s.repeats == 2 and s.batch == 2


def test_interleaving_rotates_the_order_each_round() -> None:
    order: list[str] = []
    fns = {k: (lambda k=k: order.append(k)) for k in "abc"}
    stats = run_interleaved(fns, 1, TimingPlan(warmup=1, iters=1, repeats=3))
    assert order[:3] == ["a", "b", "c"]  # warm-up
    assert order[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert set(stats) == {"a", "b", "c"} and all(s.repeats == 3 for s in stats.values())


def test_memory_probe_sees_an_allocation() -> None:
    def allocate() -> None:
        block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
        block.sum()

    m = measure_memory(allocate, calls=1)
    assert m.peak_rss_bytes is not None and m.rss_before_bytes is not None
    if not m.peak_reset:
        pytest.skip("this kernel does not allow resetting the RSS high-water mark")
    assert m.peak_rss_delta_bytes >= 48 * 1024 * 1024
